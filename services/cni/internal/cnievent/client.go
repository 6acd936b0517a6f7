package cnievent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
)

// ErrAgentUnreachable wraps a failure to reach the agent at all (no socket,
// nobody listening): the event was not delivered, so the plugin may spool
// it. Any other error means the agent received the event and decided.
var ErrAgentUnreachable = errors.New("node agent unreachable")

// Send delivers e to the agent listening on socket and returns its reply.
// An agent that answers with an error is returned as an error carrying the
// agent's words.
func Send(ctx context.Context, socket string, e *Event) (Reply, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return Reply{}, err
	}
	var dialed atomic.Bool
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "unix", socket)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrAgentUnreachable, err)
			}
			dialed.Store(true)
			return c, nil
		},
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://agent"+Path, bytes.NewReader(b))
	if err != nil {
		return Reply{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		if !dialed.Load() && !errors.Is(err, ErrAgentUnreachable) {
			err = fmt.Errorf("%w: %w", ErrAgentUnreachable, err)
		}
		return Reply{}, fmt.Errorf("send %s to agent at %s: %w", e.Command, socket, err)
	}
	defer resp.Body.Close()
	var r Reply
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxEventBytes))
	if err != nil {
		return Reply{}, fmt.Errorf("agent at %s: reading reply: %w", socket, err)
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return Reply{}, fmt.Errorf("agent at %s: reply %d is not JSON: %q", socket, resp.StatusCode, truncate(body))
	}
	if resp.StatusCode != http.StatusOK || r.Error != "" {
		if r.Error == "" {
			r.Error = resp.Status
		}
		return r, fmt.Errorf("ambit-cni-agent: %s", r.Error)
	}
	return r, nil
}

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

// Ping checks that an agent answers on socket.
func Ping(ctx context.Context, socket string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrAgentUnreachable, err)
	}
	return c.Close()
}
