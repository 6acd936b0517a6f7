package netns

import (
	"errors"
	"fmt"
	"os"
	"regexp"

	"golang.org/x/sys/unix"
)

// RunDir is where named network namespaces are bind-mounted (iproute2's
// convention).
const RunDir = "/run/netns"

// nameRE limits namespace names to characters that are safe in paths and
// shell commands.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

func validateName(name string) error {
	if len(name) > 200 || !nameRE.MatchString(name) {
		return fmt.Errorf("netns name %q: must match %s and be at most 200 bytes", name, nameRE)
	}
	return nil
}

// prepareRunDir makes RunDir a shared mount point, as "ip netns add" does.
// Both tools must agree on this: if RunDir were a plain directory when we
// mounted a namespace and iproute2 later bind-mounted RunDir onto itself, our
// unmount would only remove the copy on top and leak the original mount (and
// with it the namespace). The flock serialises this with other callers of
// this package, in and across processes.
func prepareRunDir() error {
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", RunDir, err)
	}
	dir, err := os.Open(RunDir)
	if err != nil {
		return fmt.Errorf("open %s: %w", RunDir, err)
	}
	defer dir.Close()
	if err := unix.Flock(int(dir.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", RunDir, err)
	}
	defer unix.Flock(int(dir.Fd()), unix.LOCK_UN) //nolint:errcheck // closing the fd unlocks too

	err = unix.Mount("", RunDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("make %s shared: %w", RunDir, err)
	}
	// EINVAL: not a mount point yet.
	if err := unix.Mount(RunDir, RunDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mount %s onto itself: %w", RunDir, err)
	}
	if err := unix.Mount("", RunDir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", RunDir, err)
	}
	return nil
}
