package netns

import (
	"fmt"
	"os"
	"path"
	"strings"
)

// SetSysctl writes a network sysctl inside the namespace. key is either
// dotted ("net.ipv4.ip_forward") or slashed ("net/ipv4/conf/eth0.10/rp_filter",
// needed when an interface name contains a dot). Only net.* keys are
// accepted: they are the ones scoped to a network namespace, so a write can
// never change the host.
func (h *Handle) SetSysctl(key, value string) error {
	p, err := sysctlPath(key)
	if err != nil {
		return fmt.Errorf("netns %q: %w", h.label, err)
	}
	err = h.Do(func() error {
		// /proc/sys/net resolves against the opening thread's namespace.
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, werr := f.WriteString(value)
		return firstErr(werr, f.Close())
	})
	if err != nil {
		return fmt.Errorf("netns %q: set sysctl %s=%s: %w", h.label, key, value, err)
	}
	return nil
}

// Sysctl reads a network sysctl inside the namespace (key as for SetSysctl),
// without the trailing newline.
func (h *Handle) Sysctl(key string) (string, error) {
	p, err := sysctlPath(key)
	if err != nil {
		return "", fmt.Errorf("netns %q: %w", h.label, err)
	}
	var value []byte
	err = h.Do(func() error {
		var err error
		value, err = os.ReadFile(p)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("netns %q: read sysctl %s: %w", h.label, key, err)
	}
	return strings.TrimRight(string(value), "\n"), nil
}

func sysctlPath(key string) (string, error) {
	rel := key
	if !strings.Contains(key, "/") {
		rel = strings.ReplaceAll(key, ".", "/")
	}
	clean := path.Clean("/" + rel)
	if clean != "/"+rel || !strings.HasPrefix(clean, "/net/") {
		return "", fmt.Errorf("sysctl %q: only net.* keys are namespaced", key)
	}
	return "/proc/sys" + clean, nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
