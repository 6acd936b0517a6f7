package app

import (
	"strings"
	"testing"
)

func TestValidateNamesFlags(t *testing.T) {
	c := DefaultConfig()
	err := c.Validate()
	for _, want := range []string{"node", "config-servers", "ca-servers"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("empty config: want %q in %v", want, err)
		}
	}
	c = DefaultConfig()
	c.Node, c.ConfigServers, c.CAServers = "node-a", []string{"10.0.0.1:15012"}, []string{"127.0.0.1:15013"}
	c.ConfigInsecureLocal, c.Mode, c.JoinToken, c.JoinTokenFile = true, "ebpf", "t", "/f"
	err = c.Validate()
	for _, want := range []string{"config-insecure-loopback talks to loopback", "mode", "join-token-file"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in %v", want, err)
		}
	}
	c.ConfigServers, c.Mode, c.JoinTokenFile = []string{"127.0.0.1:15012"}, "iptables", ""
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.Node = "Bad_Node"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "node") {
		t.Errorf("bad node name: %v", err)
	}
}

// Every default path is per node, so nodes sharing a host never collide.
func TestPathsArePerNode(t *testing.T) {
	a, b := DefaultConfig(), DefaultConfig()
	a.Node, b.Node = "node-a", "node-b"
	a.resolve()
	b.resolve()
	for _, p := range [][2]string{{a.EventSocket, b.EventSocket}, {a.SpoolDir, b.SpoolDir}, {a.StateDir, b.StateDir}, {a.ZDSSocket, b.ZDSSocket}, {a.CredentialDir, b.CredentialDir}} {
		if p[0] == p[1] || !strings.Contains(p[0], "node-a") {
			t.Errorf("path not per node: %v", p)
		}
	}
}
