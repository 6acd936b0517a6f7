package resource

import (
	"fmt"
	"path"
	"slices"
	"strings"

	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Limits from the Istio CRD schema.
const (
	maxServiceEntryItems    = 256
	maxServiceEntryAddrLen  = 64
	maxWorkloadEntryPorts   = 128
	maxWorkloadEntryLabels  = 256
	maxWorkloadAddressLen   = 256
	maxWorkloadFreeFormLen  = 2048
	maxDestinationRuleItems = 4096
	maglevTableSizeLimit    = 5000011
	unixAddressPrefix       = "unix://"
)

// istioProtocols are the port protocols Istio recognizes (case-insensitive);
// an empty protocol means "detect".
func istioProtocols() []string {
	return []string{"HTTP", "HTTPS", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB", "TCP", "TLS", "UDP", "MONGO", "MYSQL", "REDIS"}
}

func validateIstioProtocol(p *field.Path, proto string) ErrorList {
	if proto == "" || slices.Contains(istioProtocols(), strings.ToUpper(proto)) {
		return nil
	}
	return ErrorList{errNotSupported(p, proto, istioProtocols())}
}

// validateIstioPortName checks a port name as Istio does: a DNS label of
// either case.
func validateIstioPortName(p *field.Path, name string) ErrorList {
	if name == "" {
		return ErrorList{errRequired(p, "")}
	}
	if len(name) > 63 || !istioHostLabel.MatchString(name) {
		return ErrorList{errInvalid(p, name, "invalid port name", "must be a DNS label (letters, digits and '-')")}
	}
	return nil
}

func validateServiceEntry(obj *Object) ErrorList {
	se := obj.Spec.(*networkingv1alpha3.ServiceEntry)
	p := field.NewPath("spec")
	errs := validateIstioMetadata(obj)
	resolution := se.GetResolution()

	hosts := p.Child("hosts")
	if len(se.GetHosts()) == 0 {
		errs = append(errs, errRequired(hosts, "a ServiceEntry needs at least one host"))
	}
	errs = append(errs, validateMaxItems(hosts, len(se.GetHosts()), maxServiceEntryItems)...)
	for i, h := range se.GetHosts() {
		hp := hosts.Index(i)
		switch {
		case h == "*":
			errs = append(errs, errInvalid(hp, h, "invalid host", "the full wildcard is not allowed in a ServiceEntry"))
		case isIP(h):
			errs = append(errs, errInvalid(hp, h, "invalid host", "hosts are DNS names; put IP addresses in spec.addresses"))
		default:
			errs = append(errs, validateIstioHost(hp, h)...)
		}
	}

	addrs := p.Child("addresses")
	errs = append(errs, validateMaxItems(addrs, len(se.GetAddresses()), maxServiceEntryItems)...)
	for i, a := range se.GetAddresses() {
		ap := addrs.Index(i)
		if len(a) > maxServiceEntryAddrLen {
			errs = append(errs, errTooLong(ap, a, maxServiceEntryAddrLen))
			continue
		}
		errs = append(errs, validateIPOrCIDR(ap, a)...)
		if strings.Contains(a, "/") && resolution != networkingv1alpha3.ServiceEntry_NONE && resolution != networkingv1alpha3.ServiceEntry_STATIC {
			errs = append(errs, errForbidden(ap, a, fmt.Sprintf("CIDR addresses need resolution NONE or STATIC, not %s", resolution)))
		}
	}

	ports := p.Child("ports")
	portNames := map[string]bool{}
	portNumbers := map[uint32]bool{}
	errs = append(errs, validateMaxItems(ports, len(se.GetPorts()), maxServiceEntryItems)...)
	for i, port := range se.GetPorts() {
		pp := ports.Index(i)
		errs = append(errs, validateIstioPortName(pp.Child("name"), port.GetName())...)
		if port.GetName() != "" && portNames[port.GetName()] {
			errs = append(errs, errDuplicate(pp.Child("name"), port.GetName(), "port names must be unique"))
		}
		portNames[port.GetName()] = true
		errs = append(errs, validatePort(pp.Child("number"), int64(port.GetNumber()))...)
		if portNumbers[port.GetNumber()] {
			errs = append(errs, errDuplicate(pp.Child("number"), port.GetNumber(), "port numbers must be unique"))
		}
		portNumbers[port.GetNumber()] = true
		if port.GetTargetPort() != 0 {
			errs = append(errs, validatePort(pp.Child("targetPort"), int64(port.GetTargetPort()))...)
		}
		errs = append(errs, validateIstioProtocol(pp.Child("protocol"), port.GetProtocol())...)
	}

	endpoints := p.Child("endpoints")
	if se.GetWorkloadSelector() != nil {
		if len(se.GetEndpoints()) > 0 {
			errs = append(errs, errForbidden(p.Child("workloadSelector"), nil, "only one of workloadSelector or endpoints may be set"))
		}
		errs = append(errs, validateWorkloadSelector(p.Child("workloadSelector", "labels"), se.GetWorkloadSelector().GetLabels())...)
	}
	errs = append(errs, validateMaxItems(endpoints, len(se.GetEndpoints()), 4096)...)

	switch resolution {
	case networkingv1alpha3.ServiceEntry_NONE:
		if len(se.GetEndpoints()) > 0 {
			errs = append(errs, errForbidden(endpoints, nil, "resolution NONE cannot have endpoints"))
		}
	case networkingv1alpha3.ServiceEntry_STATIC:
		if len(se.GetEndpoints()) == 0 && se.GetWorkloadSelector() == nil {
			errs = append(errs, errRequired(endpoints, "resolution STATIC needs endpoints or a workloadSelector"))
		}
		for i, ep := range se.GetEndpoints() {
			errs = append(errs, validateWorkloadEndpoint(endpoints.Index(i), ep, portNames, false)...)
			if strings.HasPrefix(ep.GetAddress(), unixAddressPrefix) && len(se.GetPorts()) != 1 {
				errs = append(errs, errInvalid(endpoints.Index(i).Child("address"), ep.GetAddress(), "invalid endpoint", "a unix domain socket endpoint needs exactly one service port"))
			}
		}
	case networkingv1alpha3.ServiceEntry_DNS, networkingv1alpha3.ServiceEntry_DNS_ROUND_ROBIN, networkingv1alpha3.ServiceEntry_DYNAMIC_DNS:
		if len(se.GetEndpoints()) == 0 && resolution != networkingv1alpha3.ServiceEntry_DYNAMIC_DNS {
			for i, h := range se.GetHosts() {
				if strings.Contains(h, "*") {
					errs = append(errs, errInvalid(hosts.Index(i), h, "invalid host",
						fmt.Sprintf("resolution %s without endpoints resolves the hosts themselves, so they cannot be wildcards", resolution)))
				}
			}
		}
		if resolution == networkingv1alpha3.ServiceEntry_DNS_ROUND_ROBIN && len(se.GetEndpoints()) > 1 {
			errs = append(errs, errTooMany(endpoints, len(se.GetEndpoints()), 1))
		}
		for i, ep := range se.GetEndpoints() {
			errs = append(errs, validateWorkloadEndpoint(endpoints.Index(i), ep, portNames, true)...)
		}
	}

	// Plain TCP carries no host name, so several hosts on one TCP port
	// cannot be told apart unless resolution is NONE (hosts ignored).
	if resolution != networkingv1alpha3.ServiceEntry_NONE && len(se.GetHosts()) > 1 {
		for i, port := range se.GetPorts() {
			if !isHTTPOrTLSProtocol(port.GetProtocol()) {
				errs = append(errs, errInvalid(ports.Index(i).Child("protocol"), port.GetProtocol(), "invalid protocol",
					"several hosts need an HTTP or TLS protocol on every port (plain TCP cannot tell the hosts apart)"))
				break
			}
		}
	}

	errs = append(errs, validateExportTo(p.Child("exportTo"), obj.Metadata.Namespace, se.GetExportTo(), true)...)
	errs = append(errs, validateNonEmptyStrings(p.Child("subjectAltNames"), se.GetSubjectAltNames())...)
	return errs
}

func isHTTPOrTLSProtocol(proto string) bool {
	switch strings.ToUpper(proto) {
	case "HTTP", "HTTPS", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB", "TLS":
		return true
	}
	return false
}

func validateWorkloadEntry(obj *Object) ErrorList {
	we := obj.Spec.(*networkingv1alpha3.WorkloadEntry)
	p := field.NewPath("spec")
	errs := validateIstioMetadata(obj)
	errs = append(errs, validateWorkloadEndpoint(p, we, nil, true)...)
	if sa := we.GetServiceAccount(); sa != "" {
		errs = append(errs, validateDNS1123Subdomain(p.Child("serviceAccount"), sa, "invalid service account")...)
	}
	return errs
}

// validateWorkloadEndpoint checks a WorkloadEntry, standalone or as a
// ServiceEntry endpoint. servicePorts, when non-nil, are the port names the
// endpoint's ports must refer to; allowHostname permits a DNS name address
// (DNS resolution) besides IPs and unix sockets.
func validateWorkloadEndpoint(p *field.Path, we *networkingv1alpha3.WorkloadEntry, servicePorts map[string]bool, allowHostname bool) ErrorList {
	var errs ErrorList
	addr := we.GetAddress()
	ap := p.Child("address")
	switch {
	case addr == "":
		if we.GetNetwork() == "" {
			errs = append(errs, errRequired(ap, "an address is required unless network is set"))
		}
	case len(addr) > maxWorkloadAddressLen:
		errs = append(errs, errTooLong(ap, addr, maxWorkloadAddressLen))
	case strings.HasPrefix(addr, unixAddressPrefix):
		sock := strings.TrimPrefix(addr, unixAddressPrefix)
		if !strings.HasPrefix(sock, "@") && (!path.IsAbs(sock) || strings.HasSuffix(sock, "/")) {
			errs = append(errs, errInvalid(ap, addr, "invalid unix socket address", "must be an absolute file path or an abstract socket (@name)"))
		}
		if len(we.GetPorts()) > 0 {
			errs = append(errs, errForbidden(p.Child("ports"), nil, "a unix domain socket endpoint cannot have ports"))
		}
	case isIP(addr):
	case !allowHostname:
		errs = append(errs, errInvalid(ap, addr, "invalid IP address", "resolution STATIC needs IP addresses (or unix:// sockets)"))
	default:
		if ferrs := validateFQDN(ap, addr); len(ferrs) > 0 {
			errs = append(errs, errInvalid(ap, addr, "invalid address", "must be an IP address or a DNS name"))
		}
	}

	ports := p.Child("ports")
	errs = append(errs, validateMaxItems(ports, len(we.GetPorts()), maxWorkloadEntryPorts)...)
	for _, name := range sortedKeys(we.GetPorts()) {
		if servicePorts != nil && !servicePorts[name] {
			errs = append(errs, errInvalid(ports.Key(name), name, "undeclared port name", "must be the name of one of spec.ports"))
		}
		if len(name) > 62 || !istioHostLabel.MatchString(name) {
			errs = append(errs, errInvalid(ports, name, "invalid port name", "must be a DNS label (letters, digits and '-')"))
		}
		errs = append(errs, validatePort(ports.Key(name), int64(we.GetPorts()[name]))...)
	}
	errs = append(errs, validateMaxItems(p.Child("labels"), len(we.GetLabels()), maxWorkloadEntryLabels)...)
	errs = append(errs, validateLabels(p.Child("labels"), we.GetLabels())...)
	errs = append(errs, validateMaxLength(p.Child("network"), we.GetNetwork(), maxWorkloadFreeFormLen)...)
	errs = append(errs, validateMaxLength(p.Child("locality"), we.GetLocality(), maxWorkloadFreeFormLen)...)
	errs = append(errs, validateMaxLength(p.Child("serviceAccount"), we.GetServiceAccount(), 253)...)
	return errs
}

// validateExportTo checks Istio's visibility list: "." (this namespace),
// "*" (everyone), "~" (no one, ServiceEntry only) or namespace names, without
// duplicates and without mixing "*" or "~" with anything else.
func validateExportTo(p *field.Path, namespace string, exportTo []string, allowNone bool) ErrorList {
	var errs ErrorList
	seen := map[string]int{}
	for i, e := range exportTo {
		ep := p.Index(i)
		key := e
		switch {
		case e == ".":
			key = namespace
		case e == "*":
		case e == "~":
			if !allowNone {
				errs = append(errs, errInvalid(ep, e, "invalid exportTo", `"~" is only allowed on a ServiceEntry`))
				continue
			}
		default:
			if ve := validateDNS1123Label(ep, e, "invalid exportTo namespace"); len(ve) > 0 {
				errs = append(errs, ve...)
				continue
			}
		}
		if prev, dup := seen[key]; dup {
			errs = append(errs, errDuplicate(ep, e, fmt.Sprintf("same namespace as exportTo[%d]", prev)))
			continue
		}
		seen[key] = i
	}
	if len(exportTo) > 1 {
		for i, e := range exportTo {
			if e == "*" || e == "~" {
				errs = append(errs, errInvalid(p.Index(i), e, "invalid exportTo", fmt.Sprintf("%q cannot be combined with other entries", e)))
			}
		}
	}
	return errs
}

func validateDestinationRule(obj *Object) ErrorList {
	dr := obj.Spec.(*networkingv1alpha3.DestinationRule)
	p := field.NewPath("spec")
	errs := validateIstioMetadata(obj)
	errs = append(errs, validateIstioHost(p.Child("host"), dr.GetHost())...)
	errs = append(errs, validateTrafficPolicy(p.Child("trafficPolicy"), dr.GetTrafficPolicy())...)

	subsets := p.Child("subsets")
	errs = append(errs, validateMaxItems(subsets, len(dr.GetSubsets()), maxDestinationRuleItems)...)
	names := map[string]int{}
	for i, s := range dr.GetSubsets() {
		sp := subsets.Index(i)
		switch {
		case s.GetName() == "":
			errs = append(errs, errRequired(sp.Child("name"), ""))
		case len(s.GetName()) > 63 || !istioHostLabel.MatchString(s.GetName()):
			errs = append(errs, errInvalid(sp.Child("name"), s.GetName(), "invalid subset name", "must be a DNS label"))
		}
		if prev, dup := names[s.GetName()]; dup && s.GetName() != "" {
			errs = append(errs, errDuplicate(sp.Child("name"), s.GetName(), fmt.Sprintf("already used by subsets[%d]", prev)))
		} else {
			names[s.GetName()] = i
		}
		errs = append(errs, validateLabels(sp.Child("labels"), s.GetLabels())...)
		errs = append(errs, validateTrafficPolicy(sp.Child("trafficPolicy"), s.GetTrafficPolicy())...)
	}

	errs = append(errs, validateExportTo(p.Child("exportTo"), obj.Metadata.Namespace, dr.GetExportTo(), false)...)
	if sel := dr.GetWorkloadSelector(); sel != nil {
		errs = append(errs, validateWorkloadSelector(p.Child("workloadSelector", "matchLabels"), sel.GetMatchLabels())...)
		for i, e := range dr.GetExportTo() {
			if e != "." && e != obj.Metadata.Namespace {
				errs = append(errs, errInvalid(p.Child("exportTo").Index(i), e, "invalid exportTo", "a DestinationRule with a workloadSelector can only be exported to its own namespace"))
			}
		}
	}
	return errs
}

func validateTrafficPolicy(p *field.Path, tp *networkingv1alpha3.TrafficPolicy) ErrorList {
	if tp == nil {
		return nil
	}
	if tp.GetOutlierDetection() == nil && tp.GetConnectionPool() == nil && tp.GetLoadBalancer() == nil &&
		tp.GetTls() == nil && len(tp.GetPortLevelSettings()) == 0 && tp.GetTunnel() == nil &&
		tp.GetProxyProtocol() == nil && tp.GetRetryBudget() == nil {
		return ErrorList{errRequired(p, "a traffic policy must set at least one field")}
	}
	var errs ErrorList
	if tp.GetTunnel() != nil && tp.GetProxyProtocol() != nil {
		errs = append(errs, errForbidden(p.Child("proxyProtocol"), nil, "tunnel and proxyProtocol cannot be set together"))
	}
	errs = append(errs, validateOutlierDetection(p.Child("outlierDetection"), tp.GetOutlierDetection())...)
	errs = append(errs, validateConnectionPool(p.Child("connectionPool"), tp.GetConnectionPool())...)
	errs = append(errs, validateLoadBalancer(p.Child("loadBalancer"), tp.GetLoadBalancer())...)
	errs = append(errs, validateClientTLS(p.Child("tls"), tp.GetTls())...)
	errs = append(errs, validateTunnel(p.Child("tunnel"), tp.GetTunnel())...)
	if rb := tp.GetRetryBudget(); rb != nil {
		if pct := rb.GetPercent(); pct != nil && (pct.GetValue() < 0 || pct.GetValue() > 100) {
			errs = append(errs, errInvalid(p.Child("retryBudget", "percent"), pct.GetValue(), "invalid percentage", "must be between 0 and 100"))
		}
		errs = append(errs, validateIstioDuration(p.Child("retryBudget", "budgetInterval"), rb.GetBudgetInterval())...)
	}
	for i, pl := range tp.GetPortLevelSettings() {
		pp := p.Child("portLevelSettings").Index(i)
		if pl.GetPort() == nil {
			errs = append(errs, errRequired(pp.Child("port"), ""))
		} else {
			errs = append(errs, validatePort(pp.Child("port", "number"), int64(pl.GetPort().GetNumber()))...)
		}
		if pl.GetOutlierDetection() == nil && pl.GetConnectionPool() == nil && pl.GetLoadBalancer() == nil && pl.GetTls() == nil {
			errs = append(errs, errRequired(pp, "a port traffic policy must set at least one of outlierDetection, connectionPool, loadBalancer or tls"))
			continue
		}
		errs = append(errs, validateOutlierDetection(pp.Child("outlierDetection"), pl.GetOutlierDetection())...)
		errs = append(errs, validateConnectionPool(pp.Child("connectionPool"), pl.GetConnectionPool())...)
		errs = append(errs, validateLoadBalancer(pp.Child("loadBalancer"), pl.GetLoadBalancer())...)
		errs = append(errs, validateClientTLS(pp.Child("tls"), pl.GetTls())...)
	}
	return errs
}

func validatePercent(p *field.Path, v int32) ErrorList {
	if v < 0 || v > 100 {
		return ErrorList{errInvalid(p, v, "invalid percentage", "must be between 0 and 100")}
	}
	return nil
}

func validateNonNegative(p *field.Path, v int32) ErrorList {
	if v < 0 {
		return ErrorList{errInvalid(p, v, "invalid value", "must not be negative")}
	}
	return nil
}

func validateOutlierDetection(p *field.Path, od *networkingv1alpha3.OutlierDetection) ErrorList {
	if od == nil {
		return nil
	}
	var errs ErrorList
	errs = append(errs, validateIstioDuration(p.Child("baseEjectionTime"), od.GetBaseEjectionTime())...)
	errs = append(errs, validateIstioDuration(p.Child("interval"), od.GetInterval())...)
	if !od.GetSplitExternalLocalOriginErrors() && od.GetConsecutiveLocalOriginFailures().GetValue() > 0 {
		errs = append(errs, errForbidden(p.Child("consecutiveLocalOriginFailures"), nil, "needs splitExternalLocalOriginErrors: true"))
	}
	errs = append(errs, validatePercent(p.Child("maxEjectionPercent"), od.GetMaxEjectionPercent())...)
	errs = append(errs, validatePercent(p.Child("minHealthPercent"), od.GetMinHealthPercent())...)
	for i, code := range od.GetOutlierDetectionHttpErrorCodes() {
		if code < 100 || code > 599 {
			errs = append(errs, errInvalid(p.Child("outlierDetectionHttpErrorCodes").Index(i), code, "invalid HTTP status code", "must be between 100 and 599"))
		}
	}
	return errs
}

func validateConnectionPool(p *field.Path, cp *networkingv1alpha3.ConnectionPoolSettings) ErrorList {
	if cp == nil {
		return nil
	}
	if cp.GetHttp() == nil && cp.GetTcp() == nil {
		return ErrorList{errRequired(p, "a connection pool must set tcp or http")}
	}
	var errs ErrorList
	if h := cp.GetHttp(); h != nil {
		hp := p.Child("http")
		errs = append(errs, validateNonNegative(hp.Child("http1MaxPendingRequests"), h.GetHttp1MaxPendingRequests())...)
		errs = append(errs, validateNonNegative(hp.Child("http2MaxRequests"), h.GetHttp2MaxRequests())...)
		errs = append(errs, validateNonNegative(hp.Child("maxRequestsPerConnection"), h.GetMaxRequestsPerConnection())...)
		errs = append(errs, validateNonNegative(hp.Child("maxRetries"), h.GetMaxRetries())...)
		errs = append(errs, validateNonNegative(hp.Child("maxConcurrentStreams"), h.GetMaxConcurrentStreams())...)
		errs = append(errs, validateIstioDuration(hp.Child("idleTimeout"), h.GetIdleTimeout())...)
		if h.GetH2UpgradePolicy() == networkingv1alpha3.ConnectionPoolSettings_HTTPSettings_UPGRADE && h.GetUseClientProtocol() {
			errs = append(errs, errForbidden(hp.Child("useClientProtocol"), nil, "cannot be true when h2UpgradePolicy is UPGRADE"))
		}
		if ka := h.GetHttp2KeepAlive(); ka != nil {
			errs = append(errs, validateIstioDuration(hp.Child("http2KeepAlive", "interval"), ka.GetInterval())...)
			errs = append(errs, validateIstioDuration(hp.Child("http2KeepAlive", "timeout"), ka.GetTimeout())...)
		}
	}
	if t := cp.GetTcp(); t != nil {
		tp := p.Child("tcp")
		errs = append(errs, validateNonNegative(tp.Child("maxConnections"), t.GetMaxConnections())...)
		errs = append(errs, validateIstioDuration(tp.Child("connectTimeout"), t.GetConnectTimeout())...)
		errs = append(errs, validateIstioDuration(tp.Child("maxConnectionDuration"), t.GetMaxConnectionDuration())...)
		errs = append(errs, validateIstioDuration(tp.Child("idleTimeout"), t.GetIdleTimeout())...)
		if ka := t.GetTcpKeepalive(); ka != nil {
			errs = append(errs, validateIstioDuration(tp.Child("tcpKeepalive", "time"), ka.GetTime())...)
			errs = append(errs, validateIstioDuration(tp.Child("tcpKeepalive", "interval"), ka.GetInterval())...)
		}
	}
	return errs
}

func validateLoadBalancer(p *field.Path, lb *networkingv1alpha3.LoadBalancerSettings) ErrorList {
	if lb == nil {
		return nil
	}
	var errs ErrorList
	if ch := lb.GetConsistentHash(); ch != nil {
		cp := p.Child("consistentHash")
		if cookie := ch.GetHttpCookie(); cookie != nil && cookie.GetName() == "" {
			errs = append(errs, errRequired(cp.Child("httpCookie", "name"), ""))
		}
		//lint:ignore SA1019 the deprecated field is still accepted, so it is still validated
		if ch.GetMinimumRingSize() != 0 && ch.GetHashAlgorithm() != nil {
			errs = append(errs, errForbidden(cp.Child("minimumRingSize"), nil, "cannot be combined with ringHash or maglev"))
		}
		if ml := ch.GetMaglev(); ml != nil {
			size := ml.GetTableSize()
			switch {
			case size == 0:
				errs = append(errs, errRequired(cp.Child("maglev", "tableSize"), ""))
			case size >= maglevTableSizeLimit || !isPrime(size):
				errs = append(errs, errInvalid(cp.Child("maglev", "tableSize"), size, "invalid maglev table size", "must be a prime number below 5000011"))
			}
		}
	}
	if lb.GetWarmupDurationSecs() != nil && lb.GetWarmup() != nil {
		errs = append(errs, errForbidden(p.Child("warmup"), nil, "only one of warmupDurationSecs or warmup may be set"))
	}
	errs = append(errs, validateIstioDuration(p.Child("warmupDurationSecs"), lb.GetWarmupDurationSecs())...)
	if w := lb.GetWarmup(); w != nil {
		if w.GetDuration() == nil {
			errs = append(errs, errRequired(p.Child("warmup", "duration"), ""))
		}
		errs = append(errs, validateIstioDuration(p.Child("warmup", "duration"), w.GetDuration())...)
		if mp := w.GetMinimumPercent(); mp != nil && (mp.GetValue() < 0 || mp.GetValue() > 100) {
			errs = append(errs, errInvalid(p.Child("warmup", "minimumPercent"), mp.GetValue(), "invalid percentage", "must be between 0 and 100"))
		}
	}
	errs = append(errs, validateLocalityLB(p.Child("localityLbSetting"), lb.GetLocalityLbSetting())...)
	return errs
}

func isPrime(n uint64) bool {
	if n < 2 {
		return false
	}
	if n%2 == 0 {
		return n == 2
	}
	for f := uint64(3); f*f <= n; f += 2 {
		if n%f == 0 {
			return false
		}
	}
	return true
}

// validateLocalityLB applies Istio's locality load-balancing rules:
// distribute and failover are exclusive, each distribute's weights add up
// to 100, and failover moves between different regions.
func validateLocalityLB(p *field.Path, l *networkingv1alpha3.LocalityLoadBalancerSetting) ErrorList {
	if l == nil {
		return nil
	}
	var errs ErrorList
	if len(l.GetDistribute()) > 0 && len(l.GetFailover()) > 0 {
		errs = append(errs, errForbidden(p.Child("failover"), nil, "distribute and failover cannot be set together"))
	}
	froms := map[string]int{}
	for i, d := range l.GetDistribute() {
		dp := p.Child("distribute").Index(i)
		if d.GetFrom() == "" {
			errs = append(errs, errRequired(dp.Child("from"), ""))
		} else if prev, dup := froms[d.GetFrom()]; dup {
			errs = append(errs, errDuplicate(dp.Child("from"), d.GetFrom(), fmt.Sprintf("already used by distribute[%d]", prev)))
		} else {
			froms[d.GetFrom()] = i
		}
		var total uint64
		for _, k := range sortedKeys(d.GetTo()) {
			total += uint64(d.GetTo()[k])
		}
		if total != 100 {
			errs = append(errs, errInvalid(dp.Child("to"), total, "invalid total weight", "the weights must add up to 100"))
		}
	}
	for i, f := range l.GetFailover() {
		fp := p.Child("failover").Index(i)
		if f.GetFrom() == f.GetTo() {
			errs = append(errs, errInvalid(fp.Child("to"), f.GetTo(), "invalid failover", "from and to must be different regions"))
		}
		for _, side := range []struct{ name, v string }{{"from", f.GetFrom()}, {"to", f.GetTo()}} {
			if strings.Contains(side.v, "/") || side.v == "*" {
				errs = append(errs, errInvalid(fp.Child(side.name), side.v, "invalid failover region", "failover names a region only"))
			}
		}
	}
	return errs
}

// validateClientTLS applies Istio's client TLS rules.
func validateClientTLS(p *field.Path, t *networkingv1alpha3.ClientTLSSettings) ErrorList {
	if t == nil {
		return nil
	}
	var errs ErrorList
	mode := t.GetMode()
	simpleOrMutual := mode == networkingv1alpha3.ClientTLSSettings_SIMPLE || mode == networkingv1alpha3.ClientTLSSettings_MUTUAL
	if t.GetInsecureSkipVerify().GetValue() && simpleOrMutual {
		if t.GetCaCertificates() != "" || len(t.GetSubjectAltNames()) > 0 ||
			(mode == networkingv1alpha3.ClientTLSSettings_SIMPLE && t.GetCredentialName() != "") {
			errs = append(errs, errForbidden(p.Child("insecureSkipVerify"), nil, "cannot be set together with caCertificates, subjectAltNames or (for SIMPLE) credentialName"))
		}
	}
	if simpleOrMutual && t.GetCredentialName() != "" {
		if t.GetClientCertificate() != "" || t.GetPrivateKey() != "" || t.GetCaCertificates() != "" || t.GetCaCrl() != "" {
			errs = append(errs, errForbidden(p.Child("credentialName"), nil, "cannot be combined with clientCertificate, privateKey, caCertificates or caCrl"))
		}
		return errs
	}
	if mode == networkingv1alpha3.ClientTLSSettings_MUTUAL {
		if t.GetClientCertificate() == "" {
			errs = append(errs, errRequired(p.Child("clientCertificate"), "mode MUTUAL needs a client certificate (or credentialName)"))
		}
		if t.GetPrivateKey() == "" {
			errs = append(errs, errRequired(p.Child("privateKey"), "mode MUTUAL needs a private key (or credentialName)"))
		}
	}
	errs = append(errs, validateNonEmptyStrings(p.Child("subjectAltNames"), t.GetSubjectAltNames())...)
	return errs
}

func validateTunnel(p *field.Path, t *networkingv1alpha3.TrafficPolicy_TunnelSettings) ErrorList {
	if t == nil {
		return nil
	}
	var errs ErrorList
	if proto := t.GetProtocol(); proto != "" && proto != "CONNECT" && proto != "POST" {
		errs = append(errs, errNotSupported(p.Child("protocol"), proto, []string{"CONNECT", "POST"}))
	}
	switch host := t.GetTargetHost(); {
	case host == "":
		errs = append(errs, errRequired(p.Child("targetHost"), ""))
	case isIP(host):
	default:
		if len(validateFQDN(p.Child("targetHost"), host)) > 0 {
			errs = append(errs, errInvalid(p.Child("targetHost"), host, "invalid target host", "must be an IP address or a DNS name"))
		}
	}
	errs = append(errs, validatePort(p.Child("targetPort"), int64(t.GetTargetPort()))...)
	return errs
}
