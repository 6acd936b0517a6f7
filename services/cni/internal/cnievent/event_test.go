package cnievent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func validEvent() *Event {
	return &Event{
		Command: Add, ContainerID: "c0ffee", Netns: "/var/run/netns/p1", IfName: "eth0",
		PodNamespace: "demo", PodName: "echo-1", PodUID: "u-1",
		IPs: []IP{{Address: netip.MustParsePrefix("10.251.0.5/24"), Gateway: netip.MustParseAddr("10.251.0.1")}},
		At:  time.Unix(1700000000, 5).UTC(),
	}
}

func TestValidateNamesField(t *testing.T) {
	for _, tc := range []struct {
		mutate func(*Event)
		want   string
	}{
		{func(e *Event) { e.Command = "RUN" }, "command:"},
		{func(e *Event) { e.ContainerID = "../../etc" }, "containerID:"},
		{func(e *Event) { e.Netns = "" }, "netns: required"},
		{func(e *Event) { e.Netns = "relative/ns" }, "netns:"},
		{func(e *Event) { e.PodNamespace = "Demo" }, "podNamespace:"},
		{func(e *Event) { e.PodName = "" }, "podName: required"},
		{func(e *Event) { e.IPs = []IP{{}} }, "ips[0].address"},
	} {
		e := validEvent()
		tc.mutate(e)
		err := e.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want error with %q, got %v", tc.want, err)
		}
	}
	e := validEvent()
	e.Command, e.Netns = Del, ""
	if err := e.Validate(); err != nil {
		t.Errorf("DEL without netns: %v", err)
	}
}

func TestSpoolRoundTripInOrder(t *testing.T) {
	s := Spool{Dir: filepath.Join(t.TempDir(), "spool")}
	add, del := validEvent(), validEvent()
	del.Command, del.At = Del, add.At.Add(time.Millisecond)
	other := validEvent()
	other.ContainerID, other.At = "aaaa", add.At.Add(-time.Second)
	for _, e := range []*Event{del, add, other} {
		if _, err := s.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "00000000000000000001-bad-add"+spoolExt), []byte("{nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	ents, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 4 || ents[0].Err == nil {
		t.Fatalf("entries: %+v", ents)
	}
	got := []string{}
	for _, e := range ents[1:] {
		if e.Err != nil {
			t.Fatal(e.Err)
		}
		got = append(got, e.Event.ContainerID+"/"+string(e.Event.Command))
	}
	if strings.Join(got, ",") != "aaaa/ADD,c0ffee/ADD,c0ffee/DEL" {
		t.Fatalf("order: %v", got)
	}
	for _, e := range ents {
		if err := s.Remove(e.Name); err != nil {
			t.Fatal(err)
		}
	}
	if ents, _ := s.List(); len(ents) != 0 {
		t.Fatalf("left: %v", ents)
	}
}

func TestDecodeStrict(t *testing.T) {
	b, _ := json.Marshal(validEvent())
	if _, err := Decode(bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string]string{
		"unknown field": strings.Replace(string(b), `"command"`, `"extra":1,"command"`, 1),
		"trailing":      string(b) + `{}`,
		"huge":          `{"podName":"` + strings.Repeat("a", MaxEventBytes) + `"}`,
		"not json":      `ADD`,
	} {
		if _, err := Decode(strings.NewReader(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSendUnreachableAndReply(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	ctx := context.Background()
	if _, err := Send(ctx, sock, validEvent()); !errors.Is(err, ErrAgentUnreachable) {
		t.Fatalf("no agent: %v", err)
	}
	if err := Ping(ctx, sock); !errors.Is(err, ErrAgentUnreachable) {
		t.Fatalf("ping: %v", err)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ev, err := Decode(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(Reply{Error: err.Error()})
			return
		}
		if ev.PodName == "deny" {
			w.WriteHeader(http.StatusInternalServerError)
			_ = json.NewEncoder(w).Encode(Reply{Error: "ztunnel said no"})
			return
		}
		_ = json.NewEncoder(w).Encode(Reply{Enrolled: true})
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	r, err := Send(ctx, sock, validEvent())
	if err != nil || !r.Enrolled {
		t.Fatalf("reply %+v, %v", r, err)
	}
	e := validEvent()
	e.PodName = "deny"
	if _, err := Send(ctx, sock, e); err == nil || errors.Is(err, ErrAgentUnreachable) || !strings.Contains(err.Error(), "ztunnel said no") {
		t.Fatalf("agent error: %v", err)
	}
	if err := Ping(ctx, sock); err != nil {
		t.Fatal(err)
	}
}

// FuzzDecode: events come from the plugin (runtime-controlled input) and
// from files in the spool; decoding must never panic, and whatever it
// accepts must be valid and survive a round trip.
func FuzzDecode(f *testing.F) {
	b, _ := json.Marshal(validEvent())
	f.Add(b)
	f.Add([]byte(`{"command":"DEL","containerID":"x","podNamespace":"a","podName":"b","at":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"command":"ADD","containerID":"../x","netns":"/n","podNamespace":"a","podName":"b"}`))
	f.Add([]byte(`{"ips":[{"address":"10.0.0.1/33"}]}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		e, err := Decode(bytes.NewReader(in))
		if err != nil {
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("accepted an invalid event: %v", err)
		}
		again, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decode(bytes.NewReader(again)); err != nil {
			t.Fatalf("round trip: %v", err)
		}
	})
}
