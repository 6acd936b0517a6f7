package resource

import (
	"fmt"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/api/validate/content"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Patterns of the Gateway API CRD schema.
var (
	gwHostname        = regexp.MustCompile(`^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	gwPreciseHostname = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	gwGroup           = regexp.MustCompile(`^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	gwKind            = regexp.MustCompile(`^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$`)
	gwController      = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$`)
	gwProtocol        = regexp.MustCompile(`^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9]+$`)
	gwAddressType     = regexp.MustCompile(`^Hostname|IPAddress|NamedAddress|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$`)
	gwDuration        = regexp.MustCompile(`^([0-9]{1,5}(h|m|s|ms)){1,4}$`)
	gwLabelValue      = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)
)

// Limits of the Gateway API CRD schema.
const (
	maxListeners       = 64
	maxGatewayAddrs    = 16
	maxCertRefs        = 64
	maxRouteKinds      = 8
	maxTLSOptions      = 16
	maxInfraLabels     = 8
	maxInfraAnnots     = 16
	maxParentRefs      = 32
	maxRouteHostnames  = 16
	maxRouteRules      = 16
	maxRuleMatches     = 64
	maxRouteMatchTotal = 128
	maxRuleFilters     = 16
	maxBackendRefs     = 16
	maxHeaderMatches   = 16
	maxBackendWeight   = 1000000
	maxGrantEntries    = 16
	maxNameLength      = 253
)

func validateGatewayClass(obj *Object) ErrorList {
	s := obj.Spec.(*gatewayv1.GatewayClassSpec)
	p := field.NewPath("spec")
	var errs ErrorList
	cp := p.Child("controllerName")
	switch c := string(s.ControllerName); {
	case c == "":
		errs = append(errs, errRequired(cp, ""))
	case len(c) > maxNameLength:
		errs = append(errs, errTooLong(cp, c, maxNameLength))
	case !gwController.MatchString(c):
		errs = append(errs, errInvalid(cp, c, "invalid controller name", "must be a domain-prefixed path such as example.net/gateway-controller"))
	}
	if s.Description != nil {
		errs = append(errs, validateMaxLength(p.Child("description"), *s.Description, 64)...)
	}
	if r := s.ParametersRef; r != nil {
		rp := p.Child("parametersRef")
		errs = append(errs, validateGroup(rp.Child("group"), string(r.Group))...)
		errs = append(errs, validateKindName(rp.Child("kind"), string(r.Kind))...)
		errs = append(errs, validateObjectRefName(rp.Child("name"), r.Name)...)
		if r.Namespace != nil {
			errs = append(errs, validateDNS1123Label(rp.Child("namespace"), string(*r.Namespace), "invalid namespace")...)
		}
	}
	return errs
}

func validateGateway(obj *Object) ErrorList {
	s := obj.Spec.(*gatewayv1.GatewaySpec)
	p := field.NewPath("spec")
	var errs ErrorList

	if s.GatewayClassName == "" {
		errs = append(errs, errRequired(p.Child("gatewayClassName"), ""))
	} else {
		errs = append(errs, validateMaxLength(p.Child("gatewayClassName"), string(s.GatewayClassName), maxNameLength)...)
	}

	listeners := p.Child("listeners")
	if len(s.Listeners) == 0 {
		errs = append(errs, errRequired(listeners, "a Gateway needs at least one listener"))
	}
	errs = append(errs, validateMaxItems(listeners, len(s.Listeners), maxListeners)...)
	names := map[string]int{}
	combos := map[string]int{}
	for i := range s.Listeners {
		l := &s.Listeners[i]
		lp := listeners.Index(i)
		errs = append(errs, validateListener(lp, l)...)
		if prev, dup := names[string(l.Name)]; dup {
			errs = append(errs, errDuplicate(lp.Child("name"), string(l.Name), fmt.Sprintf("listener names must be unique, already used by listeners[%d]", prev)))
		} else {
			names[string(l.Name)] = i
		}
		hostname := ""
		if l.Hostname != nil {
			hostname = string(*l.Hostname)
		}
		combo := fmt.Sprintf("%d/%s/%s", l.Port, l.Protocol, hostname)
		if prev, dup := combos[combo]; dup {
			errs = append(errs, errDuplicate(lp, strings.TrimSuffix(combo, "/"), fmt.Sprintf("the combination of port, protocol and hostname is already used by listeners[%d]", prev)))
		} else {
			combos[combo] = i
		}
	}

	errs = append(errs, validateGatewayAddresses(p.Child("addresses"), s.Addresses)...)
	errs = append(errs, validateInfrastructure(p.Child("infrastructure"), s.Infrastructure)...)
	if al := s.AllowedListeners; al != nil && al.Namespaces != nil {
		np := p.Child("allowedListeners", "namespaces")
		froms := []gatewayv1.FromNamespaces{gatewayv1.NamespacesFromAll, gatewayv1.NamespacesFromSelector, gatewayv1.NamespacesFromSame, gatewayv1.NamespacesFromNone}
		errs = append(errs, validateFromNamespaces(np, al.Namespaces.From, al.Namespaces.Selector, froms)...)
	}
	errs = append(errs, validateGatewayTLS(p.Child("tls"), s.TLS)...)
	return errs
}

func validateListener(p *field.Path, l *gatewayv1.Listener) ErrorList {
	var errs ErrorList
	errs = append(errs, validateSectionName(p.Child("name"), string(l.Name), true)...)
	errs = append(errs, validatePort(p.Child("port"), int64(l.Port))...)
	proto := string(l.Protocol)
	switch {
	case proto == "":
		errs = append(errs, errRequired(p.Child("protocol"), ""))
	case len(proto) > 255 || !gwProtocol.MatchString(proto):
		errs = append(errs, errInvalid(p.Child("protocol"), proto, "invalid protocol", "must be a name such as HTTP, HTTPS, TLS, TCP, UDP or HBONE, or a domain-prefixed name"))
	}
	if l.Hostname != nil {
		if proto == "TCP" || proto == "UDP" {
			errs = append(errs, errForbidden(p.Child("hostname"), string(*l.Hostname), "protocol "+proto+" does not match on hostnames"))
		} else {
			errs = append(errs, validateGatewayHostname(p.Child("hostname"), string(*l.Hostname), true)...)
		}
	}

	tp := p.Child("tls")
	switch proto {
	case "HTTP", "TCP", "UDP":
		if l.TLS != nil {
			errs = append(errs, errForbidden(tp, nil, "not allowed for protocol "+proto))
		}
	case "HTTPS":
		if l.TLS == nil {
			errs = append(errs, errRequired(tp, "protocol HTTPS needs TLS settings with certificateRefs"))
		} else if l.TLS.Mode != nil && *l.TLS.Mode != gatewayv1.TLSModeTerminate {
			errs = append(errs, errInvalid(tp.Child("mode"), string(*l.TLS.Mode), "invalid TLS mode", "protocol HTTPS terminates TLS, so mode must be Terminate"))
		}
	case "TLS":
		if l.TLS == nil || l.TLS.Mode == nil || *l.TLS.Mode == "" {
			errs = append(errs, errRequired(tp.Child("mode"), "protocol TLS needs tls.mode (Terminate or Passthrough)"))
		}
	}
	if l.TLS != nil {
		errs = append(errs, validateListenerTLS(tp, l.TLS)...)
	}

	if ar := l.AllowedRoutes; ar != nil {
		ap := p.Child("allowedRoutes")
		if ar.Namespaces != nil {
			froms := []gatewayv1.FromNamespaces{gatewayv1.NamespacesFromAll, gatewayv1.NamespacesFromSelector, gatewayv1.NamespacesFromSame}
			errs = append(errs, validateFromNamespaces(ap.Child("namespaces"), ar.Namespaces.From, ar.Namespaces.Selector, froms)...)
		}
		kp := ap.Child("kinds")
		errs = append(errs, validateMaxItems(kp, len(ar.Kinds), maxRouteKinds)...)
		seen := map[string]int{}
		for i, k := range ar.Kinds {
			group := GroupGateway
			if k.Group != nil {
				group = string(*k.Group)
				errs = append(errs, validateGroup(kp.Index(i).Child("group"), group)...)
			}
			errs = append(errs, validateKindName(kp.Index(i).Child("kind"), string(k.Kind))...)
			key := group + "/" + string(k.Kind)
			if prev, dup := seen[key]; dup {
				errs = append(errs, errDuplicate(kp.Index(i), key, fmt.Sprintf("already listed as kinds[%d]", prev)))
			}
			seen[key] = i
		}
	}
	return errs
}

func validateListenerTLS(p *field.Path, t *gatewayv1.ListenerTLSConfig) ErrorList {
	var errs ErrorList
	modes := []gatewayv1.TLSModeType{gatewayv1.TLSModeTerminate, gatewayv1.TLSModePassthrough}
	mode := gatewayv1.TLSModeTerminate
	if t.Mode != nil {
		mode = *t.Mode
		if !containsValue(modes, mode) {
			errs = append(errs, errNotSupported(p.Child("mode"), string(mode), modes))
		}
	}
	if mode == gatewayv1.TLSModeTerminate && len(t.CertificateRefs) == 0 && len(t.Options) == 0 {
		errs = append(errs, errRequired(p.Child("certificateRefs"), "mode Terminate needs certificateRefs (or options)"))
	}
	refs := p.Child("certificateRefs")
	errs = append(errs, validateMaxItems(refs, len(t.CertificateRefs), maxCertRefs)...)
	for i := range t.CertificateRefs {
		errs = append(errs, validateSecretRef(refs.Index(i), &t.CertificateRefs[i])...)
	}
	errs = append(errs, validateMaxItems(p.Child("options"), len(t.Options), maxTLSOptions)...)
	options := map[string]string{}
	for k, v := range t.Options {
		options[string(k)] = string(v)
	}
	for _, k := range sortedKeys(options) {
		errs = append(errs, validatePrefixedKey(p.Child("options"), k, "invalid option key")...)
		errs = append(errs, validateMaxLength(p.Child("options").Key(k), options[k], 4096)...)
	}
	return errs
}

func validateSecretRef(p *field.Path, r *gatewayv1.SecretObjectReference) ErrorList {
	var errs ErrorList
	if r.Group != nil {
		errs = append(errs, validateGroup(p.Child("group"), string(*r.Group))...)
	}
	if r.Kind != nil {
		errs = append(errs, validateKindName(p.Child("kind"), string(*r.Kind))...)
	}
	errs = append(errs, validateObjectRefName(p.Child("name"), string(r.Name))...)
	if r.Namespace != nil {
		errs = append(errs, validateDNS1123Label(p.Child("namespace"), string(*r.Namespace), "invalid namespace")...)
	}
	return errs
}

func validateFromNamespaces(p *field.Path, from *gatewayv1.FromNamespaces, sel *metav1.LabelSelector, allowed []gatewayv1.FromNamespaces) ErrorList {
	var errs ErrorList
	if from != nil {
		if !containsValue(allowed, *from) {
			errs = append(errs, errNotSupported(p.Child("from"), string(*from), allowed))
		}
		if *from == gatewayv1.NamespacesFromSelector && sel == nil {
			errs = append(errs, errRequired(p.Child("selector"), "from: Selector needs a selector"))
		}
	}
	errs = append(errs, validateLabelSelector(p.Child("selector"), sel)...)
	return errs
}

// validateLabelSelector checks a metav1.LabelSelector as Kubernetes does.
func validateLabelSelector(p *field.Path, sel *metav1.LabelSelector) ErrorList {
	if sel == nil {
		return nil
	}
	errs := validateLabels(p.Child("matchLabels"), sel.MatchLabels)
	ops := []metav1.LabelSelectorOperator{metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn, metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist}
	for i, e := range sel.MatchExpressions {
		ep := p.Child("matchExpressions").Index(i)
		if msgs := content.IsLabelKey(e.Key); len(msgs) > 0 {
			errs = append(errs, errInvalid(ep.Child("key"), e.Key, "invalid label key", strings.Join(msgs, "; ")))
		}
		switch e.Operator {
		case metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn:
			if len(e.Values) == 0 {
				errs = append(errs, errRequired(ep.Child("values"), "operators In and NotIn need values"))
			}
		case metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist:
			if len(e.Values) > 0 {
				errs = append(errs, errForbidden(ep.Child("values"), nil, "operators Exists and DoesNotExist take no values"))
			}
		default:
			errs = append(errs, errNotSupported(ep.Child("operator"), string(e.Operator), ops))
		}
		for j, v := range e.Values {
			if !gwLabelValue.MatchString(v) || len(v) > 63 {
				errs = append(errs, errInvalid(ep.Child("values").Index(j), v, "invalid label value", "must be 63 characters or less, alphanumeric, '-', '_' or '.', and start and end with an alphanumeric"))
			}
		}
	}
	return errs
}

func validateGatewayAddresses(p *field.Path, addrs []gatewayv1.GatewaySpecAddress) ErrorList {
	var errs ErrorList
	errs = append(errs, validateMaxItems(p, len(addrs), maxGatewayAddrs)...)
	seen := map[string]int{}
	for i, a := range addrs {
		ap := p.Index(i)
		typ := gatewayv1.IPAddressType
		if a.Type != nil {
			typ = *a.Type
		}
		if len(typ) == 0 || len(typ) > maxNameLength || !gwAddressType.MatchString(string(typ)) {
			errs = append(errs, errInvalid(ap.Child("type"), string(typ), "invalid address type", "must be IPAddress, Hostname, NamedAddress or a domain-prefixed name"))
		}
		errs = append(errs, validateMaxLength(ap.Child("value"), a.Value, maxNameLength)...)
		if a.Value == "" {
			continue
		}
		switch typ {
		case gatewayv1.IPAddressType:
			errs = append(errs, validateIP(ap.Child("value"), a.Value)...)
		case gatewayv1.HostnameAddressType:
			if !gwHostname.MatchString(a.Value) {
				errs = append(errs, errInvalid(ap.Child("value"), a.Value, "invalid hostname", "must be a lowercase DNS name, optionally starting with *."))
			}
		}
		if typ == gatewayv1.IPAddressType || typ == gatewayv1.HostnameAddressType {
			key := string(typ) + "/" + a.Value
			if prev, dup := seen[key]; dup {
				errs = append(errs, errDuplicate(ap.Child("value"), a.Value, fmt.Sprintf("already listed as addresses[%d]", prev)))
			}
			seen[key] = i
		}
	}
	return errs
}

func validateInfrastructure(p *field.Path, infra *gatewayv1.GatewayInfrastructure) ErrorList {
	if infra == nil {
		return nil
	}
	var errs ErrorList
	errs = append(errs, validateMaxItems(p.Child("labels"), len(infra.Labels), maxInfraLabels)...)
	labels := map[string]string{}
	for k, v := range infra.Labels {
		labels[string(k)] = string(v)
	}
	errs = append(errs, validateLabels(p.Child("labels"), labels)...)
	errs = append(errs, validateMaxItems(p.Child("annotations"), len(infra.Annotations), maxInfraAnnots)...)
	annotations := map[string]string{}
	for k, v := range infra.Annotations {
		annotations[string(k)] = string(v)
	}
	for _, k := range sortedKeys(annotations) {
		errs = append(errs, validatePrefixedKey(p.Child("annotations"), k, "invalid annotation key")...)
		errs = append(errs, validateMaxLength(p.Child("annotations").Key(k), annotations[k], 4096)...)
	}
	if r := infra.ParametersRef; r != nil {
		rp := p.Child("parametersRef")
		errs = append(errs, validateGroup(rp.Child("group"), string(r.Group))...)
		errs = append(errs, validateKindName(rp.Child("kind"), string(r.Kind))...)
		errs = append(errs, validateObjectRefName(rp.Child("name"), r.Name)...)
	}
	return errs
}

func validateGatewayTLS(p *field.Path, t *gatewayv1.GatewayTLSConfig) ErrorList {
	if t == nil {
		return nil
	}
	var errs ErrorList
	if t.Backend != nil && t.Backend.ClientCertificateRef != nil {
		errs = append(errs, validateSecretRef(p.Child("backend", "clientCertificateRef"), t.Backend.ClientCertificateRef)...)
	}
	if f := t.Frontend; f != nil {
		fp := p.Child("frontend")
		errs = append(errs, validateFrontendValidation(fp.Child("default", "validation"), f.Default.Validation)...)
		ports := map[int32]int{}
		errs = append(errs, validateMaxItems(fp.Child("perPort"), len(f.PerPort), 64)...)
		for i, pp := range f.PerPort {
			ip := fp.Child("perPort").Index(i)
			errs = append(errs, validatePort(ip.Child("port"), int64(pp.Port))...)
			if prev, dup := ports[pp.Port]; dup {
				errs = append(errs, errDuplicate(ip.Child("port"), pp.Port, fmt.Sprintf("already configured by perPort[%d]", prev)))
			}
			ports[pp.Port] = i
			errs = append(errs, validateFrontendValidation(ip.Child("tls", "validation"), pp.TLS.Validation)...)
		}
	}
	return errs
}

func validateFrontendValidation(p *field.Path, v *gatewayv1.FrontendTLSValidation) ErrorList {
	if v == nil {
		return nil
	}
	var errs ErrorList
	refs := p.Child("caCertificateRefs")
	if len(v.CACertificateRefs) == 0 {
		errs = append(errs, errRequired(refs, ""))
	}
	errs = append(errs, validateMaxItems(refs, len(v.CACertificateRefs), 16)...)
	for i, r := range v.CACertificateRefs {
		rp := refs.Index(i)
		errs = append(errs, validateGroup(rp.Child("group"), string(r.Group))...)
		errs = append(errs, validateKindName(rp.Child("kind"), string(r.Kind))...)
		errs = append(errs, validateObjectRefName(rp.Child("name"), string(r.Name))...)
		if r.Namespace != nil {
			errs = append(errs, validateDNS1123Label(rp.Child("namespace"), string(*r.Namespace), "invalid namespace")...)
		}
	}
	modes := []gatewayv1.FrontendValidationModeType{gatewayv1.AllowValidOnly, gatewayv1.AllowInsecureFallback}
	if v.Mode != "" && !containsValue(modes, v.Mode) {
		errs = append(errs, errNotSupported(p.Child("mode"), string(v.Mode), modes))
	}
	return errs
}

func validateReferenceGrant(obj *Object) ErrorList {
	s := obj.Spec.(*gatewayv1.ReferenceGrantSpec)
	p := field.NewPath("spec")
	var errs ErrorList
	from := p.Child("from")
	if len(s.From) == 0 {
		errs = append(errs, errRequired(from, "a ReferenceGrant needs at least one from entry"))
	}
	errs = append(errs, validateMaxItems(from, len(s.From), maxGrantEntries)...)
	for i, f := range s.From {
		fp := from.Index(i)
		errs = append(errs, validateGroup(fp.Child("group"), string(f.Group))...)
		errs = append(errs, validateKindName(fp.Child("kind"), string(f.Kind))...)
		if f.Namespace == "" {
			errs = append(errs, errRequired(fp.Child("namespace"), ""))
		} else {
			errs = append(errs, validateDNS1123Label(fp.Child("namespace"), string(f.Namespace), "invalid namespace")...)
		}
	}
	to := p.Child("to")
	if len(s.To) == 0 {
		errs = append(errs, errRequired(to, "a ReferenceGrant needs at least one to entry"))
	}
	errs = append(errs, validateMaxItems(to, len(s.To), maxGrantEntries)...)
	for i, t := range s.To {
		tp := to.Index(i)
		errs = append(errs, validateGroup(tp.Child("group"), string(t.Group))...)
		errs = append(errs, validateKindName(tp.Child("kind"), string(t.Kind))...)
		if t.Name != nil {
			errs = append(errs, validateObjectRefName(tp.Child("name"), string(*t.Name))...)
		}
	}
	return errs
}

// Shared reference and name checks of the Gateway API schema.

func validateGroup(p *field.Path, g string) ErrorList {
	if len(g) > maxNameLength {
		return ErrorList{errTooLong(p, g, maxNameLength)}
	}
	if !gwGroup.MatchString(g) {
		return ErrorList{errInvalid(p, g, "invalid group", `must be empty (the core group) or a lowercase DNS subdomain`)}
	}
	return nil
}

func validateKindName(p *field.Path, k string) ErrorList {
	switch {
	case k == "":
		return ErrorList{errRequired(p, "")}
	case len(k) > 63:
		return ErrorList{errTooLong(p, k, 63)}
	case !gwKind.MatchString(k):
		return ErrorList{errInvalid(p, k, "invalid kind", "must start with a letter and contain only letters, digits and '-'")}
	}
	return nil
}

func validateObjectRefName(p *field.Path, n string) ErrorList {
	switch {
	case n == "":
		return ErrorList{errRequired(p, "")}
	case len(n) > maxNameLength:
		return ErrorList{errTooLong(p, n, maxNameLength)}
	}
	return nil
}

// validateSectionName checks a listener, rule or section name (a lowercase
// DNS subdomain).
func validateSectionName(p *field.Path, n string, required bool) ErrorList {
	if n == "" {
		if required {
			return ErrorList{errRequired(p, "")}
		}
		return ErrorList{errInvalid(p, n, "invalid name", "must not be empty")}
	}
	return validateDNS1123Subdomain(p, n, "invalid name")
}

// validateGatewayHostname checks a Gateway API hostname: lowercase DNS
// labels, a wildcard only as a leading "*." label (if allowed), and never
// an IP address.
func validateGatewayHostname(p *field.Path, h string, allowWildcard bool) ErrorList {
	switch {
	case h == "":
		return ErrorList{errInvalid(p, h, "invalid hostname", "must not be empty")}
	case len(h) > maxNameLength:
		return ErrorList{errTooLong(p, h, maxNameLength)}
	case isIP(h):
		return ErrorList{errInvalid(p, h, "invalid hostname", "IP addresses are not allowed")}
	}
	re, form := gwPreciseHostname, "a lowercase DNS name"
	if allowWildcard {
		re, form = gwHostname, "a lowercase DNS name, optionally starting with a *. wildcard label"
	}
	if !re.MatchString(h) {
		return ErrorList{errInvalid(p, h, "invalid hostname", "must be "+form)}
	}
	return nil
}

// validatePrefixedKey checks a key of the form [prefix/]name as Kubernetes
// label keys (used for TLS options and infrastructure annotations).
func validatePrefixedKey(p *field.Path, k, summary string) ErrorList {
	if msgs := content.IsLabelKey(k); len(msgs) > 0 {
		return ErrorList{errInvalid(p, k, summary, strings.Join(msgs, "; "))}
	}
	return nil
}

// validateGatewayDuration checks a Gateway API duration ("1h30m", "500ms").
func validateGatewayDuration(p *field.Path, d string) ErrorList {
	if !gwDuration.MatchString(d) {
		return ErrorList{errInvalid(p, d, "invalid duration", "must be like 10s, 500ms or 1h30m (units h, m, s, ms)")}
	}
	return nil
}
