package cpdial_test

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"

	"github.com/ambitmesh/ambit/pkg/cpdial"
	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/pkg/spiffe/spiffetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// replica is one real gRPC server on a loopback port, counting the calls
// it serves.
type replica struct {
	addr   string
	srv    *grpc.Server
	served atomic.Int64
	done   chan struct{}
}

func startReplica(t *testing.T, creds credentials.TransportCredentials) *replica {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{addr: lis.Addr().String(), done: make(chan struct{})}
	r.srv = grpc.NewServer(grpc.Creds(creds), grpc.UnaryInterceptor(
		func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			r.served.Add(1)
			return h(ctx, req)
		}))
	healthpb.RegisterHealthServer(r.srv, health.NewServer())
	go func() {
		defer close(r.done)
		_ = r.srv.Serve(lis)
	}()
	t.Cleanup(r.stop)
	return r
}

func (r *replica) stop() {
	r.srv.Stop()
	<-r.done
}

func (r *replica) gracefulStop() {
	r.srv.GracefulStop()
	<-r.done
}

type fixture struct {
	ca        *spiffetest.CA
	client    *spiffe.Source
	serverFor func(spiffe.Component) credentials.TransportCredentials
	authorize spiffe.Authorizer
}

func newFixture(t *testing.T) fixture {
	td := spiffe.DefaultTrustDomain()
	ca := spiffetest.NewCA(t, td)
	node, _ := spiffe.NewNode(td, "node-a")
	return fixture{
		ca:     ca,
		client: ca.Source(t, node),
		serverFor: func(c spiffe.Component) credentials.TransportCredentials {
			id, err := spiffe.NewControlPlane(td, c)
			if err != nil {
				t.Fatal(err)
			}
			return credentials.NewTLS(spiffe.ServerConfig(ca.Source(t, id), spiffe.AuthorizeNodes(td)))
		},
		authorize: spiffe.AuthorizeComponents(td, spiffe.ComponentConfig),
	}
}

func check(ctx context.Context, conn *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func TestSpreadsAndSurvivesAStoppedReplica(t *testing.T) {
	for _, tc := range []struct {
		name string
		// A crashed replica may fail the one call already written to its
		// dying connection (gRPC retries only calls that never left the
		// client); a replica that shuts down gracefully fails none.
		stop        func(*replica)
		maxFailures int
	}{
		{"graceful", (*replica).gracefulStop, 0},
		{"crash", (*replica).stop, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			a, b := startReplica(t, f.serverFor(spiffe.ComponentConfig)), startReplica(t, f.serverFor(spiffe.ComponentConfig))
			conn, err := cpdial.Dial([]string{a.addr, b.addr}, cpdial.MTLS(f.client, f.authorize), cpdial.WithName("config"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx := t.Context()

			// Round-robin reaches both replicas once both are connected.
			for i := 0; a.served.Load() == 0 || b.served.Load() == 0; i++ {
				if i == 200 {
					t.Fatalf("200 calls, served by a: %d, b: %d; want both", a.served.Load(), b.served.Load())
				}
				if err := check(ctx, conn); err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
			}

			tc.stop(a)
			before := b.served.Load()
			failures := 0
			for i := range 50 {
				if err := check(ctx, conn); err != nil {
					failures++
					if failures > tc.maxFailures || status.Code(err) != codes.Unavailable {
						t.Fatalf("call %d after stopping a replica: %v", i, err)
					}
				}
			}
			if got := b.served.Load() - before; got != int64(50-failures) {
				t.Fatalf("the live replica served %d of %d successful calls", got, 50-failures)
			}
		})
	}
}

func TestSkipsAReplicaDownFromTheStart(t *testing.T) {
	f := newFixture(t)
	live := startReplica(t, f.serverFor(spiffe.ComponentConfig))
	dead := deadAddr(t)
	conn, err := cpdial.Dial([]string{dead, live.addr}, cpdial.MTLS(f.client, f.authorize), cpdial.WithMaxBackoff(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range 20 {
		if err := check(t.Context(), conn); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
}

// deadAddr returns a loopback address where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

func TestLazyAndUnavailableWhenAllDown(t *testing.T) {
	f := newFixture(t)
	conn, err := cpdial.Dial([]string{deadAddr(t), deadAddr(t)}, cpdial.MTLS(f.client, f.authorize))
	if err != nil {
		t.Fatalf("Dial must not connect: %v", err)
	}
	defer conn.Close()
	if err := check(t.Context(), conn); status.Code(err) != codes.Unavailable {
		t.Fatalf("call with every replica down: %v, want Unavailable", err)
	}
}

func TestRefusesAServerWithTheWrongIdentity(t *testing.T) {
	f := newFixture(t)
	xds := startReplica(t, f.serverFor(spiffe.ComponentXDS))
	conn, err := cpdial.Dial([]string{xds.addr}, cpdial.MTLS(f.client, f.authorize))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	err = check(t.Context(), conn)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "xds") {
		t.Fatalf("call to an xds server when config was expected: %v", err)
	}
	if xds.served.Load() != 0 {
		t.Fatal("the call reached the wrong server")
	}
}

func TestNoGlobalResolver(t *testing.T) {
	f := newFixture(t)
	conn, err := cpdial.Dial([]string{"127.0.0.1:1"}, cpdial.MTLS(f.client, f.authorize))
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if resolver.Get("ambit") != nil {
		t.Fatal("Dial registered a global resolver")
	}
}

func TestDialErrors(t *testing.T) {
	creds := cpdial.MTLS(newFixture(t).client, spiffe.AuthorizeNodes(spiffe.DefaultTrustDomain()))
	for _, tc := range []struct {
		name  string
		addrs []string
		creds credentials.TransportCredentials
		opts  []cpdial.Option
		want  string
	}{
		{"no addresses", nil, creds, nil, "no server addresses"},
		{"no port", []string{"10.0.0.1"}, creds, nil, `"10.0.0.1" is not host:port`},
		{"empty entry", []string{"10.0.0.1:80", ""}, creds, nil, `"" is not host:port`},
		{"no host", []string{":80"}, creds, nil, "has no host"},
		{"port name", []string{"ca:grpc"}, creds, nil, `port "grpc" is not a number`},
		{"port zero", []string{"ca:0"}, creds, nil, `port "0"`},
		{"port too large", []string{"ca:65536"}, creds, nil, `port "65536"`},
		{"no credentials", []string{"ca:443"}, nil, nil, "no transport credentials"},
		{"negative backoff", []string{"ca:443"}, creds, []cpdial.Option{cpdial.WithMaxBackoff(-time.Second)}, "negative max backoff"},
		{"empty name", []string{"ca:443"}, creds, []cpdial.Option{cpdial.WithName("")}, "empty service name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := cpdial.Dial(tc.addrs, tc.creds, tc.opts...)
			if err == nil {
				conn.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
	for _, ok := range [][]string{{"ca.ambit.svc:15012"}, {"[::1]:8443", "127.0.0.1:9"}} {
		if err := cpdial.CheckAddresses(ok); err != nil {
			t.Errorf("CheckAddresses(%q): %v", ok, err)
		}
	}
	if err := cpdial.CheckAddresses([]string{"a", "b:x"}); err == nil || strings.Count(err.Error(), "cpdial:") != 2 {
		t.Errorf("CheckAddresses reports every bad entry: %v", err)
	}
}
