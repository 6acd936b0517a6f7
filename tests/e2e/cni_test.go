//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ambitmesh/ambit/pkg/cniruntime"
	"github.com/ambitmesh/ambit/pkg/devstack"
	"github.com/ambitmesh/ambit/pkg/localproc"
	"github.com/ambitmesh/ambit/pkg/netns"
)

// cniNode is one node of the CNI tests: its netns, the CNI runtime that
// creates pods on it, the agent process and its paths.
type cniNode struct {
	t       *testing.T
	name    string
	node    *netns.Node
	topo    *netns.Topology
	rt      *cniruntime.Runtime
	runDir  string
	agent   *localproc.Process
	args    []string
	bin     string
	logDir  string
	spool   string
	zdsSock string
}

// cniPluginDir finds the reference plugins (make cni-plugins).
func cniPluginDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("AMBIT_CNI_PLUGIN_DIR")
	if dir == "" {
		dir = filepath.Join(RepoRoot(t), ".bin", "cni")
	}
	for _, p := range []string{"bridge", "host-local"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Fatalf("reference CNI plugin %s missing in %s: run make cni-plugins", p, dir)
		}
	}
	return dir
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, CNI plugins and iptables")
	}
	if _, err := exec.LookPath("iptables-nft-restore"); err != nil {
		if _, err := exec.LookPath("iptables-restore"); err != nil {
			t.Skip("needs iptables (nft backend)")
		}
	}
}

// tlsConfig starts a config replica serving TLS with the identity the CA
// issued it (ambit-ca issue-admin --component config), and returns an
// ambitctl runner with the admin's credentials: every caller, the node
// agents included, is authenticated as in production.
func tlsConfig(t *testing.T, bin string, s *devstack.Stack, adminDir string) ([]*localproc.Process, ctlFunc) {
	t.Helper()
	kekFile := filepath.Join(filepath.Dir(adminDir), "ca.kek")
	out, err := exec.Command(filepath.Join(bin, "ambit-ca"), "issue-admin", "--component=config", "--out="+adminDir,
		"--kek-file="+kekFile, "--etcd-endpoints="+strings.Join(s.EtcdEndpoints(), ",")).CombinedOutput()
	if err != nil {
		t.Fatalf("issue config identity: %v: %s", err, out)
	}
	p, err := localproc.Start(context.Background(), "config", filepath.Join(bin, "ambit-config"), []string{
		"--listen-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", "--replica-id=config-a",
		"--cert-file=" + filepath.Join(adminDir, "config.crt"), "--key-file=" + filepath.Join(adminDir, "config.key"),
		"--bundle-file=" + filepath.Join(adminDir, "bundle.pem"),
		"--etcd-endpoints=" + strings.Join(s.EtcdEndpoints(), ","), "--nats-url=" + s.NATSURL(),
	}, t.TempDir(), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(10 * time.Second) })
	cfgFile := filepath.Join(t.TempDir(), "ambitconfig")
	ctxFile := fmt.Sprintf("currentContext: e2e\ncontexts:\n- name: e2e\n  configServers: [%s]\n  certFile: %s\n  keyFile: %s\n  bundleFile: %s\n",
		p.Addr("grpc"), filepath.Join(adminDir, "admin.crt"), filepath.Join(adminDir, "admin.key"), filepath.Join(adminDir, "bundle.pem"))
	if err := os.WriteFile(cfgFile, []byte(ctxFile), 0o600); err != nil {
		t.Fatal(err)
	}
	ctl := func(t *testing.T, args ...string) Result {
		t.Helper()
		return RunAmbitctl(t, bin, append([]string{"--ambitconfig=" + cfgFile}, args...)...)
	}
	return []*localproc.Process{p}, ctl
}

// caForTest starts one CA replica and writes admin credentials.
func caForTest(t *testing.T, bin string, s *devstack.Stack) (ca *localproc.Process, adminDir string) {
	t.Helper()
	dir := t.TempDir()
	kek := make([]byte, 32)
	rand.Read(kek)
	kekFile := filepath.Join(dir, "ca.kek")
	if err := os.WriteFile(kekFile, []byte(hex.EncodeToString(kek)), 0o600); err != nil {
		t.Fatal(err)
	}
	common := []string{"--kek-file=" + kekFile, "--etcd-endpoints=" + strings.Join(s.EtcdEndpoints(), ",")}
	ca, err := localproc.Start(context.Background(), "ca", filepath.Join(bin, "ambit-ca"), append([]string{
		"--listen-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", "--replica-id=ca-0", "--nats-url=" + s.NATSURL(),
	}, common...), dir, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ca.Stop(10 * time.Second) })
	adminDir = filepath.Join(dir, "admin")
	out, err := exec.Command(filepath.Join(bin, "ambit-ca"), append([]string{"issue-admin", "--out=" + adminDir}, common...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("issue-admin: %v: %s", err, out)
	}
	return ca, adminDir
}

func joinToken(t *testing.T, bin string, ca *localproc.Process, adminDir, node string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(bin, "ambitctl"), "node", "token", "create", node, "--ttl=10m",
		"--ca-addr="+ca.Addr("grpc"), "--credentials-dir="+adminDir).Output()
	if err != nil {
		t.Fatalf("node token create: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// newCNINode adds a node to topo and starts its agent.
func newCNINode(t *testing.T, topo *netns.Topology, name, bin string, configs []*localproc.Process, ca *localproc.Process, adminDir string) *cniNode {
	t.Helper()
	ctx := context.Background()
	node, err := topo.AddNode(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	runDir := t.TempDir()
	n := &cniNode{
		t: t, name: name, node: node, topo: topo, runDir: runDir, bin: bin, logDir: t.TempDir(),
		spool: filepath.Join(runDir, name, "cni", "spool"), zdsSock: filepath.Join(runDir, name, "ztunnel", "zds.sock"),
	}
	var servers []string
	for _, c := range configs {
		servers = append(servers, c.Addr("grpc"))
	}
	n.args = []string{
		"--node=" + name, "--run-dir=" + runDir, "--admin-addr=127.0.0.1:0",
		"--config-servers=" + strings.Join(servers, ","),
		"--ca-servers=" + ca.Addr("grpc"), "--ca-bundle-file=" + filepath.Join(adminDir, "bundle.pem"),
		"--join-token=" + joinToken(t, bin, ca, adminDir, name), "--log-level=debug",
	}
	rt, err := cniruntime.New(node.NS(), cniruntime.NodeNetwork{
		Name: "ambit", Bridge: node.BridgeName(), PodCIDR: node.PodCIDR(), Gateway: node.Gateway(),
		StateDir: filepath.Join(runDir, name, "cni-runtime"),
		Ambit: &cniruntime.AmbitPlugin{
			AgentSocket: filepath.Join(runDir, name, "cni", "agent.sock"), SpoolDir: n.spool, Timeout: "20s",
		},
	}, []string{cniPluginDir(t), bin})
	if err != nil {
		t.Fatal(err)
	}
	n.rt = rt
	n.startAgent()
	return n
}

func (n *cniNode) startAgent() {
	n.t.Helper()
	p, err := localproc.Start(context.Background(), "agent-"+n.name, filepath.Join(n.bin, "ambit-cni-agent"), n.args, n.logDir, 30*time.Second)
	if err != nil {
		n.t.Fatal(err)
	}
	n.agent = p
	n.t.Cleanup(func() {
		if !p.Exited() {
			_ = p.Stop(10 * time.Second)
		}
		if n.t.Failed() {
			dumpLog(n.t, p.LogPath, 80)
		}
	})
}

func (n *cniNode) stopAgent() {
	n.t.Helper()
	if err := n.agent.Stop(10 * time.Second); err != nil {
		n.t.Fatalf("stop agent: %v", err)
	}
}

// pod is a sandbox made through CNI.
type pod struct {
	cniruntime.Pod
	ns *netns.Pod
	ip string
}

// addPod creates the sandbox netns and runs CNI ADD for it.
func (n *cniNode) addPod(namespace, name, uid string) (*pod, error) {
	n.t.Helper()
	p, err := n.topo.AddEmptyPod(context.Background(), n.name, namespace+"-"+name)
	if err != nil {
		n.t.Fatal(err)
	}
	cp := cniruntime.Pod{Namespace: namespace, Name: name, UID: uid, ContainerID: "sb-" + namespace + "-" + name, Netns: p.NetnsPath()}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := n.rt.Add(ctx, cp)
	if err != nil {
		return &pod{Pod: cp, ns: p}, err
	}
	ip, ok := cniruntime.PodIP(res)
	if !ok {
		n.t.Fatalf("CNI ADD gave no IPv4: %v", res)
	}
	return &pod{Pod: cp, ns: p, ip: ip.String()}, nil
}

// rules is the pod netns's iptables state, our chains only.
func ambitRules(t *testing.T, p *pod) []string {
	t.Helper()
	out, err := p.ns.NS().CombinedOutput(context.Background(), iptablesSave())
	if err != nil {
		t.Fatalf("iptables-save in %s: %v: %s", p.Name, err, out)
	}
	var rules []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "AMBIT") {
			rules = append(rules, l)
		}
	}
	return rules
}

func iptablesSave() string {
	if p, err := exec.LookPath("iptables-nft-save"); err == nil {
		return p
	}
	return "iptables-save"
}

// waitUntil polls cond (state in other processes has no event to wait on).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ctlFunc runs ambitctl against the test's config service.
type ctlFunc func(t *testing.T, args ...string) Result

func podUID(t *testing.T, ctl ctlFunc, namespace, name string) string {
	t.Helper()
	r := ctl(t, "get", "pod", name, "-n", namespace, "-o", "json")
	if r.Code != 0 {
		t.Fatalf("get pod %s/%s: %s", namespace, name, r.Stderr)
	}
	var obj struct {
		Metadata struct{ UID string } `json:"metadata"`
		Status   struct {
			PodIP string `json:"podIP"`
			Phase string `json:"phase"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &obj); err != nil {
		t.Fatalf("get pod: %v: %s", err, r.Stdout)
	}
	return obj.Metadata.UID
}

func podStatusIP(t *testing.T, ctl ctlFunc, namespace, name string) string {
	t.Helper()
	r := ctl(t, "get", "pod", name, "-n", namespace, "-o", "json")
	var obj struct {
		Status struct {
			PodIP string `json:"podIP"`
			Phase string `json:"phase"`
		} `json:"status"`
	}
	_ = json.Unmarshal([]byte(r.Stdout), &obj)
	return obj.Status.Phase + "/" + obj.Status.PodIP
}

func applyYAML(t *testing.T, ctl ctlFunc, yaml string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "m.yaml")
	if err := os.WriteFile(f, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := ctl(t, "apply", "-f", f); r.Code != 0 {
		t.Fatalf("apply: %s %s", r.Stdout, r.Stderr)
	}
}

func podYAML(namespace, name, node string, labels string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: %s
  labels: {app: %s%s}
spec:
  nodeName: %s
  serviceAccountName: sa-%s
  containers: [{name: app, image: echo}]
---
`, name, namespace, name, labels, node, name)
}

func hasMsg(ms []zdsMsg, kind, uid string) bool {
	return slices.ContainsFunc(ms, func(m zdsMsg) bool { return m.Kind == kind && m.UID == uid })
}

// TestCNIAgent drives pods through libcni with bridge + host-local +
// ambit-cni on a netns node, against real config, CA and agent processes,
// with a test ztunnel on the agent's ZDS socket.
func TestCNIAgent(t *testing.T) {
	requireRoot(t)
	bin := BinDir(t)
	s := Stack(t)
	ca, adminDir := caForTest(t, bin, s)
	configs, ctl := tlsConfig(t, bin, s, adminDir)
	topo, err := netns.New(context.Background(), netns.Options{NamePrefix: "e2ecni"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Errorf("topology cleanup: %v", err)
		}
	})
	const nodeName = "node-a"
	outer := t
	applyYAML(t, ctl, `apiVersion: v1
kind: Namespace
metadata: {name: mesh, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Namespace
metadata: {name: plain}
---
`+podYAML("mesh", "a", nodeName, "")+podYAML("mesh", "opt-out", nodeName, ", istio.io/dataplane-mode: none")+
		podYAML("plain", "b", nodeName, "")+podYAML("plain", "late", nodeName, "")+
		podYAML("mesh", "elsewhere", "node-b", ""))
	n := newCNINode(t, topo, nodeName, bin, configs, ca, adminDir)
	zt := dialZDS(t, n.zdsSock)
	zt.waitFor(t, "empty snapshot", func(ms []zdsMsg) bool { return len(ms) == 1 && ms[0].Kind == "snapshot" })

	uidA := podUID(t, ctl, "mesh", "a")
	a, err := n.addPod("mesh", "a", uidA)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("ADD enrolls a pod of an ambient namespace", func(t *testing.T) {
		if r := ambitRules(t, a); len(r) == 0 {
			t.Fatal("no AMBIT rules in the enrolled pod")
		}
		ms := zt.waitFor(t, "add of a", func(ms []zdsMsg) bool { return hasMsg(ms, "add", uidA) })
		for _, m := range ms {
			if m.Kind == "add" && m.UID == uidA {
				ino, _ := a.ns.NS().Inode()
				if m.Info.GetName() != "a" || m.Info.GetNamespace() != "mesh" || m.Info.GetServiceAccount() != "sa-a" || m.NetnsInode != ino {
					t.Fatalf("add: %+v, netns inode %d want %d", m.Info, m.NetnsInode, ino)
				}
			}
		}
		waitUntil(t, "pod a reports Running with its IP", func() bool {
			return podStatusIP(t, ctl, "mesh", "a") == "Running/"+a.ip
		})
		if err := n.rt.Check(context.Background(), a.Pod); err != nil {
			t.Fatalf("CHECK: %v", err)
		}
	})

	uidOpt := podUID(t, ctl, "mesh", "opt-out")
	opt, err := n.addPod("mesh", "opt-out", uidOpt)
	if err != nil {
		t.Fatal(err)
	}
	uidB := podUID(t, ctl, "plain", "b")
	b, err := n.addPod("plain", "b", uidB)
	if err != nil {
		t.Fatal(err)
	}
	uidElsewhere := podUID(t, ctl, "mesh", "elsewhere")
	elsewhere, err := n.addPod("mesh", "elsewhere", uidElsewhere)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("pods outside ambient stay out", func(t *testing.T) {
		for _, p := range []*pod{opt, b, elsewhere} {
			if r := ambitRules(t, p); len(r) != 0 {
				t.Fatalf("%s has rules: %v", p.Name, r)
			}
		}
		if hasMsg(zt.messages(), "add", uidOpt) || hasMsg(zt.messages(), "add", uidB) || hasMsg(zt.messages(), "add", uidElsewhere) {
			t.Fatal("ztunnel was given a pod outside the mesh")
		}
		waitUntil(t, "pod b reports its IP although not enrolled", func() bool {
			return podStatusIP(t, ctl, "plain", "b") == "Running/"+b.ip
		})
		// A sandbox of a pod assigned to another node is not this node's
		// to report or enroll (config would refuse the status write too).
		if got := podStatusIP(t, ctl, "mesh", "elsewhere"); got != "/" {
			t.Fatalf("status of a pod of node-b written by node-a: %q", got)
		}
	})

	t.Run("telemetry", func(t *testing.T) {
		resp, err := http.Get("http://" + n.agent.Addr("admin") + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{"ambit_cni_pods_enrolled 1", "ambit_cni_enrollment_duration_seconds_count", `ambit_cni_events_total{command="ADD",result="ok"}`, "ambit_cni_zds_connections 1"} {
			if !strings.Contains(string(body), want) {
				t.Errorf("metrics lack %q", want)
			}
		}
	})

	t.Run("label flip enrolls and unenrolls a running pod", func(t *testing.T) {
		applyYAML(t, ctl, "apiVersion: v1\nkind: Namespace\nmetadata: {name: plain, labels: {istio.io/dataplane-mode: ambient}}\n")
		zt.waitFor(t, "add of b", func(ms []zdsMsg) bool { return hasMsg(ms, "add", uidB) })
		waitUntil(t, "rules in b", func() bool { return len(ambitRules(t, b)) > 0 })
		applyYAML(t, ctl, "apiVersion: v1\nkind: Namespace\nmetadata: {name: plain, labels: {}}\n")
		zt.waitFor(t, "del of b", func(ms []zdsMsg) bool { return hasMsg(ms, "del", uidB) })
		if r := ambitRules(t, b); len(r) != 0 {
			t.Fatalf("rules left in b after unenroll: %v", r)
		}
		// The pod-level label works the same way.
		applyYAML(t, ctl, podYAML("plain", "b", nodeName, ", istio.io/dataplane-mode: ambient"))
		waitUntil(t, "rules in b by pod label", func() bool { return len(ambitRules(t, b)) > 0 })
	})

	t.Run("agent restart changes nothing", func(t *testing.T) {
		before := map[string][]string{}
		for _, p := range []*pod{a, opt, b} {
			before[p.Name] = ambitRules(t, p)
		}
		n.stopAgent()
		n.startAgent()
		zt2 := dialZDS(outer, n.zdsSock)
		ms := zt2.waitFor(t, "snapshot after restart", func(ms []zdsMsg) bool {
			return len(ms) > 0 && ms[len(ms)-1].Kind == "snapshot"
		})
		var adds []string
		for _, m := range ms {
			if m.Kind == "add" {
				adds = append(adds, m.UID)
			}
		}
		slices.Sort(adds)
		want := []string{uidA, uidB}
		slices.Sort(want)
		if !slices.Equal(adds, want) {
			t.Fatalf("snapshot after restart holds %v, want %v", adds, want)
		}
		// Not even for a moment: the restarted agent must not unenroll and
		// re-enroll a pod while it learns the cluster again.
		if b, err := os.ReadFile(n.agent.LogPath); err != nil || strings.Contains(string(b), `"msg":"pod unenrolled"`) {
			t.Fatalf("the restarted agent unenrolled a pod (%v)", err)
		}
		for _, p := range []*pod{a, opt, b} {
			if got := ambitRules(t, p); !slices.Equal(got, before[p.Name]) {
				t.Fatalf("%s rules changed across a restart:\nbefore %v\nafter  %v", p.Name, before[p.Name], got)
			}
		}
		zt = zt2
	})

	t.Run("agent down: the pod starts and is enrolled once the agent is back", func(t *testing.T) {
		n.stopAgent()
		uidLate := podUID(t, ctl, "plain", "late")
		applyYAML(t, ctl, podYAML("plain", "late", nodeName, ", istio.io/dataplane-mode: ambient"))
		late, err := n.addPod("plain", "late", uidLate)
		if err != nil {
			t.Fatalf("ADD with the agent down must succeed (fail open): %v", err)
		}
		if out, err := late.ns.NS().CombinedOutput(context.Background(), "ping", "-c1", "-W2", n.node.Gateway().String()); err != nil {
			t.Fatalf("pod without network: %v %s", err, out)
		}
		if ents, _ := os.ReadDir(n.spool); len(ents) == 0 {
			t.Fatal("nothing spooled")
		}
		n.startAgent()
		zt3 := dialZDS(outer, n.zdsSock)
		zt3.waitFor(t, "late pod enrolled", func(ms []zdsMsg) bool { return hasMsg(ms, "add", uidLate) })
		waitUntil(t, "rules in late", func() bool { return len(ambitRules(t, late)) > 0 })
		waitUntil(t, "spool drained", func() bool { ents, _ := os.ReadDir(n.spool); return len(ents) == 0 })
		zt = zt3
	})

	t.Run("DEL removes the pod", func(t *testing.T) {
		if err := n.rt.Del(context.Background(), a.Pod); err != nil {
			t.Fatal(err)
		}
		zt.waitFor(t, "del of a", func(ms []zdsMsg) bool { return hasMsg(ms, "del", uidA) })
		if r := ambitRules(t, a); len(r) != 0 {
			t.Fatalf("rules left after DEL: %v", r)
		}
		// DEL is idempotent.
		if err := n.rt.Del(context.Background(), a.Pod); err != nil {
			t.Fatal(err)
		}
	})
}
