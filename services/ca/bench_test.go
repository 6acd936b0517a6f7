package ca_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"
	istioca "istio.io/api/security/v1alpha1"

	"github.com/ambitmesh/ambit/services/ca"
)

// BenchmarkCreateCertificate measures Istio's CSR API end to end over
// real gRPC and TLS on loopback (DESIGN §9 CA-1): each caller is a node
// (its own mTLS connection) asking for the workload identity of a pod on
// it, found in the pod index; ECDSA P-256 keys. CSRs are made beforehand
// so the clients' key generation does not compete with the CA for the two
// cores. Reports certificates per second and the p99 latency.
func BenchmarkCreateCertificate(b *testing.B) {
	h := newHarness(b)
	r := h.startCA("bench", func(c *ca.Config, o *ca.Options) {
		c.RateLimit = 0
		o.TracerProvider = sdktrace.NewTracerProvider() // spans made, none recorded
	})
	admin := h.admin(r)
	const maxCallers = 32
	type caller struct {
		conn *grpc.ClientConn
		reqs []*istioca.IstioCertificateRequest
	}
	callers := make([]caller, maxCallers)
	for i := range callers {
		node := fmt.Sprintf("node-%d", i)
		svid := h.joinNode(admin, r, node)
		h.putPod("bench", fmt.Sprintf("pod-%d", i), node, fmt.Sprintf("sa-%d", i))
		identity := fmt.Sprintf("spiffe://cluster.local/ns/bench/sa/sa-%d", i)
		c := caller{conn: dial(b, r.Addr().String(), svid, r.bundle(b), "")}
		for range 16 {
			c.reqs = append(c.reqs, &istioca.IstioCertificateRequest{
				Csr: csrFor(b, newKey(b), nil, identity), ValidityDuration: 24 * 3600,
				Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{"ImpersonatedIdentity": structpb.NewStringValue(identity)}},
			})
		}
		callers[i] = c
	}
	resp, err := h.etcd.Get(context.Background(), "/")
	if err != nil {
		b.Fatal(err)
	}
	eventually(b, "the pod index to catch up", func() (bool, string) {
		return r.IndexRevision() >= resp.Header.Revision, fmt.Sprintf("index at %d, etcd at %d", r.IndexRevision(), resp.Header.Revision)
	})
	// Warm up every connection.
	for _, c := range callers {
		if _, err := istioca.NewIstioCertificateServiceClient(c.conn).CreateCertificate(context.Background(), c.reqs[0]); err != nil {
			b.Fatal(err)
		}
	}

	for _, n := range []int{1, 32} {
		b.Run(fmt.Sprintf("callers=%d", n), func(b *testing.B) {
			lat := make([][]time.Duration, n)
			var wg sync.WaitGroup
			var failed sync.Once
			b.ResetTimer()
			start := time.Now()
			for i := range n {
				count := b.N / n
				if i < b.N%n {
					count++
				}
				wg.Go(func() {
					c := callers[i]
					client := istioca.NewIstioCertificateServiceClient(c.conn)
					ls := make([]time.Duration, 0, count)
					for j := range count {
						t0 := time.Now()
						if _, err := client.CreateCertificate(context.Background(), c.reqs[j%len(c.reqs)]); err != nil {
							failed.Do(func() { b.Error(err) })
							return
						}
						ls = append(ls, time.Since(t0))
					}
					lat[i] = ls
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			all := slices.Concat(lat...)
			slices.Sort(all)
			if len(all) == 0 {
				return
			}
			p99 := all[min(len(all)-1, len(all)*99/100)]
			b.ReportMetric(float64(len(all))/elapsed.Seconds(), "certs/s")
			b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
		})
	}
}
