// Package localproc runs Ambit's binaries as processes on this machine: the
// building block of the demo and of `ambitctl up`. Each process logs JSON to
// a file of its own, and is ready when it logs its "serving" line, which
// carries the addresses it bound (binaries are started on port 0, so
// nothing here assumes a free fixed port).
package localproc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Process is one running binary.
type Process struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
	// Serving is the "serving" log line, decoded: its fields are the
	// addresses the process bound (e.g. "grpc", "admin").
	Serving map[string]any
}

// Start runs bin with args, logging to logDir/<name>.log, and waits until it
// logs msg "serving" or exits.
func Start(ctx context.Context, name, bin string, args []string, logDir string, timeout time.Duration) (*Process, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(logDir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = logFile
	stderr, err := cmd.StderrPipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	// Its own process group, so a terminal's Ctrl-C reaches ambitctl, which
	// then stops the process in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	serving := make(chan map[string]any, 1)
	go func() {
		defer close(p.done)
		defer logFile.Close()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			logFile.Write(append(line, '\n'))
			var m map[string]any
			if json.Unmarshal(line, &m) == nil && m["msg"] == "serving" {
				select {
				case serving <- m:
				default:
				}
			}
		}
		io.Copy(logFile, stderr)
		cmd.Wait()
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case p.Serving = <-serving:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited before serving (%s); see %s", name, cmd.ProcessState, logPath)
	case <-t.C:
		p.Kill()
		return nil, fmt.Errorf("%s not serving after %s; see %s", name, timeout, logPath)
	case <-ctx.Done():
		p.Kill()
		return nil, ctx.Err()
	}
}

// Addr returns a bound address from the serving line.
func (p *Process) Addr(key string) string {
	s, _ := p.Serving[key].(string)
	return s
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Kill ends the process with SIGKILL, as a crash would, and waits for it.
func (p *Process) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop asks the process to shut down (SIGTERM) and kills it after grace.
func (p *Process) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
		p.Kill()
		return fmt.Errorf("%s did not stop within %s; killed", p.Name, grace)
	}
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}
