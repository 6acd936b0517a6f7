package confload_test

import (
	"testing"
	"time"

	"github.com/ambitmesh/ambit/pkg/confload"
)

func TestValidationHelpers(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want string // "" for no error
	}{
		{"host port ok", confload.HostPort("listen-addr", "127.0.0.1:15010"), ""},
		{"host port any host", confload.HostPort("listen-addr", ":0"), ""},
		{"host port ipv6", confload.HostPort("listen-addr", "[::1]:80"), ""},
		{"host port missing port", confload.HostPort("listen-addr", "localhost"), `listen-addr "localhost": must be host:port`},
		{"host port bad port", confload.HostPort("listen-addr", "h:99999"), `listen-addr "h:99999": port must be a number from 0 to 65535`},
		{"non empty ok", confload.NonEmpty("trust-domain", "cluster.local"), ""},
		{"non empty blank", confload.NonEmpty("trust-domain", " "), `trust-domain " ": must be set`},
		{"one of ok", confload.OneOf("mode", "ebpf", "iptables", "ebpf"), ""},
		{"one of bad", confload.OneOf("mode", "nft", "iptables", "ebpf"), `mode "nft": must be one of iptables, ebpf`},
		{"positive ok", confload.Positive("workers", 1), ""},
		{"positive zero", confload.Positive("workers", 0), "workers 0: must be greater than 0"},
		{"positive duration", confload.Positive("ttl", -time.Second), "ttl -1s: must be greater than 0"},
		{"range ok", confload.InRange("ratio", 0.5, 0, 1), ""},
		{"range bad", confload.InRange("ratio", 1.5, 0, 1), "ratio 1.5: must be between 0 and 1"},
		{"field err", confload.FieldErr("cert-ttl", 48*time.Hour, "must not exceed max-cert-ttl"), "cert-ttl 48h0m0s: must not exceed max-cert-ttl"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			switch {
			case tc.want == "" && tc.err != nil:
				t.Errorf("err = %v, want nil", tc.err)
			case tc.want != "" && (tc.err == nil || tc.err.Error() != tc.want):
				t.Errorf("err = %v, want %q", tc.err, tc.want)
			}
		})
	}
}
