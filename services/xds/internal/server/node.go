package server

import (
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc/codes"
)

// Node metadata keys read from the xDS Node. COMPONENT and VERSION are
// Ambit's; NODE_NAME, NAMESPACE and ISTIO_VERSION are what Istio's proxies
// send, so they are understood too.
const (
	metaComponent    = "COMPONENT"
	metaVersion      = "VERSION"
	metaIstioVersion = "ISTIO_VERSION"
	metaNodeName     = "NODE_NAME"
	metaNamespace    = "NAMESPACE"
)

const maxNodeIDBytes = 1024

// proxyInfo is what a stream keeps of the xDS Node: a few strings, not the
// Node message (whose metadata can be kilobytes per proxy).
type proxyInfo struct {
	ID        string
	Component string
	Version   string
	// NodeName is the node the proxy claims to run on; Namespace the
	// namespace it claims to serve. Either may be empty.
	NodeName  string
	Namespace string
}

// parseNode reads the proxy's identity claims. Node ids follow Istio's
// "<type>~<...>" shape: Ambit's are "ztunnel~<node>" and
// "<waypoint|gateway>~<namespace>~<name>"; Istio's ztunnel uses
// "ztunnel~<ip>~<pod>.<ns>~<ns>.svc.cluster.local" and names its node in
// metadata NODE_NAME, which takes precedence.
func parseNode(n *corev3.Node) (proxyInfo, error) {
	id := n.GetId()
	switch {
	case n == nil:
		return proxyInfo{}, coded(codes.InvalidArgument, "the first request of a stream must carry the node")
	case id == "":
		return proxyInfo{}, coded(codes.InvalidArgument, "node id is empty")
	case len(id) > maxNodeIDBytes:
		return proxyInfo{}, coded(codes.InvalidArgument, "node id is longer than %d bytes", maxNodeIDBytes)
	}
	fields := n.GetMetadata().GetFields()
	meta := func(k string) string { return strings.Clone(fields[k].GetStringValue()) }
	p := proxyInfo{ID: strings.Clone(id)}
	tokens := strings.Split(p.ID, "~")

	p.Component = meta(metaComponent)
	if p.Component == "" && len(tokens) > 1 {
		p.Component = tokens[0]
	}
	if p.Component == "" {
		p.Component = strings.Clone(n.GetUserAgentName())
	}
	p.Version = meta(metaVersion)
	if p.Version == "" {
		p.Version = meta(metaIstioVersion)
	}
	if p.Version == "" {
		p.Version = strings.Clone(n.GetUserAgentVersion())
	}
	if p.Version == "" {
		if v := n.GetUserAgentBuildVersion().GetVersion(); v != nil {
			p.Version = fmt.Sprintf("%d.%d.%d", v.GetMajorNumber(), v.GetMinorNumber(), v.GetPatch())
		}
	}
	p.NodeName = meta(metaNodeName)
	if p.NodeName == "" && tokens[0] == "ztunnel" && len(tokens) == 2 {
		p.NodeName = tokens[1]
	}
	p.Namespace = meta(metaNamespace)
	if p.Namespace == "" && len(tokens) == 3 && (tokens[0] == "waypoint" || tokens[0] == "gateway") {
		p.Namespace = tokens[1]
	}
	return p, nil
}
