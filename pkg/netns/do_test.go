package netns

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestDoRunsInTargetNetnsOnly(t *testing.T) {
	requireRoot(t)
	h := createNetns(t, "do")
	ino, err := h.Inode()
	if err != nil {
		t.Fatal(err)
	}
	target := fmt.Sprintf("net:[%d]", ino)
	host := threadNetns(t)
	if host == target {
		t.Fatal("test thread already in the target namespace")
	}

	var inside, spawned string
	err = h.Do(func() error {
		inside = threadNetns(t)
		// A goroutine started inside fn runs on another thread, outside.
		done := make(chan string)
		go func() { done <- threadNetns(t) }()
		spawned = <-done
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if inside != target {
		t.Errorf("inside Do: %s, want %s", inside, target)
	}
	if spawned != host {
		t.Errorf("goroutine started inside Do: %s, want host %s", spawned, host)
	}

	// The thread Do used is discarded: no thread of the process, the main
	// thread included, stays in the target namespace.
	eventually(t, 5*time.Second, "no thread in "+target, func() bool {
		return len(threadsIn(t, target)) == 0
	})

	// Goroutines after Do run in the host namespace.
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			if got := threadNetns(t); got != host {
				t.Errorf("goroutine after Do in %s, want %s", got, host)
			}
		})
	}
	wg.Wait()
}

// threadsIn lists the threads of this process in namespace ns ("net:[N]").
func threadsIn(t *testing.T, ns string) []string {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var in []string
	for _, task := range tasks {
		link, err := os.Readlink(filepath.Join("/proc/self/task", task.Name(), "ns/net"))
		if err == nil && link == ns {
			in = append(in, task.Name())
		}
	}
	return in
}

func TestDoConcurrentNamespaces(t *testing.T) {
	requireRoot(t)
	handles := []*Handle{createNetns(t, "ca"), createNetns(t, "cb")}
	var wg sync.WaitGroup
	for i := range 40 {
		h := handles[i%len(handles)]
		wg.Go(func() {
			ino, err := h.Inode()
			if err != nil {
				t.Error(err)
				return
			}
			want := fmt.Sprintf("net:[%d]", ino)
			err = h.Do(func() error {
				if got := threadNetns(t); got != want {
					return fmt.Errorf("in %s, want %s", got, want)
				}
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}

func TestDoReturnsErrorAndPanic(t *testing.T) {
	requireRoot(t)
	h := createNetns(t, "err")
	sentinel := fmt.Errorf("sentinel")
	if err := h.Do(func() error { return sentinel }); err != sentinel {
		t.Errorf("Do returned %v, want fn's error", err)
	}
	defer func() {
		if p := recover(); p != "boom" {
			t.Errorf("recovered %v, want boom", p)
		}
	}()
	_ = h.Do(func() error { panic("boom") })
	t.Error("Do did not re-raise the panic")
}
