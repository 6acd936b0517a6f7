package clustertrustbundle

import (
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"

	"github.com/ambitmesh/ambit/pkg/cpdial"
	"github.com/ambitmesh/ambit/pkg/spiffe"
)

// Dial connects to the config service's replicas: round-robin over addrs,
// so a failed replica is skipped and any live one answers. The client
// presents src's certificate (the replica's own spiffe://<td>/ambit/ca)
// and accepts only a server that proves spiffe://<td>/ambit/config. The
// connection is lazy: nothing is dialed before the first call. gRPC's
// reconnect delay is capped at maxBackoff, so a config service that comes
// back is found no later than the publisher's own next retry.
func Dial(addrs []string, src spiffe.X509Source, td spiffeid.TrustDomain, maxBackoff time.Duration) (*grpc.ClientConn, error) {
	configID, err := spiffe.NewControlPlane(td, spiffe.ComponentConfig)
	if err != nil {
		return nil, err
	}
	conn, err := cpdial.Dial(addrs, cpdial.MTLS(src, spiffe.AuthorizeIdentity(configID)),
		cpdial.WithName(string(spiffe.ComponentConfig)), cpdial.WithMaxBackoff(maxBackoff))
	if err != nil {
		return nil, fmt.Errorf("clustertrustbundle: %w", err)
	}
	return conn, nil
}
