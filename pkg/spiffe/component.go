package spiffe

import "fmt"

// Component names a control-plane service; its identity is
// spiffe://<td>/ambit/<component>.
type Component string

// The control-plane services of DESIGN §1. The node agents (ztunnel, CNI
// agent) are not among them: they use their node's identity.
const (
	ComponentConfig  Component = "config"
	ComponentCA      Component = "ca"
	ComponentXDS     Component = "xds"
	ComponentGateway Component = "gateway" // the gateway controller, not the Envoy proxies it runs
)

// Path segments under /ambit/ that are identity kinds, not components.
const (
	segmentAmbit     = "ambit"
	segmentNode      = "node"
	segmentAdmin     = "admin"
	segmentNamespace = "ns"
	segmentSA        = "sa"
)

// KnownComponents returns the components this version of Ambit defines.
func KnownComponents() []Component {
	return []Component{ComponentConfig, ComponentCA, ComponentXDS, ComponentGateway}
}

// Known reports whether c is one of KnownComponents.
//
// Parse deliberately accepts unknown components that are well formed:
// components are released independently, so an older peer must be able to
// name a newer component's identity. Authorization lists the components it
// allows explicitly (AuthorizeComponents), so an unknown one gains nothing.
func (c Component) Known() bool {
	switch c {
	case ComponentConfig, ComponentCA, ComponentXDS, ComponentGateway:
		return true
	}
	return false
}

// validate checks that c is a DNS-1123 label and not a reserved segment.
func (c Component) validate() error {
	if err := validateLabel("component", string(c)); err != nil {
		return err
	}
	switch string(c) {
	case segmentNode, segmentAdmin:
		return fmt.Errorf("component %q: reserved for %s identities", string(c), string(c))
	}
	return nil
}
