// Package presence announces a running replica as a NATS micro service
// named "ambit-<component>", so `ambitctl cluster` can list every replica
// of every component with its version, address, load and feed lag through
// the standard $SRV.INFO / $SRV.STATS requests, without a registry of its
// own.
package presence

import (
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/ambitmesh/ambit/pkg/buildinfo"
	"github.com/ambitmesh/ambit/pkg/changefeed"
)

// Metadata keys of the service info.
const (
	MetaReplica       = "replica"
	MetaAddress       = "address"
	MetaVersion       = "ambit_version"
	MetaSharedVersion = "shared_version"
	MetaCommit        = "commit"
	MetaNode          = "node"
)

// Replica describes one running replica.
type Replica struct {
	Info    buildinfo.Info
	Replica string
	// Address is where the replica serves its API.
	Address string
	// Node is set for per-node agents.
	Node string
	// Stats reports load and lag (JSON-encodable), asked for on each
	// $SRV.STATS request; nil reports none.
	Stats func() any
}

// ServiceName is the micro service name of a component.
func ServiceName(component string) string { return "ambit-" + component }

// Register announces r on nc until the returned service is stopped or the
// connection closes.
func Register(nc *nats.Conn, r Replica) (micro.Service, error) {
	cfg := micro.Config{
		Name:        ServiceName(r.Info.Component),
		Version:     semver(r.Info.Version),
		Description: fmt.Sprintf("Ambit %s replica %s", r.Info.Component, r.Replica),
		Metadata: map[string]string{
			MetaReplica:       r.Replica,
			MetaAddress:       r.Address,
			MetaVersion:       r.Info.Version,
			MetaSharedVersion: r.Info.SharedVersion,
			MetaCommit:        r.Info.Commit,
			MetaNode:          r.Node,
		},
	}
	if r.Stats != nil {
		stats := r.Stats
		cfg.StatsHandler = func(*micro.Endpoint) any { return stats() }
	}
	svc, err := micro.AddService(nc, cfg)
	if err != nil {
		return nil, fmt.Errorf("presence: register %s: %w", cfg.Name, err)
	}
	// One endpoint per replica: micro reports stats per endpoint, and a
	// per-replica subject lets a client ask one replica directly.
	status := func(req micro.Request) {
		var v any = struct{}{}
		if r.Stats != nil {
			v = r.Stats()
		}
		_ = req.RespondJSON(v)
	}
	if err := svc.AddEndpoint("status", micro.HandlerFunc(status),
		micro.WithEndpointSubject(StatusSubject(r.Info.Component, r.Replica)),
		micro.WithEndpointQueueGroupDisabled()); err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("presence: register %s status endpoint: %w", cfg.Name, err)
	}
	return svc, nil
}

// StatusSubject is where one replica answers status requests directly.
func StatusSubject(component, replica string) string {
	return "ambit.presence." + changefeed.EscapeToken(component) + "." + changefeed.EscapeToken(replica)
}

// semver turns our versions ("v0.1.0", "devel") into the SemVer the micro
// protocol requires; the exact version stays in the metadata.
func semver(v string) string {
	v = strings.TrimPrefix(v, "v")
	if v == "" || !(v[0] >= '0' && v[0] <= '9') {
		return "0.0.0-" + strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
				return r
			}
			return '-'
		}, orDevel(v))
	}
	return v
}

func orDevel(v string) string {
	if v == "" {
		return "devel"
	}
	return v
}
