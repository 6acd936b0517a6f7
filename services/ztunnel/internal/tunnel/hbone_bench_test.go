package tunnel

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"testing"
)

// hbCountThenReply reads to EOF and answers with the byte count: the
// sender's clock stops when the last byte is in the app, not in a buffer.
func hbCountThenReply(c net.Conn) {
	n, err := io.Copy(io.Discard, c)
	if err != nil {
		return
	}
	fmt.Fprint(c, n)
}

// BenchmarkThroughput is one tunnel's bulk rate, source app to destination
// app: mTLS 1.3 + HTTP/2 CONNECT, Pool and Server in this process over
// loopback, with the package's default windows. MB/s via b.SetBytes.
func BenchmarkThroughput(b *testing.B) {
	for _, size := range []int{16 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("write=%dKiB", size>>10), func(b *testing.B) {
			e := newHBEnv(b)
			e.setApp(hbCountThenReply)
			p := e.pool(b, e.dialer(b, e.dstID))
			c := hbDial(b, p, e.key("pod-a"), hbTarget, Headers{})
			buf := hbPayload(size, 1)
			b.SetBytes(int64(size))
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
				b.Fatal(err)
			}
			reply, err := io.ReadAll(c)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			if n, _ := strconv.Atoi(string(reply)); n != b.N*size {
				b.Fatalf("app got %q bytes, want %d", reply, b.N*size)
			}
		})
	}
}

// BenchmarkNewStream is the cost of one more tunnel once the connection is
// pooled: Dial (CONNECT, handler, upstream dial) plus a 1-byte round trip
// and Close.
func BenchmarkNewStream(b *testing.B) {
	e := newHBEnv(b)
	d := e.dialer(b, e.dstID)
	p := e.pool(b, d)
	k := e.key("pod-a")
	hbPing(b, hbDial(b, p, k, hbTarget, Headers{}), "warm")
	one := []byte{1}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c, err := p.Dial(context.Background(), k, hbTarget, Headers{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(one); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, one); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
	b.StopTimer()
	if n := d.total.Load(); n != 1 {
		b.Fatalf("%d connections dialed, want 1", n)
	}
}
