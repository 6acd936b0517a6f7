package cnievent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ambitmesh/ambit/services/cni/internal/atomicfile"
)

// MaxEventBytes bounds an encoded event, on the socket and in the spool.
const MaxEventBytes = 64 << 10

// Spool is the per-node directory where the plugin leaves events the agent
// could not take (it was down or restarting); the agent replays them in
// order when it starts and while it runs, then removes them.
type Spool struct{ Dir string }

const spoolExt = ".event.json"

// Write stores e durably: a temporary file is synced and renamed, so the
// agent never reads half an event. Names sort by time, then container, so
// an ADD and a later DEL of one sandbox replay in order.
func (s Spool) Write(e *Event) (string, error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return "", fmt.Errorf("spool %s: %w", s.Dir, err)
	}
	b, err := json.Marshal(e)
	if err != nil {
		return "", err
	}
	name := fmt.Sprintf("%020d-%s-%s%s", e.At.UnixNano(), e.ContainerID, strings.ToLower(string(e.Command)), spoolExt)
	if err := atomicfile.Write(s.Dir, name, b); err != nil {
		return "", fmt.Errorf("spool %s: %w", s.Dir, err)
	}
	return name, nil
}

// Entry is one spooled event, or the reason it could not be read.
type Entry struct {
	Name  string
	Event *Event
	Err   error
}

// List returns the spooled events in replay order. A file that cannot be
// decoded or validated is returned with Err set, so the caller can log and
// remove it instead of retrying it forever.
func (s Spool) List() ([]Entry, error) {
	des, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", s.Dir, err)
	}
	var out []Entry
	for _, de := range des {
		if !de.Type().IsRegular() || !strings.HasSuffix(de.Name(), spoolExt) {
			continue
		}
		out = append(out, s.read(de.Name()))
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (s Spool) read(name string) Entry {
	ent := Entry{Name: name}
	f, err := os.Open(filepath.Join(s.Dir, name))
	if err != nil {
		ent.Err = err
		return ent
	}
	defer f.Close()
	e, err := Decode(f)
	if err != nil {
		ent.Err = fmt.Errorf("spooled event %s: %w", name, err)
		return ent
	}
	ent.Event = e
	return ent
}

// Remove deletes a replayed entry.
func (s Spool) Remove(name string) error {
	if err := os.Remove(filepath.Join(s.Dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Decode reads one event strictly (unknown fields are an error: plugin and
// agent of one node ship together) and validates it.
func Decode(r io.Reader) (*Event, error) {
	var e Event
	dec := json.NewDecoder(&limitedReader{r: r, n: MaxEventBytes})
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("decode event: %w", err)
	}
	if dec.More() {
		return nil, errors.New("decode event: trailing data after the event")
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}

type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, fmt.Errorf("event larger than %d bytes", MaxEventBytes)
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}
