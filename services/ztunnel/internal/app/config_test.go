package app

import (
	"strings"
	"testing"
)

func TestValidateNamesFlags(t *testing.T) {
	c := DefaultConfig()
	err := c.Validate()
	for _, want := range []string{"node", "xds-servers", "ca-servers"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("empty config: want %q in %v", want, err)
		}
	}
	c = DefaultConfig()
	c.Node, c.XDSServers, c.CAServers = "node-a", []string{"127.0.0.1:15010"}, []string{"127.0.0.1:15012"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.HBONEPort, c.XDSServers, c.DrainTimeout = c.OutboundPort, []string{"nohostport"}, c.ShutdownTimeout
	err = c.Validate()
	for _, want := range []string{"hbone-port", "xds-servers", "shutdown-timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in %v", want, err)
		}
	}
}

// The ZDS socket and the node credential default to the paths the node's
// CNI agent uses, so the two share them without flags.
func TestPathsMatchTheCNIAgent(t *testing.T) {
	c := DefaultConfig()
	c.Node = "node-a"
	c.resolve()
	if c.ZDSSocket != "/run/ambit/node-a/ztunnel/zds.sock" || c.CredentialDir != "/run/ambit/node-a/credential" {
		t.Fatalf("paths %s %s", c.ZDSSocket, c.CredentialDir)
	}
}
