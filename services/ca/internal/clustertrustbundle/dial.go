package clustertrustbundle

import (
	"errors"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

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
	if len(addrs) == 0 {
		return nil, errors.New("clustertrustbundle: no config server addresses")
	}
	configID, err := spiffe.NewControlPlane(td, spiffe.ComponentConfig)
	if err != nil {
		return nil, err
	}
	r := manual.NewBuilderWithScheme("ambit-config")
	state := resolver.State{}
	for _, a := range addrs {
		state.Addresses = append(state.Addresses, resolver.Address{Addr: a})
	}
	r.InitialState(state)
	creds := credentials.NewTLS(spiffe.ClientConfig(src, spiffe.AuthorizeIdentity(configID)))
	return grpc.NewClient(r.Scheme()+":///config",
		grpc.WithResolvers(r),
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: min(time.Second, maxBackoff), Multiplier: 1.6, Jitter: 0.2, MaxDelay: maxBackoff},
			MinConnectTimeout: 5 * time.Second,
		}),
	)
}
