package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/ambitmesh/ambit/services/cni/internal/cnievent"
)

// ListenEvents opens the plugin's unix socket (per node), replacing a
// stale one left by an earlier run. Only root (the runtime running the
// plugin) may connect.
func ListenEvents(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("event socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("event socket %s: %w", path, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("event socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("event socket %s: %w", path, err)
	}
	return ln, nil
}

// EventHandler serves plugin events. timeout bounds one event (an ADD
// waits for enrollment).
func (a *Agent) EventHandler(timeout time.Duration) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+cnievent.Path, func(w http.ResponseWriter, r *http.Request) {
		ev, err := cnievent.Decode(r.Body)
		if err != nil {
			a.log.Warn("rejected plugin event", "err", err)
			writeReply(w, http.StatusBadRequest, cnievent.Reply{Error: err.Error()})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		reply, err := a.HandleEvent(ctx, ev)
		if err != nil {
			a.log.Warn("plugin event failed", "command", ev.Command, "pod", ev.PodKey(), "container", ev.ContainerID, "err", err)
			reply.Error = err.Error()
			writeReply(w, http.StatusInternalServerError, reply)
			return
		}
		a.log.Info("plugin event", "command", ev.Command, "pod", ev.PodKey(), "container", ev.ContainerID, "enrolled", reply.Enrolled)
		writeReply(w, http.StatusOK, reply)
	})
	return mux
}

func writeReply(w http.ResponseWriter, code int, r cnievent.Reply) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(r)
}
