package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ambitmesh/ambit/pkg/cpdial"
	"github.com/ambitmesh/ambit/pkg/spiffe"
)

// Dial connects to a replicated control-plane service: the addresses are
// spread over round-robin, and a failed replica is skipped, so any live
// replica answers. The server must prove the identity of component.
func (c Context) Dial(ctx context.Context, addrs []string, component spiffe.Component) (*grpc.ClientConn, error) {
	if len(addrs) == 0 {
		return nil, fmt.Errorf("no %s server addresses in context %q", component, c.Name)
	}
	creds, err := c.credentials(addrs, component)
	if err != nil {
		return nil, err
	}
	conn, err := cpdial.Dial(addrs, creds, cpdial.WithName(string(component)))
	if err != nil {
		return nil, fmt.Errorf("context %q: %s servers: %w", c.Name, component, err)
	}
	return conn, nil
}

func (c Context) credentials(addrs []string, component spiffe.Component) (credentials.TransportCredentials, error) {
	if c.InsecureLoopback {
		for _, a := range addrs {
			host, _, err := net.SplitHostPort(a)
			ip, perr := netip.ParseAddr(host)
			if err != nil || perr != nil || !ip.IsLoopback() {
				return nil, fmt.Errorf("insecureLoopback: %q is not a loopback address", a)
			}
		}
		return insecure.NewCredentials(), nil
	}
	files := spiffe.Files{CertFile: c.CertFile, KeyFile: c.KeyFile, BundleFile: c.BundleFile}
	if err := files.Validate(); err != nil {
		return nil, fmt.Errorf("context %q: %w (or set insecureLoopback for a development mesh)", c.Name, err)
	}
	td, err := spiffeid.TrustDomainFromString(orDefault(c.TrustDomain, spiffe.DefaultTrustDomainName))
	if err != nil {
		return nil, fmt.Errorf("context %q: trustDomain: %w", c.Name, err)
	}
	src, err := spiffe.NewSourceFromFiles(files, td)
	if err != nil {
		return nil, err
	}
	id, err := src.Identity()
	if err != nil {
		return nil, err
	}
	if id.Kind() != spiffe.KindAdmin {
		return nil, errors.New("ambitctl needs an admin identity (spiffe://<td>/ambit/admin); " + files.CertFile + " holds " + id.String())
	}
	return cpdial.MTLS(src, spiffe.AuthorizeComponents(td, component)), nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
