package plugin

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/ambitmesh/ambit/services/cni/internal/cnievent"
)

const prevResult = `{"cniVersion":"1.0.0","interfaces":[{"name":"br0"},{"name":"eth0","sandbox":"/var/run/netns/p"}],
"ips":[{"interface":1,"address":"10.251.0.7/24","gateway":"10.251.0.1"}]}`

func conf(t *testing.T, extra string) []byte {
	t.Helper()
	dir := t.TempDir()
	s := `{"cniVersion":"1.0.0","name":"ambit","type":"ambit-cni","agentSocket":"` + filepath.Join(dir, "agent.sock") +
		`","spoolDir":"` + filepath.Join(dir, "spool") + `"` + extra + `,"prevResult":` + prevResult + `}`
	return []byte(s)
}

func args(stdin []byte, podArgs string) *skel.CmdArgs {
	return &skel.CmdArgs{ContainerID: "sb1", Netns: "/var/run/netns/p", IfName: "eth0", Args: podArgs, StdinData: stdin}
}

const podArgs = "IgnoreUnknown=1;K8S_POD_NAMESPACE=demo;K8S_POD_NAME=web-0;K8S_POD_UID=u-1"

func TestParseConfNamesField(t *testing.T) {
	for in, want := range map[string]string{
		`{"cniVersion":"1.0.0","name":"x","type":"ambit-cni","spoolDir":"/s"}`:                                    "agentSocket: required",
		`{"cniVersion":"1.0.0","name":"x","type":"ambit-cni","agentSocket":"/a"}`:                                 "spoolDir: required",
		`{"cniVersion":"1.0.0","name":"x","type":"ambit-cni","agentSocket":"/a","spoolDir":"/s","timeout":"-1s"}`: "timeout:",
		`{"cniVersion":`: "network configuration",
	} {
		if _, err := ParseConf([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: want %q, got %v", in, want, err)
		}
	}
	if _, err := ParseConf([]byte(`{"cniVersion":"1.0.0","name":"x","type":"ambit-cni","agentSocket":"/a","failClosed":true}`)); err != nil {
		t.Errorf("fail-closed needs no spool: %v", err)
	}
}

// Without an agent, fail-open ADD spools the event (with the pod's
// container-side address) and succeeds; DEL likewise.
func TestAgentDownFailOpenSpools(t *testing.T) {
	stdin := conf(t, "")
	c, _ := ParseConf(stdin)
	p := &Plugin{Now: func() time.Time { return time.Unix(1700000000, 0) }}
	if err := p.Add(args(stdin, podArgs)); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	if err := p.Del(args(stdin, podArgs)); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	ents, err := (cnievent.Spool{Dir: c.SpoolDir}).List()
	if err != nil || len(ents) != 2 {
		t.Fatalf("spool: %v %v", ents, err)
	}
	ev := ents[0].Event
	b, _ := json.Marshal(ev.IPs)
	if ev.Command != cnievent.Add || ev.PodKey() != "demo/web-0" || ev.PodUID != "u-1" || string(b) != `[{"address":"10.251.0.7/24","gateway":"10.251.0.1"}]` {
		t.Fatalf("spooled %+v ips %s", ev, b)
	}
	if ents[1].Event.Command != cnievent.Del {
		t.Fatalf("second: %+v", ents[1].Event)
	}
}

func TestAgentDownFailClosed(t *testing.T) {
	stdin := conf(t, `,"failClosed":true`)
	p := &Plugin{}
	err := p.Add(args(stdin, podArgs))
	if err == nil || !strings.Contains(err.Error(), "fail-closed") {
		t.Fatalf("ADD: %v", err)
	}
	if err := p.Status(args(stdin, "")); err == nil {
		t.Fatal("STATUS without agent in fail-closed mode passed")
	}
	if err := p.Del(args(stdin, podArgs)); err != nil {
		t.Fatalf("DEL must not fail: %v", err)
	}
}

// A sandbox without K8S_POD_* args is not a pod: passed through untouched,
// no agent needed even in fail-closed mode.
func TestNonPodPassesThrough(t *testing.T) {
	stdin := conf(t, `,"failClosed":true`)
	if err := (&Plugin{}).Add(args(stdin, "IgnoreUnknown=1")); err != nil {
		t.Fatal(err)
	}
}

func TestAddNeedsPrevResult(t *testing.T) {
	stdin := []byte(`{"cniVersion":"1.0.0","name":"x","type":"ambit-cni","agentSocket":"/a","spoolDir":"/s"}`)
	if err := (&Plugin{}).Add(args(stdin, podArgs)); err == nil || !strings.Contains(err.Error(), "prevResult") {
		t.Fatalf("ADD without prevResult: %v", err)
	}
}
