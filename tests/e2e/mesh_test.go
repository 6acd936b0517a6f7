//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ambitmesh/ambit/pkg/devstack"
	"github.com/ambitmesh/ambit/pkg/localproc"
	"github.com/ambitmesh/ambit/pkg/netns"
)

// mesh is a whole running mesh: state servers, config (TLS), CA, xds,
// and per node a CNI agent and a ztunnel, on a netns topology.
type mesh struct {
	t       *testing.T
	bin     string
	stack   *devstack.Stack
	ca      *localproc.Process
	admin   string
	configs []*localproc.Process
	ctl     ctlFunc
	xds     *localproc.Process
	xdsArgs []string
	topo    *netns.Topology
	nodes   map[string]*meshNode
}

type meshNode struct {
	*cniNode
	ztunnel *localproc.Process
	zArgs   []string
}

func startXDS(t *testing.T, bin string, s *devstack.Stack, adminDir string) (*localproc.Process, []string) {
	t.Helper()
	kekFile := filepath.Join(filepath.Dir(adminDir), "ca.kek")
	out, err := exec.Command(filepath.Join(bin, "ambit-ca"), "issue-admin", "--component=xds", "--out="+adminDir,
		"--kek-file="+kekFile, "--etcd-endpoints="+strings.Join(s.EtcdEndpoints(), ",")).CombinedOutput()
	if err != nil {
		t.Fatalf("issue xds identity: %v: %s", err, out)
	}
	args := []string{
		"--listen-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", "--replica-id=xds-a",
		"--cert-file=" + filepath.Join(adminDir, "xds.crt"), "--key-file=" + filepath.Join(adminDir, "xds.key"),
		"--bundle-file=" + filepath.Join(adminDir, "bundle.pem"),
		"--etcd-endpoints=" + strings.Join(s.EtcdEndpoints(), ","), "--nats-url=" + s.NATSURL(),
	}
	p, err := localproc.Start(context.Background(), "xds", filepath.Join(bin, "ambit-xds"), args, t.TempDir(), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !p.Exited() {
			_ = p.Stop(10 * time.Second)
		}
	})
	return p, args
}

func newMesh(t *testing.T, nodes ...string) *mesh {
	t.Helper()
	requireRoot(t)
	m := &mesh{t: t, bin: BinDir(t), nodes: map[string]*meshNode{}}
	m.stack = Stack(t)
	m.ca, m.admin = caForTest(t, m.bin, m.stack)
	m.configs, m.ctl = tlsConfig(t, m.bin, m.stack, m.admin)
	m.xds, m.xdsArgs = startXDS(t, m.bin, m.stack, m.admin)
	topo, err := netns.New(context.Background(), netns.Options{NamePrefix: "e2emesh"})
	if err != nil {
		t.Fatal(err)
	}
	m.topo = topo
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Errorf("topology cleanup: %v", err)
		}
	})
	for _, name := range nodes {
		n := &meshNode{cniNode: newCNINode(t, topo, name, m.bin, m.configs, m.ca, m.admin)}
		n.zArgs = []string{
			"--node=" + name, "--run-dir=" + n.runDir,
			"--admin-addr=127.0.0.1:0", "--metrics-addr=127.0.0.1:0", "--readiness-addr=127.0.0.1:0",
			"--xds-servers=" + m.xds.Addr("grpc"), "--ca-servers=" + m.ca.Addr("grpc"),
			"--ca-bundle-file=" + filepath.Join(m.admin, "bundle.pem"), "--log-level=debug",
		}
		m.startZtunnel(n)
		m.nodes[name] = n
	}
	return m
}

func (m *mesh) startZtunnel(n *meshNode) {
	m.t.Helper()
	p, err := localproc.Start(context.Background(), "ztunnel-"+n.name, filepath.Join(m.bin, "ambit-ztunnel"), n.zArgs, n.logDir, 30*time.Second)
	if err != nil {
		m.t.Fatal(err)
	}
	n.ztunnel = p
	m.t.Cleanup(func() {
		if !p.Exited() {
			_ = p.Stop(10 * time.Second)
		}
		if m.t.Failed() {
			dumpLog(m.t, p.LogPath, 60)
			dumpLog(m.t, n.agent.LogPath, 30)
		}
	})
}

// addPod applies a pod on node and creates it through CNI.
func (m *mesh) addPod(node, namespace, name, labels string) *pod {
	m.t.Helper()
	applyYAML(m.t, m.ctl, podYAML(namespace, name, node, labels))
	uid := podUID(m.t, m.ctl, namespace, name)
	p, err := m.nodes[node].addPod(namespace, name, uid)
	if err != nil {
		m.t.Fatal(err)
	}
	return p
}

// echoServer listens inside a pod's netns and echoes every connection,
// prefixed by a greeting, until the test ends.
func echoServer(t *testing.T, p *pod, port int) {
	t.Helper()
	ln, err := p.ns.NS().Listen(context.Background(), &net.ListenConfig{}, "tcp", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			})
		}
	})
}

// roundTrip dials from a pod's netns and checks one echo.
func roundTrip(ctx context.Context, from *pod, addr, msg string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := from.ns.NS().Dial(ctx, &net.Dialer{}, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo %q, want %q", buf, msg)
	}
	return nil
}

// eventually retries f until it succeeds (state crosses processes and
// the kernel; there is no event to wait on).
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// accessLog returns the access-log lines a ztunnel wrote so far.
func accessLog(t *testing.T, p *localproc.Process) []map[string]any {
	t.Helper()
	f, err := os.Open(p.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "connection complete" {
			out = append(out, m)
		}
	}
	return out
}

func TestMeshTwoNodes(t *testing.T) {
	m := newMesh(t, "node-a", "node-b")
	applyYAML(t, m.ctl, "apiVersion: v1\nkind: Namespace\nmetadata: {name: mesh, labels: {istio.io/dataplane-mode: ambient}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: plain}\n")
	applyYAML(t, m.ctl, "apiVersion: v1\nkind: Namespace\nmetadata: {name: other, labels: {istio.io/dataplane-mode: ambient}}\n")
	a := m.addPod("node-a", "mesh", "a", "")
	b := m.addPod("node-b", "mesh", "b", "")
	c := m.addPod("node-a", "other", "c", "")
	outside := m.addPod("node-a", "plain", "outside", "")
	echoServer(t, b, 8080)
	ctx := context.Background()
	target := b.ip + ":8080"

	t.Run("pods on two nodes talk over HBONE, nothing in the clear", func(t *testing.T) {
		capture := filepath.Join(t.TempDir(), "link.pcap")
		// The link between the nodes: node-b's uplink carries everything
		// between node-a's and node-b's pods.
		nodeB := m.nodes["node-b"].node
		tcpdump := exec.Command("tcpdump", "-Z", "root", "-i", nodeB.Uplink(), "-w", capture, "-U", "--immediate-mode", "-s", "0", "tcp")
		tcpdumpErr := &lockedBuffer{}
		tcpdump.Stderr = tcpdumpErr
		if err := nodeB.NS().Start(tcpdump); err != nil {
			t.Fatalf("tcpdump: %v", err)
		}
		// tcpdump is ready when it says it is listening.
		waitUntil(t, "tcpdump capturing", func() bool { return strings.Contains(tcpdumpErr.String(), "listening on") })
		secret := "ambit-e2e-secret-payload-" + strings.Repeat("x", 64)
		eventually(t, "a → b through the mesh", func() error { return roundTrip(ctx, a, target, secret) })
		for i := range 20 {
			if err := roundTrip(ctx, a, target, fmt.Sprintf("%s-%d", secret, i)); err != nil {
				t.Fatal(err)
			}
		}
		_ = tcpdump.Process.Signal(os.Interrupt)
		_ = tcpdump.Wait()
		segs, err := readPcap(capture)
		if err != nil {
			t.Fatal(err)
		}
		hbone := 0
		for _, s := range segs {
			if bytes.Contains(s.Payload, []byte("ambit-e2e-secret")) {
				t.Fatalf("application payload in the clear on the fabric: %v → %v", s.Src, s.Dst)
			}
			if s.Dst.Port() == 15008 || s.Src.Port() == 15008 {
				hbone++
				if ct := s.Payload[0]; ct < 0x14 || ct > 0x17 || s.Payload[1] != 0x03 {
					t.Fatalf("TCP payload on 15008 is not a TLS record: % x", s.Payload[:min(8, len(s.Payload))])
				}
			}
		}
		if hbone == 0 {
			t.Fatalf("no traffic on 15008 among %d captured segments (tcpdump: %s)", len(segs), tcpdumpErr.String())
		}
		waitUntil(t, "destination access log names the source identity", func() bool {
			for _, l := range accessLog(t, m.nodes["node-b"].ztunnel) {
				if l["src.identity"] == "spiffe://cluster.local/ns/mesh/sa/sa-a" && l["direction"] == "inbound" {
					return true
				}
			}
			return false
		})
	})

	t.Run("STRICT rejects plaintext", func(t *testing.T) {
		eventually(t, "plaintext allowed while PERMISSIVE", func() error { return roundTrip(ctx, outside, target, "plain") })
		applyYAML(t, m.ctl, "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: strict, namespace: mesh}\nspec: {mtls: {mode: STRICT}}\n")
		eventually(t, "plaintext denied under STRICT", func() error {
			if err := roundTrip(ctx, outside, target, "plain"); err == nil {
				return errors.New("still allowed")
			}
			return nil
		})
		if err := roundTrip(ctx, a, target, "mtls"); err != nil {
			t.Fatalf("mesh traffic under STRICT: %v", err)
		}
		if r := m.ctl(t, "delete", "peerauthentication", "strict", "-n", "mesh"); r.Code != 0 {
			t.Fatal(r.Stderr)
		}
	})

	// One row per rule shape: the policy applies to b; a (mesh/sa-a) and
	// c (other/sa-c) are the sources. Each row waits until both outcomes
	// hold, which proves the policy arrived (one of them differs from the
	// default allow).
	reach := func(p *pod) bool { return roundTrip(ctx, p, target, "authz") == nil }
	rows := []struct {
		name, action, rule string
		a, c               bool
	}{
		{"ALLOW by principal", "ALLOW", "from: [{source: {principals: [cluster.local/ns/mesh/sa/sa-a]}}]", true, false},
		{"ALLOW by namespace", "ALLOW", "from: [{source: {namespaces: [other]}}]", false, true},
		{"ALLOW by service account", "ALLOW", "from: [{source: {serviceAccounts: [other/sa-c]}}]", false, true},
		{"ALLOW by IP block", "ALLOW", "from: [{source: {ipBlocks: [" + c.ip + "/32]}}]", false, true},
		{"ALLOW by port", "ALLOW", "to: [{operation: {ports: [\"9090\"]}}]", false, false},
		{"DENY by principal", "DENY", "from: [{source: {principals: [cluster.local/ns/other/sa/sa-c]}}]", true, false},
		{"DENY by namespace", "DENY", "from: [{source: {namespaces: [mesh]}}]", false, true},
		{"DENY by not-IP block", "DENY", "from: [{source: {notIpBlocks: [" + a.ip + "/32]}}]", true, false},
		{"DENY by port", "DENY", "to: [{operation: {ports: [\"8080\"]}}]", false, false},
	}
	for _, row := range rows {
		t.Run("authorization "+row.name, func(t *testing.T) {
			applyYAML(t, m.ctl, fmt.Sprintf("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: row, namespace: mesh}\nspec:\n  selector: {matchLabels: {app: b}}\n  action: %s\n  rules:\n  - %s\n", row.action, row.rule))
			eventually(t, "policy enforced", func() error {
				if ra, rc := reach(a), reach(c); ra != row.a || rc != row.c {
					return fmt.Errorf("a allowed=%t (want %t), c allowed=%t (want %t)", ra, row.a, rc, row.c)
				}
				return nil
			})
			if r := m.ctl(t, "delete", "authorizationpolicy", "row", "-n", "mesh"); r.Code != 0 {
				t.Fatal(r.Stderr)
			}
			eventually(t, "policy removed", func() error {
				if !reach(a) || !reach(c) {
					return errors.New("still denied")
				}
				return nil
			})
		})
	}

	t.Run("a policy change closes a now-denied established connection", func(t *testing.T) {
		conn, err := a.ns.NS().Dial(ctx, &net.Dialer{}, "tcp", target)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		echo := func() error {
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.Write([]byte("ping")); err != nil {
				return err
			}
			buf := make([]byte, 4)
			_, err := io.ReadFull(conn, buf)
			return err
		}
		if err := echo(); err != nil {
			t.Fatal(err)
		}
		applyYAML(t, m.ctl, "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: cut, namespace: mesh}\nspec:\n  selector: {matchLabels: {app: b}}\n  action: DENY\n  rules:\n  - from: [{source: {principals: [cluster.local/ns/mesh/sa/sa-a]}}]\n")
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.ReadAll(conn); err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("the established connection survived a policy that denies it")
		}
		if r := m.ctl(t, "delete", "authorizationpolicy", "cut", "-n", "mesh"); r.Code != 0 {
			t.Fatal(r.Stderr)
		}
		eventually(t, "allowed again", func() error { return roundTrip(ctx, a, target, "again") })
	})

	t.Run("Istio TCP metrics", func(t *testing.T) {
		body := httpGet(t, "http://"+m.nodes["node-b"].ztunnel.Addr("metrics")+"/metrics")
		for _, want := range []string{
			"istio_tcp_connections_opened_total{", "istio_tcp_connections_closed_total{", "istio_tcp_sent_bytes_total{", "istio_tcp_received_bytes_total{",
			`reporter="destination"`, `source_principal="spiffe://cluster.local/ns/mesh/sa/sa-a"`, `destination_workload="b"`, `connection_security_policy="mutual_tls"`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
		dump := httpGet(t, "http://"+m.nodes["node-b"].ztunnel.Addr("admin")+"/config_dump")
		for _, want := range []string{"spiffe://cluster.local/ns/mesh/sa/sa-b", `"workloads"`, `"certificates"`} {
			if !strings.Contains(dump, want) {
				t.Errorf("config_dump lacks %s", want)
			}
		}
	})

	t.Run("the control plane stopped for 30s changes nothing for running traffic", func(t *testing.T) {
		conn, err := a.ns.NS().Dial(ctx, &net.Dialer{}, "tcp", target)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for _, p := range append([]*localproc.Process{m.xds, m.ca}, m.configs...) {
			p.Kill()
		}
		deadline := time.Now().Add(30 * time.Second)
		for i := 0; time.Now().Before(deadline); i++ {
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			msg := fmt.Sprintf("still-%03d", i)
			if _, err := conn.Write([]byte(msg)); err != nil {
				t.Fatalf("established connection broke while the control plane is down: %v", err)
			}
			buf := make([]byte, len(msg))
			if _, err := io.ReadFull(conn, buf); err != nil {
				t.Fatalf("established connection broke while the control plane is down: %v", err)
			}
			if err := roundTrip(ctx, a, target, msg); err != nil {
				t.Fatalf("new connection failed while the control plane is down: %v", err)
			}
			time.Sleep(time.Second) // a steady trickle of traffic over the 30 s
		}
	})
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// dumpLog prints the last lines of a process log into the test output.
func dumpLog(t *testing.T, path string, lines int) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	ls := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	t.Logf("--- %s (last %d lines)\n%s", filepath.Base(path), len(ls), strings.Join(ls, "\n"))
}

// lockedBuffer is a bytes.Buffer written by a process and read by a test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
