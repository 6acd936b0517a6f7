package resource

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"net/netip"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/validate/content"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// maxSecretBytes is Kubernetes' limit on the summed size of a Secret's data.
const maxSecretBytes = 1 << 20

// SecretContent is the body of a core Secret. Kubernetes keeps it at the top
// level of the object beside metadata (there is no spec), so the Secret kind
// stores this struct where other kinds store their spec.
type SecretContent struct {
	Type       corev1.SecretType `json:"type,omitempty"`
	Data       map[string][]byte `json:"data,omitempty"`
	StringData map[string]string `json:"stringData,omitempty"`
	Immutable  *bool             `json:"immutable,omitempty"`
}

// DeepCopy returns a copy sharing no memory with s.
func (s *SecretContent) DeepCopy() *SecretContent {
	if s == nil {
		return nil
	}
	c := &SecretContent{Type: s.Type, StringData: maps.Clone(s.StringData)}
	if s.Data != nil {
		c.Data = make(map[string][]byte, len(s.Data))
		for k, v := range s.Data {
			c.Data[k] = append([]byte(nil), v...)
		}
	}
	if s.Immutable != nil {
		v := *s.Immutable
		c.Immutable = &v
	}
	return c
}

// defaultSecret does what the API server does on write: the type defaults to
// Opaque and stringData (write-only) is merged into data, winning on
// conflicts.
func defaultSecret(o *Object) {
	s := o.Spec.(*SecretContent)
	if s.Type == "" {
		s.Type = corev1.SecretTypeOpaque
	}
	if len(s.StringData) > 0 {
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		for k, v := range s.StringData {
			s.Data[k] = []byte(v)
		}
	}
	s.StringData = nil
}

// defaultService fills the defaults the API server applies to a Service
// spec that the mesh reads: type, session affinity, port protocol and
// targetPort (= port). Cluster IPs are allocated by the store, not here.
func defaultService(o *Object) {
	s := o.Spec.(*corev1.ServiceSpec)
	if s.Type == "" {
		s.Type = corev1.ServiceTypeClusterIP
	}
	if s.SessionAffinity == "" {
		s.SessionAffinity = corev1.ServiceAffinityNone
	}
	for i := range s.Ports {
		port := &s.Ports[i]
		if port.Protocol == "" {
			port.Protocol = corev1.ProtocolTCP
		}
		if port.TargetPort.Type == intstr.Int && port.TargetPort.IntVal == 0 {
			port.TargetPort = intstr.FromInt32(port.Port)
		}
	}
}

// defaultPod fills the service account the ServiceAccount admission plugin
// would ("default"): the mesh identity of the pod depends on it. Container
// defaults are not applied because the mesh runs no containers.
func defaultPod(o *Object) {
	s := o.Spec.(*corev1.PodSpec)
	if s.ServiceAccountName == "" {
		s.ServiceAccountName = "default"
	}
	for _, list := range [][]corev1.Container{s.InitContainers, s.Containers} {
		for i := range list {
			for j := range list[i].Ports {
				if list[i].Ports[j].Protocol == "" {
					list[i].Ports[j].Protocol = corev1.ProtocolTCP
				}
			}
		}
	}
}

func validateNamespace(obj *Object) ErrorList {
	s := obj.Spec.(*corev1.NamespaceSpec)
	var errs ErrorList
	for i, f := range s.Finalizers {
		if msgs := content.IsLabelKey(string(f)); len(msgs) > 0 {
			errs = append(errs, errInvalid(field.NewPath("spec", "finalizers").Index(i), string(f), "invalid finalizer", strings.Join(msgs, "; ")))
		}
	}
	return errs
}

func validateService(obj *Object) ErrorList {
	s := obj.Spec.(*corev1.ServiceSpec)
	p := field.NewPath("spec")
	var errs ErrorList

	types := []corev1.ServiceType{corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeExternalName}
	if !containsValue(types, s.Type) {
		errs = append(errs, errNotSupported(p.Child("type"), string(s.Type), types))
	}
	headless := s.ClusterIP == corev1.ClusterIPNone
	if s.Type == corev1.ServiceTypeExternalName {
		name := strings.TrimSuffix(s.ExternalName, ".")
		if s.ExternalName == "" {
			errs = append(errs, errRequired(p.Child("externalName"), "type ExternalName needs an externalName"))
		} else if msgs := content.IsDNS1123Subdomain(strings.ToLower(name)); len(msgs) > 0 {
			errs = append(errs, errInvalid(p.Child("externalName"), s.ExternalName, "invalid externalName", strings.Join(msgs, "; ")))
		}
		if s.ClusterIP != "" {
			errs = append(errs, errForbidden(p.Child("clusterIP"), s.ClusterIP, "type ExternalName has no cluster IP"))
		}
	} else if len(s.Ports) == 0 && !headless {
		errs = append(errs, errRequired(p.Child("ports"), "a Service needs ports unless it is headless (clusterIP: None) or ExternalName"))
	}

	errs = append(errs, validateServicePorts(p.Child("ports"), s)...)
	errs = append(errs, validateClusterIPs(p, s)...)

	for _, k := range sortedKeys(s.Selector) {
		if msgs := content.IsLabelKey(k); len(msgs) > 0 {
			errs = append(errs, errInvalid(p.Child("selector"), k, "invalid label key", strings.Join(msgs, "; ")))
		}
		if msgs := content.IsLabelValue(s.Selector[k]); len(msgs) > 0 {
			errs = append(errs, errInvalid(p.Child("selector").Key(k), s.Selector[k], "invalid label value", strings.Join(msgs, "; ")))
		}
	}

	affinities := []corev1.ServiceAffinity{corev1.ServiceAffinityNone, corev1.ServiceAffinityClientIP}
	if s.SessionAffinity != "" && !containsValue(affinities, s.SessionAffinity) {
		errs = append(errs, errNotSupported(p.Child("sessionAffinity"), string(s.SessionAffinity), affinities))
	}
	external := []corev1.ServiceExternalTrafficPolicy{corev1.ServiceExternalTrafficPolicyCluster, corev1.ServiceExternalTrafficPolicyLocal}
	if s.ExternalTrafficPolicy != "" && !containsValue(external, s.ExternalTrafficPolicy) {
		errs = append(errs, errNotSupported(p.Child("externalTrafficPolicy"), string(s.ExternalTrafficPolicy), external))
	}
	internal := []corev1.ServiceInternalTrafficPolicy{corev1.ServiceInternalTrafficPolicyCluster, corev1.ServiceInternalTrafficPolicyLocal}
	if s.InternalTrafficPolicy != nil && !containsValue(internal, *s.InternalTrafficPolicy) {
		errs = append(errs, errNotSupported(p.Child("internalTrafficPolicy"), string(*s.InternalTrafficPolicy), internal))
	}
	for i, ip := range s.ExternalIPs {
		errs = append(errs, validateIP(p.Child("externalIPs").Index(i), ip)...)
	}
	for i, r := range s.LoadBalancerSourceRanges {
		if _, err := netip.ParsePrefix(strings.TrimSpace(r)); err != nil {
			errs = append(errs, errInvalid(p.Child("loadBalancerSourceRanges").Index(i), r, "invalid CIDR", trimNetipError(err)))
		}
	}
	return errs
}

func validateServicePorts(p *field.Path, s *corev1.ServiceSpec) ErrorList {
	var errs ErrorList
	names := map[string]int{}
	portProtocols := map[string]int{}
	protocols := []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}
	nodePorts := s.Type == corev1.ServiceTypeNodePort || s.Type == corev1.ServiceTypeLoadBalancer
	for i, port := range s.Ports {
		pp := p.Index(i)
		switch {
		case port.Name == "" && len(s.Ports) > 1:
			errs = append(errs, errRequired(pp.Child("name"), "every port needs a name when a Service has more than one"))
		case port.Name != "":
			errs = append(errs, validateDNS1123Label(pp.Child("name"), port.Name, "invalid port name")...)
			if prev, dup := names[port.Name]; dup {
				errs = append(errs, errDuplicate(pp.Child("name"), port.Name, fmt.Sprintf("already used by ports[%d]", prev)))
			} else {
				names[port.Name] = i
			}
		}
		errs = append(errs, validatePort(pp.Child("port"), int64(port.Port))...)
		if !containsValue(protocols, port.Protocol) {
			errs = append(errs, errNotSupported(pp.Child("protocol"), string(port.Protocol), protocols))
		}
		pk := strconv.Itoa(int(port.Port)) + "/" + string(port.Protocol)
		if prev, dup := portProtocols[pk]; dup {
			errs = append(errs, errDuplicate(pp, pk, fmt.Sprintf("port and protocol already used by ports[%d]", prev)))
		} else {
			portProtocols[pk] = i
		}
		errs = append(errs, validateTargetPort(pp.Child("targetPort"), port.TargetPort)...)
		if port.NodePort != 0 {
			if !nodePorts {
				errs = append(errs, errForbidden(pp.Child("nodePort"), port.NodePort, fmt.Sprintf("only allowed for type NodePort or LoadBalancer, not %s", s.Type)))
			} else {
				errs = append(errs, validatePort(pp.Child("nodePort"), int64(port.NodePort))...)
			}
		}
		if port.AppProtocol != nil {
			if msgs := content.IsLabelKey(*port.AppProtocol); len(msgs) > 0 {
				errs = append(errs, errInvalid(pp.Child("appProtocol"), *port.AppProtocol, "invalid appProtocol", strings.Join(msgs, "; ")))
			}
		}
	}
	return errs
}

// validateTargetPort accepts a port number or an IANA service name (the
// name of a container port).
func validateTargetPort(p *field.Path, tp intstr.IntOrString) ErrorList {
	if tp.Type == intstr.String {
		if msgs := validation.IsValidPortName(tp.StrVal); len(msgs) > 0 {
			return ErrorList{errInvalid(p, tp.StrVal, "invalid port name", strings.Join(msgs, "; "))}
		}
		return nil
	}
	return validatePort(p, int64(tp.IntVal))
}

func validateClusterIPs(p *field.Path, s *corev1.ServiceSpec) ErrorList {
	var errs ErrorList
	if s.ClusterIP != "" && s.ClusterIP != corev1.ClusterIPNone {
		errs = append(errs, validateIP(p.Child("clusterIP"), s.ClusterIP)...)
	}
	ips := p.Child("clusterIPs")
	errs = append(errs, validateMaxItems(ips, len(s.ClusterIPs), 2)...)
	if len(s.ClusterIPs) > 0 && s.ClusterIP != "" && s.ClusterIPs[0] != s.ClusterIP {
		errs = append(errs, errInvalid(ips.Index(0), s.ClusterIPs[0], "invalid cluster IP", fmt.Sprintf("must equal spec.clusterIP %q", s.ClusterIP)))
	}
	var families []bool // true for IPv6
	for i, ip := range s.ClusterIPs {
		if ip == corev1.ClusterIPNone {
			if len(s.ClusterIPs) > 1 {
				errs = append(errs, errInvalid(ips.Index(i), ip, "invalid cluster IP", `"None" must be the only entry`))
			}
			continue
		}
		addr, err := netip.ParseAddr(ip)
		if err != nil {
			errs = append(errs, errInvalid(ips.Index(i), ip, "invalid IP address", ""))
			continue
		}
		families = append(families, addr.Is6() && !addr.Is4In6())
	}
	if len(families) == 2 && families[0] == families[1] {
		errs = append(errs, errInvalid(ips.Index(1), s.ClusterIPs[1], "invalid cluster IP", "a dual-stack Service needs one IPv4 and one IPv6 address"))
	}
	ipFamilies := []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	errs = append(errs, validateMaxItems(p.Child("ipFamilies"), len(s.IPFamilies), 2)...)
	seen := map[corev1.IPFamily]bool{}
	for i, f := range s.IPFamilies {
		if !containsValue(ipFamilies, f) {
			errs = append(errs, errNotSupported(p.Child("ipFamilies").Index(i), string(f), ipFamilies))
		} else if seen[f] {
			errs = append(errs, errDuplicate(p.Child("ipFamilies").Index(i), string(f), ""))
		}
		seen[f] = true
	}
	if s.IPFamilyPolicy != nil {
		policies := []corev1.IPFamilyPolicy{corev1.IPFamilyPolicySingleStack, corev1.IPFamilyPolicyPreferDualStack, corev1.IPFamilyPolicyRequireDualStack}
		if !containsValue(policies, *s.IPFamilyPolicy) {
			errs = append(errs, errNotSupported(p.Child("ipFamilyPolicy"), string(*s.IPFamilyPolicy), policies))
		}
	}
	return errs
}

// validatePod checks what the mesh reads of a Pod: node, service account,
// labels (in metadata), optional container ports, and the status IPs and
// phase. Containers are optional because Ambit runs no containers: a Pod here
// is a network identity placed on a node.
func validatePod(obj *Object) ErrorList {
	s := obj.Spec.(*corev1.PodSpec)
	p := field.NewPath("spec")
	var errs ErrorList
	if s.NodeName != "" {
		errs = append(errs, validateDNS1123Subdomain(p.Child("nodeName"), s.NodeName, "invalid node name")...)
	}
	if s.ServiceAccountName != "" {
		errs = append(errs, validateDNS1123Subdomain(p.Child("serviceAccountName"), s.ServiceAccountName, "invalid service account name")...)
	}
	if s.DeprecatedServiceAccount != "" && s.ServiceAccountName != "" && s.DeprecatedServiceAccount != s.ServiceAccountName {
		errs = append(errs, errInvalid(p.Child("serviceAccount"), s.DeprecatedServiceAccount, "invalid service account", fmt.Sprintf("must match serviceAccountName %q", s.ServiceAccountName)))
	}
	names := map[string]string{}
	for _, group := range []struct {
		name       string
		containers []corev1.Container
	}{{"initContainers", s.InitContainers}, {"containers", s.Containers}} {
		for i, c := range group.containers {
			cp := p.Child(group.name).Index(i)
			if c.Name == "" {
				errs = append(errs, errRequired(cp.Child("name"), ""))
			} else {
				errs = append(errs, validateDNS1123Label(cp.Child("name"), c.Name, "invalid container name")...)
				if prev, dup := names[c.Name]; dup {
					errs = append(errs, errDuplicate(cp.Child("name"), c.Name, "already used by "+prev))
				}
				names[c.Name] = fmt.Sprintf("%s[%d]", group.name, i)
			}
			errs = append(errs, validateContainerPorts(cp.Child("ports"), c.Ports)...)
		}
	}
	errs = append(errs, validatePodStatus(obj.Status)...)
	return errs
}

func validateContainerPorts(p *field.Path, ports []corev1.ContainerPort) ErrorList {
	var errs ErrorList
	names := map[string]bool{}
	protocols := []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}
	for i, port := range ports {
		pp := p.Index(i)
		errs = append(errs, validatePort(pp.Child("containerPort"), int64(port.ContainerPort))...)
		if port.HostPort != 0 {
			errs = append(errs, validatePort(pp.Child("hostPort"), int64(port.HostPort))...)
		}
		if port.Protocol != "" && !containsValue(protocols, port.Protocol) {
			errs = append(errs, errNotSupported(pp.Child("protocol"), string(port.Protocol), protocols))
		}
		if port.Name != "" {
			if msgs := validation.IsValidPortName(port.Name); len(msgs) > 0 {
				errs = append(errs, errInvalid(pp.Child("name"), port.Name, "invalid port name", strings.Join(msgs, "; ")))
			} else if names[port.Name] {
				errs = append(errs, errDuplicate(pp.Child("name"), port.Name, ""))
			}
			names[port.Name] = true
		}
	}
	return errs
}

// validatePodStatus checks the parts of a Pod status the mesh uses: the
// phase and the pod IPs (at most one per family, podIP = podIPs[0]).
func validatePodStatus(raw json.RawMessage) ErrorList {
	if len(raw) == 0 {
		return nil
	}
	p := field.NewPath("status")
	var st corev1.PodStatus
	if err := json.Unmarshal(raw, &st); err != nil {
		return ErrorList{errInvalid(p, rawText("value"), "invalid status", err.Error())}
	}
	var errs ErrorList
	phases := []corev1.PodPhase{corev1.PodPending, corev1.PodRunning, corev1.PodSucceeded, corev1.PodFailed, corev1.PodUnknown}
	if st.Phase != "" && !containsValue(phases, st.Phase) {
		errs = append(errs, errNotSupported(p.Child("phase"), string(st.Phase), phases))
	}
	if st.PodIP != "" {
		errs = append(errs, validateIP(p.Child("podIP"), st.PodIP)...)
	}
	if st.HostIP != "" {
		errs = append(errs, validateIP(p.Child("hostIP"), st.HostIP)...)
	}
	for i, h := range st.HostIPs {
		errs = append(errs, validateIP(p.Child("hostIPs").Index(i).Child("ip"), h.IP)...)
	}
	ips := p.Child("podIPs")
	errs = append(errs, validateMaxItems(ips, len(st.PodIPs), 2)...)
	var families []bool
	for i, pip := range st.PodIPs {
		ip := ips.Index(i).Child("ip")
		addr, err := netip.ParseAddr(pip.IP)
		if err != nil || strings.Contains(pip.IP, "%") {
			errs = append(errs, errInvalid(ip, pip.IP, "invalid IP address", ""))
			continue
		}
		families = append(families, addr.Is6() && !addr.Is4In6())
	}
	if len(families) == 2 && families[0] == families[1] {
		errs = append(errs, errInvalid(ips.Index(1).Child("ip"), st.PodIPs[1].IP, "invalid pod IP", "a dual-stack pod has one IPv4 and one IPv6 address"))
	}
	if st.PodIP != "" && len(st.PodIPs) > 0 && st.PodIPs[0].IP != st.PodIP {
		errs = append(errs, errInvalid(ips.Index(0).Child("ip"), st.PodIPs[0].IP, "invalid pod IP", fmt.Sprintf("must equal status.podIP %q", st.PodIP)))
	}
	return errs
}

func validateSecret(obj *Object) ErrorList {
	s := obj.Spec.(*SecretContent)
	var errs ErrorList
	data := field.NewPath("data")
	total := 0
	for _, k := range sortedKeys(s.Data) {
		if msgs := validation.IsConfigMapKey(k); len(msgs) > 0 {
			errs = append(errs, errInvalid(data, k, "invalid data key", strings.Join(msgs, "; ")))
		}
		total += len(s.Data[k])
	}
	for _, k := range sortedKeys(s.StringData) {
		if msgs := validation.IsConfigMapKey(k); len(msgs) > 0 {
			errs = append(errs, errInvalid(field.NewPath("stringData"), k, "invalid data key", strings.Join(msgs, "; ")))
		}
		total += len(s.StringData[k])
	}
	if total > maxSecretBytes {
		errs = append(errs, &FieldError{
			Type: ErrorTypeTooLong, Field: "data", Value: strconv.Itoa(total) + " bytes",
			Summary: "secret data too large", Detail: fmt.Sprintf("must be at most %d bytes", maxSecretBytes),
		})
	}
	if s.Type == corev1.SecretTypeTLS {
		errs = append(errs, validateTLSSecretData(data, secretValues(s))...)
	}
	return errs
}

// secretValues merges data and stringData as the API server would.
func secretValues(s *SecretContent) map[string][]byte {
	out := make(map[string][]byte, len(s.Data)+len(s.StringData))
	maps.Copy(out, s.Data)
	for k, v := range s.StringData {
		out[k] = []byte(v)
	}
	return out
}

// validateTLSSecretData checks a kubernetes.io/tls Secret: tls.crt holds PEM
// certificates, tls.key a PEM private key matching the first certificate,
// and an optional ca.crt more certificates (a gateway uses it to verify
// clients).
func validateTLSSecretData(p *field.Path, values map[string][]byte) ErrorList {
	var errs ErrorList
	crt, hasCrt := values[corev1.TLSCertKey]
	key, hasKey := values[corev1.TLSPrivateKeyKey]
	if !hasCrt {
		errs = append(errs, errRequired(p.Key(corev1.TLSCertKey), "a kubernetes.io/tls Secret needs a certificate"))
	}
	if !hasKey {
		errs = append(errs, errRequired(p.Key(corev1.TLSPrivateKeyKey), "a kubernetes.io/tls Secret needs a private key"))
	}
	crtOK := hasCrt && len(validatePEMCertificates(p.Key(corev1.TLSCertKey), crt)) == 0
	if hasCrt && !crtOK {
		errs = append(errs, validatePEMCertificates(p.Key(corev1.TLSCertKey), crt)...)
	}
	keyOK := false
	if hasKey {
		if err := parsePEMPrivateKey(key); err != nil {
			errs = append(errs, errInvalid(p.Key(corev1.TLSPrivateKeyKey), sizeOf(key), "invalid private key", err.Error()))
		} else {
			keyOK = true
		}
	}
	if crtOK && keyOK {
		if _, err := tls.X509KeyPair(crt, key); err != nil {
			errs = append(errs, errInvalid(p.Key(corev1.TLSPrivateKeyKey), sizeOf(key), "invalid key pair", err.Error()))
		}
	}
	if ca, ok := values["ca.crt"]; ok {
		errs = append(errs, validatePEMCertificates(p.Key("ca.crt"), ca)...)
	}
	return errs
}

func sizeOf(b []byte) rawText { return rawText(fmt.Sprintf("(%d bytes)", len(b))) }

func validatePEMCertificates(p *field.Path, data []byte) ErrorList {
	rest := data
	n := 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return ErrorList{errInvalid(p, sizeOf(data), "invalid certificate", fmt.Sprintf("PEM block %d is %q, want CERTIFICATE", n, block.Type))}
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return ErrorList{errInvalid(p, sizeOf(data), "invalid certificate", fmt.Sprintf("PEM block %d: %v", n, err))}
		}
		n++
	}
	if n == 0 {
		return ErrorList{errInvalid(p, sizeOf(data), "invalid certificate", "no PEM CERTIFICATE block found")}
	}
	return nil
}

func parsePEMPrivateKey(data []byte) error {
	block, _ := pem.Decode(data)
	if block == nil {
		return fmt.Errorf("no PEM block found")
	}
	if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		return nil
	}
	if _, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return nil
	}
	if _, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return nil
	}
	return fmt.Errorf("PEM block %q is not a PKCS#8, PKCS#1 or EC private key", block.Type)
}

func containsValue[T comparable](list []T, v T) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
