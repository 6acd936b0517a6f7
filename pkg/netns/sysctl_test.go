package netns

import (
	"os"
	"strings"
	"testing"
)

func TestSysctlInsideNetns(t *testing.T) {
	requireRoot(t)
	h := createNetns(t, "sysctl")
	hostBefore, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	want := "1"
	if strings.TrimSpace(string(hostBefore)) == "1" {
		want = "0"
	}
	for _, key := range []string{"net.ipv4.ip_forward", "net/ipv4/ip_forward"} {
		if err := h.SetSysctl(key, want); err != nil {
			t.Fatal(err)
		}
		got, err := h.Sysctl(key)
		if err != nil || got != want {
			t.Errorf("Sysctl(%s) = %q, %v; want %q", key, got, err, want)
		}
	}
	if err := h.SetSysctl("net.ipv4.tcp_migrate_req", "1"); err != nil {
		t.Error(err)
	}
	hostAfter, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	if string(hostAfter) != string(hostBefore) {
		t.Errorf("host ip_forward changed from %q to %q", hostBefore, hostAfter)
	}
}

func TestSysctlPath(t *testing.T) {
	for _, tc := range []struct {
		key, want string
	}{
		{"net.ipv4.ip_forward", "/proc/sys/net/ipv4/ip_forward"},
		{"net/ipv4/conf/eth0.10/rp_filter", "/proc/sys/net/ipv4/conf/eth0.10/rp_filter"},
		{"kernel.hostname", ""},
		{"net/../kernel/hostname", ""},
		{"net", ""},
		{"/net/ipv4/ip_forward", ""},
	} {
		got, err := sysctlPath(tc.key)
		if tc.want == "" {
			if err == nil {
				t.Errorf("sysctlPath(%q) = %q, want error", tc.key, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("sysctlPath(%q) = %q, %v; want %q", tc.key, got, err, tc.want)
		}
	}
}
