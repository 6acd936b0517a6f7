package ratelimit_test

import (
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ambitmesh/ambit/services/ca/internal/ratelimit"
)

func TestLimiter(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	l := ratelimit.New(1, 3, clock)
	for i := range 3 {
		if !l.Allow("a") {
			t.Fatalf("request %d within the burst refused", i)
		}
	}
	if l.Allow("a") {
		t.Fatal("request over the burst allowed")
	}
	if !l.Allow("b") {
		t.Fatal("another key shares the bucket")
	}
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	if !l.Allow("a") {
		t.Fatal("bucket did not refill")
	}
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	l.Allow("c")
	if n := l.Len(); n != 1 {
		t.Errorf("%d buckets after an hour idle, want 1", n)
	}
	if !ratelimit.New(0, 0, nil).Allow("x") {
		t.Error("a zero rate must allow everything")
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
