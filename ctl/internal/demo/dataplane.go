package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ambitmesh/ambit/pkg/cniruntime"
	"github.com/ambitmesh/ambit/pkg/localproc"
	"github.com/ambitmesh/ambit/pkg/netns"
)

// meshTraffic runs xds and a ztunnel per node, brings up a client pod on
// node-a and a server pod on node-b through CNI, and shows their traffic
// crossing nodes over HBONE with each side's workload identity, then an
// AuthorizationPolicy denying the client by identity.
func (e *Env) meshTraffic(ctx context.Context) ([]string, error) {
	if e.Topo == nil || len(e.CA) == 0 || len(e.Config) == 0 {
		return nil, errors.New("needs the topology, the CA and config")
	}
	ev, err := e.startXDS(ctx)
	if err != nil {
		return ev, err
	}
	for _, name := range []string{"node-a", "node-b"} {
		n, err := e.nodeAgent(ctx, name)
		if err != nil {
			return ev, err
		}
		z, err := localproc.Start(ctx, "ztunnel-"+name, filepath.Join(e.BinDir, "ambit-ztunnel"), []string{
			"--node=" + name, "--run-dir=" + n.runDir,
			"--admin-addr=127.0.0.1:0", "--metrics-addr=127.0.0.1:0", "--readiness-addr=127.0.0.1:0",
			"--xds-servers=" + e.xds.Addr("grpc"), "--ca-servers=" + e.CA[0].Addr("grpc"),
			"--ca-bundle-file=" + filepath.Join(e.adminDir(), "bundle.pem"),
		}, e.LogDir, 30*time.Second)
		if err != nil {
			return ev, err
		}
		e.closers = append(e.closers, func() { _ = z.Stop(10 * time.Second) })
		e.ztunnels = append(e.ztunnels, z)
		ev = append(ev, fmt.Sprintf("%s: ambit-ztunnel pid %d (node identity shared with its CNI agent), ambit-cni-agent pid %d", name, z.Pid(), n.agent.Pid()))
	}
	manifest := `apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}}
spec: {nodeName: node-a, serviceAccountName: client, containers: [{name: client, image: client}]}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: shop, labels: {app: server}}
spec: {nodeName: node-b, serviceAccountName: server, containers: [{name: server, image: server}]}
`
	if err := e.applyString(ctx, manifest); err != nil {
		return ev, err
	}
	client, _, err := e.cniPod(ctx, "node-a", "shop", "client")
	if err != nil {
		return ev, err
	}
	server, serverIP, err := e.cniPod(ctx, "node-b", "shop", "server")
	if err != nil {
		return ev, err
	}
	ln, err := server.Listen(ctx, &net.ListenConfig{}, "tcp", "0.0.0.0:8080")
	if err != nil {
		return ev, err
	}
	e.closers = append(e.closers, func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	target := serverIP + ":8080"
	ev = append(ev, "shop/client on node-a and shop/server on node-b came up through CNI and joined the mesh (namespace label ambient)")
	var last error
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if last = echo(ctx, client, target, "hello through the mesh"); last == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if last != nil {
		return ev, fmt.Errorf("client → server: %w", last)
	}
	ev = append(ev, fmt.Sprintf("client → %s: the app's plain TCP went to ztunnel on node-a, over HBONE (mTLS, HTTP/2 CONNECT) to node-b, to the server; echo ok", target))
	// The destination logs a connection when it closes, a moment after
	// the client saw its echo.
	var line string
	deadline = time.Now().Add(5 * time.Second)
	for line, err = accessLine(e.ztunnels[1].LogPath, "inbound"); err != nil && time.Now().Before(deadline); line, err = accessLine(e.ztunnels[1].LogPath, "inbound") {
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return ev, err
	}
	ev = append(ev, "node-b ztunnel access log: "+line)

	if err := e.applyString(ctx, `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-client, namespace: shop}
spec:
  selector: {matchLabels: {app: server}}
  action: DENY
  rules: [{from: [{source: {principals: [cluster.local/ns/shop/sa/client]}}]}]
`); err != nil {
		return ev, err
	}
	deadline = time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if last = echo(ctx, client, target, "denied?"); last != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if last == nil {
		return ev, errors.New("the DENY policy was not enforced")
	}
	ev = append(ev, "AuthorizationPolicy DENY principal cluster.local/ns/shop/sa/client → the same connection is refused by node-b's ztunnel")
	return ev, nil
}

// startXDS gives xds its serving identity from the CA and starts it.
func (e *Env) startXDS(ctx context.Context) ([]string, error) {
	out, err := exec.CommandContext(ctx, filepath.Join(e.BinDir, "ambit-ca"), "issue-admin", "--component=xds", "--out="+e.adminDir(),
		"--kek-file="+e.kekFile(), "--etcd-endpoints="+strings.Join(e.Stack.EtcdEndpoints(), ",")).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("issue xds identity: %w: %s", err, out)
	}
	x, err := localproc.Start(ctx, "xds", filepath.Join(e.BinDir, "ambit-xds"), []string{
		"--listen-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", "--replica-id=xds-0",
		"--cert-file=" + filepath.Join(e.adminDir(), "xds.crt"), "--key-file=" + filepath.Join(e.adminDir(), "xds.key"),
		"--bundle-file=" + filepath.Join(e.adminDir(), "bundle.pem"),
		"--etcd-endpoints=" + strings.Join(e.Stack.EtcdEndpoints(), ","), "--nats-url=" + e.Stack.NATSURL(),
	}, e.LogDir, 30*time.Second)
	if err != nil {
		return nil, err
	}
	e.xds = x
	e.closers = append(e.closers, func() { _ = x.Stop(10 * time.Second) })
	return []string{fmt.Sprintf("ambit-xds pid %d on %s, serving identity spiffe://cluster.local/ambit/xds from the CA", x.Pid(), x.Addr("grpc"))}, nil
}

// cniPod creates a pod's sandbox on node through CNI.
func (e *Env) cniPod(ctx context.Context, node, namespace, name string) (*netns.Handle, string, error) {
	n := e.nodes[node]
	p, err := e.Topo.AddEmptyPod(ctx, node, namespace+"-"+name)
	if err != nil {
		return nil, "", err
	}
	sb := cniruntime.Pod{Namespace: namespace, Name: name, ContainerID: "demo-" + namespace + "-" + name, Netns: p.NetnsPath()}
	res, err := n.rt.Add(ctx, sb)
	if err != nil {
		return nil, "", err
	}
	e.closers = append(e.closers, func() { _ = n.rt.Del(context.Background(), sb) })
	ip, _ := cniruntime.PodIP(res)
	return p.NS(), ip.String(), nil
}

func echo(ctx context.Context, from *netns.Handle, addr, msg string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := from.Dial(ctx, &net.Dialer{}, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	return nil
}

// accessLine renders the first access-log line of a direction.
func accessLine(path, direction string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "connection complete" && m["direction"] == direction && m["security"] == "mutual_tls" {
			return fmt.Sprintf("src %v (%v) → dst %v (%v), %v, result %v", m["src.workload"], m["src.identity"], m["dst.workload"], m["dst.identity"], m["security"], m["result"]), nil
		}
	}
	return "", errors.New("no access-log line yet")
}
