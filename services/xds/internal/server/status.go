package server

import (
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	statusv1 "github.com/ambitmesh/ambit/proto/ambit/status/v1"
	"github.com/ambitmesh/ambit/services/xds/internal/snapshot"
)

// ProxySync is one stream's synchronisation state, as /debug/syncz shows
// it and distribution status reports it.
type ProxySync struct {
	ID          string    `json:"id"`
	Component   string    `json:"component,omitempty"`
	Version     string    `json:"version,omitempty"`
	API         string    `json:"api"`
	Identity    string    `json:"identity"`
	Auth        string    `json:"auth"`
	ConnectedAt time.Time `json:"connectedAt"`
	// AckedRevision is the feed revision the proxy has for every type it
	// subscribes to; NackedRevision/NackError its newest rejection still
	// standing (no later response accepted).
	AckedRevision  int64      `json:"ackedRevision"`
	NackedRevision int64      `json:"nackedRevision,omitempty"`
	NackError      string     `json:"nackError,omitempty"`
	Types          []TypeSync `json:"types"`
	stream         uint64
}

// TypeSync is one type of one stream.
type TypeSync struct {
	TypeURL         string    `json:"typeUrl"`
	Wildcard        bool      `json:"wildcard"`
	Subscriptions   int       `json:"subscriptions"`
	SentGeneration  uint64    `json:"sentGeneration"`
	AckedGeneration uint64    `json:"ackedGeneration"`
	AckedRevision   int64     `json:"ackedRevision"`
	AckedAt         time.Time `json:"ackedAt,omitzero"`
	InFlight        int       `json:"inFlight"`
	InSync          bool      `json:"inSync"`
	LastNack        *NackSync `json:"lastNack,omitempty"`
}

// NackSync is a standing rejection.
type NackSync struct {
	Generation uint64    `json:"generation"`
	Revision   int64     `json:"revision"`
	Error      string    `json:"error"`
	At         time.Time `json:"at"`
}

// summarize fills the proxy-level fields from the types: the acked
// revision is the lowest over the types (a caught-up type counts as having
// the settled revision), the rejection the newest.
func (p *ProxySync) summarize() {
	slices.SortFunc(p.Types, func(a, b TypeSync) int { return compareStrings(a.TypeURL, b.TypeURL) })
	acked := int64(math.MaxInt64)
	for _, t := range p.Types {
		acked = min(acked, t.AckedRevision)
		if t.LastNack != nil && t.LastNack.Revision >= p.NackedRevision {
			p.NackedRevision, p.NackError = t.LastNack.Revision, t.LastNack.Error
		}
	}
	if len(p.Types) == 0 {
		acked = 0
	}
	p.AckedRevision = acked
}

func effectiveRevision(caughtUp bool, acked ackState, settled *snapshot.Snapshot) int64 {
	if caughtUp && settled.Generation() >= acked.gen {
		return max(acked.rev, settled.Revision())
	}
	return acked.rev
}

func nackSync(n *nackState) *NackSync {
	if n == nil {
		return nil
	}
	return &NackSync{Generation: n.gen, Revision: n.rev, Error: n.err, At: n.at}
}

func (ds *deltaStream) streamID() uint64     { return ds.id }
func (ds *deltaStream) proxyInfo() proxyInfo { return ds.proxy }
func (ds *deltaStream) connected() time.Time { return ds.since }

func (ds *deltaStream) sync(settled *snapshot.Snapshot) ProxySync {
	p := ProxySync{
		ID: ds.proxy.ID, Component: ds.proxy.Component, Version: ds.proxy.Version, API: "delta",
		Identity: ds.principal.Identity.String(), Auth: ds.principal.Method, ConnectedAt: ds.since, stream: ds.id,
	}
	ds.mu.Lock()
	for _, t := range ds.types {
		up := t.caughtUp()
		p.Types = append(p.Types, TypeSync{
			TypeURL: t.url, Wildcard: t.wildcard, Subscriptions: len(t.subs), SentGeneration: t.sentGen,
			AckedGeneration: t.acked.gen, AckedRevision: effectiveRevision(up, t.acked, settled), AckedAt: t.acked.at,
			InFlight: len(t.inflight), InSync: up, LastNack: nackSync(t.nack),
		})
	}
	ds.mu.Unlock()
	p.summarize()
	return p
}

func (ss *sotwStream) streamID() uint64     { return ss.id }
func (ss *sotwStream) proxyInfo() proxyInfo { return ss.proxy }
func (ss *sotwStream) connected() time.Time { return ss.since }

func (ss *sotwStream) sync(settled *snapshot.Snapshot) ProxySync {
	p := ProxySync{
		ID: ss.proxy.ID, Component: ss.proxy.Component, Version: ss.proxy.Version, API: "sotw",
		Identity: ss.principal.Identity.String(), Auth: ss.principal.Method, ConnectedAt: ss.since, stream: ss.id,
	}
	ss.mu.Lock()
	for _, t := range ss.types {
		up := t.caughtUp()
		inflight := 0
		if !t.answered && t.lastNonce != "" {
			inflight = 1
		}
		p.Types = append(p.Types, TypeSync{
			TypeURL: t.url, Wildcard: t.wildcard, Subscriptions: len(t.names), SentGeneration: t.lastGen,
			AckedGeneration: t.acked.gen, AckedRevision: effectiveRevision(up, t.acked, settled), AckedAt: t.acked.at,
			InFlight: inflight, InSync: up, LastNack: nackSync(t.nack),
		})
	}
	ss.mu.Unlock()
	p.summarize()
	return p
}

// Proxies describes every open stream, sorted by proxy id. A proxy with
// several streams (a reconnect overlapping the old stream) appears once,
// with its newest stream.
func (s *Server) Proxies() []ProxySync {
	settled := s.settled.Load()
	streams := s.snapshotStreams()
	byID := make(map[string]ProxySync, len(streams))
	for _, ps := range streams {
		p := ps.sync(settled)
		if old, ok := byID[p.ID]; ok && old.stream > p.stream {
			continue
		}
		byID[p.ID] = p
	}
	out := make([]ProxySync, 0, len(byID))
	for _, p := range byID {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b ProxySync) int { return compareStrings(a.ID, b.ID) })
	return out
}

// ProxyReports is the distribution status of every connected proxy, for
// proxystatus.Publisher.
func (s *Server) ProxyReports() []*statusv1.ProxyReport {
	ps := s.Proxies()
	out := make([]*statusv1.ProxyReport, 0, len(ps))
	for _, p := range ps {
		out = append(out, &statusv1.ProxyReport{
			ProxyId: p.ID, Component: p.Component, Version: p.Version,
			AckedRevision: p.AckedRevision, NackedRevision: p.NackedRevision, NackError: p.NackError,
		})
	}
	return out
}

// SynczHandler serves /debug/syncz: every connected proxy with its
// component, version, types, acknowledged versions and last rejection.
func (s *Server) SynczHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		settled := s.settled.Load()
		writeJSON(w, map[string]any{
			"generation": settled.Generation(),
			"revision":   settled.Revision(),
			"proxies":    s.Proxies(),
		})
	})
}

// DumpedResource is one resource a proxy was given.
type DumpedResource struct {
	Name     string          `json:"name"`
	Version  string          `json:"version"`
	Aliases  []string        `json:"aliases,omitempty"`
	Resource json.RawMessage `json:"resource,omitempty"`
	// Current is false when the cache holds a newer version than the one
	// the proxy was given (on-demand subscriptions keep only the version
	// they sent, so the body shown is the newer one).
	Current bool `json:"current"`
}

func (ds *deltaStream) dump() map[string][]DumpedResource {
	settled := ds.srv.settled.Load()
	out := map[string][]DumpedResource{}
	ds.mu.Lock()
	defer ds.mu.Unlock()
	for url, t := range ds.types {
		var rs []DumpedResource
		if t.wildcard {
			t.view.Range(func(r *snapshot.Resource) bool {
				rs = append(rs, dumped(r, r.Version, true))
				return true
			})
		} else {
			byName := map[string]*DumpedResource{}
			for k, sk := range t.subs {
				if sk.name == "" {
					continue
				}
				d := byName[sk.name]
				if d == nil {
					r := settled.Get(url, sk.name)
					dr := DumpedResource{Name: sk.name, Version: sk.version}
					if r != nil {
						dr = dumped(r, sk.version, r.Version == sk.version)
					}
					d = &dr
					byName[sk.name] = d
				}
				if k != sk.name {
					d.Aliases = append(d.Aliases, k)
				}
			}
			for _, d := range byName {
				slices.Sort(d.Aliases)
				rs = append(rs, *d)
			}
			slices.SortFunc(rs, func(a, b DumpedResource) int { return compareStrings(a.Name, b.Name) })
		}
		out[url] = rs
	}
	return out
}

func (ss *sotwStream) dump() map[string][]DumpedResource {
	out := map[string][]DumpedResource{}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for url, t := range ss.types {
		var rs []DumpedResource
		if t.wildcard {
			t.view.Range(func(r *snapshot.Resource) bool {
				rs = append(rs, dumped(r, r.Version, true))
				return true
			})
		} else {
			seen := map[string]bool{}
			for _, n := range t.names {
				if r := t.view.Resolve(n); r != nil && !seen[r.Name] {
					seen[r.Name] = true
					rs = append(rs, dumped(r, r.Version, true))
				}
			}
		}
		out[url] = rs
	}
	return out
}

func dumped(r *snapshot.Resource, version string, current bool) DumpedResource {
	return DumpedResource{Name: r.Name, Version: version, Resource: anyJSON(r.Body), Current: current}
}

// anyJSON renders a resource as protojson when its type is linked in, and
// as its type URL and base64 bytes otherwise.
func anyJSON(a *anypb.Any) json.RawMessage {
	if a == nil {
		return nil
	}
	if b, err := protojson.Marshal(a); err == nil {
		return b
	}
	b, _ := json.Marshal(map[string]any{"@type": a.GetTypeUrl(), "value": a.GetValue()})
	return b
}

// ConfigDumpHandler serves /debug/config_dump?proxy=<id>: the resources the
// proxy was given, per type.
func (s *Server) ConfigDumpHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("proxy")
		if id == "" {
			http.Error(w, "query parameter proxy=<id> is required", http.StatusBadRequest)
			return
		}
		var found proxyStream
		for _, ps := range s.snapshotStreams() {
			if ps.proxyInfo().ID == id && (found == nil || ps.streamID() > found.streamID()) {
				found = ps
			}
		}
		if found == nil {
			http.Error(w, "no stream of proxy "+id+" on this replica", http.StatusNotFound)
			return
		}
		writeJSON(w, map[string]any{"proxy": id, "types": found.dump()})
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
