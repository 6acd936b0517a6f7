package index

// Changes collects the output names a change may have affected. A nil
// *Changes records nothing (full rebuilds do not need it).
type Changes struct {
	// Addresses are istio.workload.Address names: workload uids and
	// "<namespace>/<hostname>" service names.
	Addresses map[string]struct{}
	// Authorizations are istio.security.Authorization names.
	Authorizations map[string]struct{}
}

// NewChanges returns an empty set.
func NewChanges() *Changes {
	return &Changes{Addresses: map[string]struct{}{}, Authorizations: map[string]struct{}{}}
}

// Reset empties c for reuse. Sets grown by a mesh-wide change are
// dropped rather than cleared, so their memory is not held for good.
func (c *Changes) Reset() {
	const keep = 4096
	if len(c.Addresses) > keep {
		c.Addresses = map[string]struct{}{}
	} else {
		clear(c.Addresses)
	}
	if len(c.Authorizations) > keep {
		c.Authorizations = map[string]struct{}{}
	} else {
		clear(c.Authorizations)
	}
}

func (c *Changes) address(name string) {
	if c != nil {
		c.Addresses[name] = struct{}{}
	}
}

func (c *Changes) authorization(name string) {
	if c != nil {
		c.Authorizations[name] = struct{}{}
	}
}
