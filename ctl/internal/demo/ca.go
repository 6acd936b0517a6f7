package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/ambitmesh/ambit/pkg/caclient"
	"github.com/ambitmesh/ambit/pkg/localproc"
	"github.com/ambitmesh/ambit/pkg/spiffe"
)

// caReplicas is how many ambit-ca processes the tour runs.
const caReplicas = 2

func (e *Env) adminDir() string { return filepath.Join(e.LogDir, "admin") }
func (e *Env) kekFile() string  { return filepath.Join(e.LogDir, "ca.kek") }

func (e *Env) startCA(ctx context.Context) ([]string, error) {
	if e.Stack == nil {
		return nil, errors.New("no state servers")
	}
	kek := make([]byte, 32)
	if _, err := rand.Read(kek); err != nil {
		return nil, err
	}
	if err := os.WriteFile(e.kekFile(), []byte(hex.EncodeToString(kek)), 0o600); err != nil {
		return nil, err
	}
	bin := filepath.Join(e.BinDir, "ambit-ca")
	common := []string{"--kek-file=" + e.kekFile(), "--etcd-endpoints=" + strings.Join(e.Stack.EtcdEndpoints(), ",")}
	// Both replicas start at the same instant on an empty etcd; they agree
	// on one root.
	type started struct {
		p   *localproc.Process
		err error
	}
	ch := make(chan started, caReplicas)
	for i := range caReplicas {
		id := fmt.Sprintf("ca-%d", i)
		go func() {
			p, err := localproc.Start(ctx, id, bin, append([]string{
				"--listen-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", "--replica-id=" + id, "--nats-url=" + e.Stack.NATSURL(),
			}, common...), e.LogDir, 30*time.Second)
			ch <- started{p, err}
		}()
	}
	var ev []string
	var errs []error
	for range caReplicas {
		s := <-ch
		if s.err != nil {
			errs = append(errs, s.err)
			continue
		}
		e.CA = append(e.CA, s.p)
		ev = append(ev, fmt.Sprintf("%s: pid %d, CA on %s", s.p.Name, s.p.Pid(), s.p.Addr("grpc")))
	}
	if err := errors.Join(errs...); err != nil {
		return ev, err
	}
	out, err := exec.CommandContext(ctx, bin, append([]string{"issue-admin", "--out=" + e.adminDir()}, common...)...).CombinedOutput()
	ev = append(ev, "ambit-ca issue-admin: "+strings.TrimSpace(string(out)))
	if err != nil {
		return ev, fmt.Errorf("issue-admin: %w", err)
	}
	// The admin's bundle verifies both replicas: they serve from one root.
	for _, p := range e.CA {
		st, _, err := e.ambitctlCA(ctx, p, "ca", "status")
		if err != nil {
			return ev, fmt.Errorf("ambitctl ca status against %s: %w", p.Name, err)
		}
		ev = append(ev, fmt.Sprintf("ambitctl ca status (%s):", p.Name))
		ev = append(ev, lines(firstLines(st, 3))...)
	}
	return ev, nil
}

func firstLines(s string, n int) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	if len(ls) > n {
		ls = ls[:n]
	}
	return strings.Join(ls, "\n")
}

// ambitctlCA runs an ambitctl CA command against one CA replica.
func (e *Env) ambitctlCA(ctx context.Context, ca *localproc.Process, args ...string) (string, string, error) {
	full := append(args, "--ca-addr="+ca.Addr("grpc"), "--credentials-dir="+e.adminDir())
	cmd := exec.CommandContext(ctx, filepath.Join(e.BinDir, "ambitctl"), full...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%w: %s", err, strings.TrimSpace(errb.String()))
	}
	return out.String(), errb.String(), err
}

// caConn connects to a CA replica as a party holding only the trust bundle
// (a joining node), or with svid when given.
func (e *Env) caConn(ca *localproc.Process, svid *spiffe.Source) (*grpc.ClientConn, error) {
	td := spiffe.DefaultTrustDomain()
	src := svid
	if src == nil {
		var err error
		files := spiffe.Files{BundleFile: filepath.Join(e.adminDir(), "bundle.pem")}
		b, err := loadBundle(files.BundleFile)
		if err != nil {
			return nil, err
		}
		if src, err = spiffe.NewSource(nil, b); err != nil {
			return nil, err
		}
	}
	caID, err := spiffe.NewControlPlane(td, spiffe.ComponentCA)
	if err != nil {
		return nil, err
	}
	return grpc.NewClient(ca.Addr("grpc"), grpc.WithTransportCredentials(credentials.NewTLS(spiffe.ClientConfig(src, spiffe.AuthorizeIdentity(caID)))))
}

func (e *Env) joinNode(ctx context.Context) ([]string, error) {
	if len(e.CA) == 0 {
		return nil, errors.New("no CA running")
	}
	tok, _, err := e.ambitctlCA(ctx, e.CA[0], "node", "token", "create", "node-a", "--ttl=10m")
	if err != nil {
		return nil, err
	}
	token := strings.TrimSpace(tok)
	ev := []string{"ambitctl node token create node-a  →  " + token[:min(len(token), 18)] + "…"}
	conn, err := e.caConn(e.CA[len(e.CA)-1], nil)
	if err != nil {
		return ev, err
	}
	defer conn.Close()
	node, err := spiffe.NewNode(spiffe.DefaultTrustDomain(), "node-a")
	if err != nil {
		return ev, err
	}
	svid, bundle, err := caclient.Join(ctx, conn, token, node, 0)
	if err != nil {
		return ev, fmt.Errorf("join: %w", err)
	}
	ev = append(ev, fmt.Sprintf("node-a traded it (at the other replica) for %s, valid until %s",
		svid.ID, svid.Certificates[0].NotAfter.UTC().Format(time.RFC3339)))
	if _, _, err := caclient.Join(ctx, conn, token, node, 0); err == nil {
		return ev, errors.New("the join token worked twice")
	} else {
		ev = append(ev, "the same token again: "+status.Convert(err).Message())
	}
	src, err := spiffe.NewSource(svid, bundle)
	if err != nil {
		return ev, err
	}
	e.nodeA = src
	return ev, nil
}

func (e *Env) nodeBoundCerts(ctx context.Context) ([]string, error) {
	if e.nodeA == nil {
		return nil, errors.New("node-a has no certificate")
	}
	// The orchestrator (here: the tour, as admin) places two pods.
	pods := filepath.Join(e.LogDir, "pods.yaml")
	manifest := `apiVersion: v1
kind: Pod
metadata: {name: frontend-0, namespace: shop, labels: {app: frontend}}
spec: {nodeName: node-a, serviceAccountName: frontend}
---
apiVersion: v1
kind: Pod
metadata: {name: echo-0, namespace: shop, labels: {app: echo}}
spec: {nodeName: node-b, serviceAccountName: echo}
`
	if err := os.WriteFile(pods, []byte(manifest), 0o644); err != nil {
		return nil, err
	}
	out, errOut, err := e.ambitctl(ctx, "apply", "-f", pods)
	ev := append([]string{"pods placed by the orchestrator:"}, lines(out+errOut)...)
	if err != nil {
		return ev, err
	}
	conn, err := e.caConn(e.CA[0], e.nodeA)
	if err != nil {
		return ev, err
	}
	defer conn.Close()
	td := spiffe.DefaultTrustDomain()
	frontend, _ := spiffe.NewWorkload(td, "shop", "frontend")
	echo, _ := spiffe.NewWorkload(td, "shop", "echo")
	svid, err := caclient.Certificate(ctx, conn, frontend, true, time.Hour)
	if err != nil {
		return ev, fmt.Errorf("node-a asking for its pod's identity: %w", err)
	}
	ev = append(ev, fmt.Sprintf("node-a asks for %s (frontend-0 runs on node-a): issued, SAN %s", frontend, svid.ID))
	_, err = caclient.Certificate(ctx, conn, echo, true, time.Hour)
	if err == nil {
		return ev, errors.New("node-a obtained the identity of a pod on node-b")
	}
	st := status.Convert(err)
	return append(ev, fmt.Sprintf("node-a asks for %s (echo-0 runs on node-b): %s: %s", echo, st.Code(), st.Message())), nil
}
