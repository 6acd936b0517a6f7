package netns

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

func TestCombinedOutputRunsInNetns(t *testing.T) {
	requireRoot(t)
	h := createNetns(t, "exec")
	ino, err := h.Inode()
	if err != nil {
		t.Fatal(err)
	}
	out, err := h.CombinedOutput(testContext(t), "readlink", "/proc/self/ns/net")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got, want := strings.TrimSpace(string(out)), fmt.Sprintf("net:[%d]", ino); got != want {
		t.Errorf("child in %s, want %s", got, want)
	}
	// A fresh namespace has only lo; seeing eth0 would mean the host's.
	out, err = h.CombinedOutput(testContext(t), "ip", "-o", "link", "show")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if lines := strings.Count(string(out), "\n"); lines != 1 || !strings.Contains(string(out), " lo:") {
		t.Errorf("ip link inside a new namespace:\n%s", out)
	}
	if _, err := h.CombinedOutput(testContext(t), "false"); err == nil || !strings.Contains(err.Error(), h.Name()) {
		t.Errorf("failing command: error %v should name the namespace", err)
	}
}

// Pdeathsig fires when the forking *thread* exits; Start must keep that
// thread until the child is gone, or the child is killed at once.
func TestStartKeepsPdeathsigChildAlive(t *testing.T) {
	requireRoot(t)
	h := createNetns(t, "pdeath")
	cmd := exec.Command("sleep", "30")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := h.Start(cmd); err != nil {
		t.Fatal(err)
	}
	// Churn threads so a discarded forking thread would have exited by now.
	for range 5 {
		if err := h.Do(func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		t.Fatalf("Wait: %v", err)
	}
	ws := exitErr.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("child ended with %v, want killed by our SIGTERM (SIGKILL means Pdeathsig fired early)", exitErr)
	}
}
