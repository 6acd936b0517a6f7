package tunnel

import (
	"errors"
	"io"
	"net"
	"sync"
)

// bufPool holds the copy buffers: one per direction of a live connection,
// returned when it ends, so memory follows concurrency, not history.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// closeWriter is a connection that can end its sending half.
type closeWriter interface{ CloseWrite() error }

// Splice copies both ways until both directions ended, half-closing each
// side when the other finished sending, and reports the bytes moved a→b
// and b→a. Errors of a side that was closed under it are not reported.
func Splice(a, b io.ReadWriteCloser) (aToB, bToA int64, err error) {
	var wg sync.WaitGroup
	var errAB, errBA error
	wg.Go(func() { aToB, errAB = copyHalf(b, a) })
	bToA, errBA = copyHalf(a, b)
	wg.Wait()
	return aToB, bToA, errors.Join(ignoreClosed(errAB), ignoreClosed(errBA))
}

// copyHalf copies src to dst, then ends dst's sending half (or closes it
// when it cannot half-close) so the far side sees EOF.
func copyHalf(dst io.Writer, src io.Reader) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var total int64
	var err error
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			w, werr := dst.Write(buf[:n])
			total += int64(w)
			if werr != nil {
				err = werr
				break
			}
		}
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) {
				err = rerr
			}
			break
		}
	}
	switch d := dst.(type) {
	case closeWriter:
		_ = d.CloseWrite()
	case io.Closer:
		_ = d.Close()
	}
	if errors.Is(err, net.ErrClosed) {
		err = nil // the other direction closed both ends
	}
	return total, err
}
