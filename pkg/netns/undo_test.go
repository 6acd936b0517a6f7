package netns

import (
	"errors"
	"slices"
	"sync"
	"testing"
)

func TestRunUndoOrder(t *testing.T) {
	var (
		mu  sync.Mutex
		got []string
	)
	note := func(s string, err error) func() error {
		return func() error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, s)
			return err
		}
	}
	boom := errors.New("boom")
	var pod, node undoStack
	node.push("node netns", note("node netns", nil))
	node.pushIndependent("node link", note("link", nil))
	pod.push("pod netns", note("pod netns", nil))
	pod.pushIndependent("pod link", note("link", boom))
	pod.push("pod address", note("pod address", nil))

	err := runUndo(&pod, &node)
	if !errors.Is(err, boom) {
		t.Errorf("error %v does not carry the failure", err)
	}
	want := []string{"link", "link", "pod address", "pod netns", "node netns"}
	if !slices.Equal(got, want) {
		t.Errorf("order %q, want %q", got, want)
	}
	got = nil
	if err := runUndo(&pod, &node); err != nil || len(got) != 0 {
		t.Errorf("second run: %v, ran %q", err, got)
	}
}
