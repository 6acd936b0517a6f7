package resource

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	typev1beta1 "istio.io/api/type/v1beta1"
	"k8s.io/apimachinery/pkg/api/validate/content"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Compiled patterns are immutable and safe for concurrent use, so they are
// the only package-level values.
var (
	// istioHostLabel is one DNS label as Istio accepts it (either case).
	istioHostLabel = regexp.MustCompile(`^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$`)
	// istioWildcardLabel is a first label that may be "*" or start with "*".
	istioWildcardLabel = regexp.MustCompile(`^(?:\*|(?:\*|\*-)?[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?)$`)
	// headerNameToken is an HTTP header name (RFC 7230 token), as the Gateway
	// API schema writes it.
	headerNameToken = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+\\-.^_`|~]+$")
	// istioHeaderName is the narrower header-name pattern Istio enforces.
	istioHeaderName = regexp.MustCompile(`^[-_A-Za-z0-9]+$`)
)

// validateIPOrCIDR accepts a single IP or a CIDR prefix, as Istio's
// ipBlocks and addresses do.
func validateIPOrCIDR(p *field.Path, v string) ErrorList {
	if strings.Contains(v, "/") {
		if _, err := netip.ParsePrefix(v); err != nil {
			return ErrorList{errInvalid(p, v, "invalid CIDR", trimNetipError(err))}
		}
		return nil
	}
	if _, err := netip.ParseAddr(v); err != nil {
		return ErrorList{errInvalid(p, v, "invalid IP address", "")}
	}
	return nil
}

func validateIP(p *field.Path, v string) ErrorList {
	if _, err := netip.ParseAddr(v); err != nil || strings.Contains(v, "%") {
		return ErrorList{errInvalid(p, v, "invalid IP address", "")}
	}
	return nil
}

// trimNetipError drops the input echo from netip's messages (the value is
// already quoted in ours).
func trimNetipError(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, "): "); i >= 0 {
		return msg[i+3:]
	}
	return msg
}

func isIP(v string) bool {
	_, err := netip.ParseAddr(v)
	return err == nil
}

// validatePort checks a port number is in 1..65535.
func validatePort(p *field.Path, n int64) ErrorList {
	if n < 1 || n > 65535 {
		return ErrorList{errInvalid(p, n, "invalid port", "must be between 1 and 65535")}
	}
	return nil
}

// validateIstioHost applies Istio's host rules: at most 255 characters,
// DNS labels (either case), a wildcard only in the first label, and a
// top-level label that is not all digits (so an IP address is not a host).
func validateIstioHost(p *field.Path, host string) ErrorList {
	if host == "" {
		return ErrorList{errRequired(p, "host must not be empty")}
	}
	if len(host) > 255 {
		return ErrorList{errTooLong(p, host, 255)}
	}
	first, rest, hasRest := strings.Cut(host, ".")
	if !istioWildcardLabel.MatchString(first) {
		return ErrorList{errInvalid(p, host, "invalid host", fmt.Sprintf("label %q is not a DNS label (a wildcard may only start the first label)", first))}
	}
	if first == "*" && !hasRest {
		return nil
	}
	if !hasRest {
		if isAllDigits(first) {
			return ErrorList{errInvalid(p, host, "invalid host", "must not be all digits")}
		}
		return nil
	}
	return validateDNSLabels(p, host, rest)
}

// validateFQDN is validateIstioHost without any wildcard.
func validateFQDN(p *field.Path, host string) ErrorList {
	if host == "" {
		return ErrorList{errRequired(p, "host must not be empty")}
	}
	if len(host) > 255 {
		return ErrorList{errTooLong(p, host, 255)}
	}
	return validateDNSLabels(p, host, host)
}

// validateDNSLabels checks the dot-separated labels of part of host; a
// trailing dot is allowed, an all-digit top-level label is not.
func validateDNSLabels(p *field.Path, host, part string) ErrorList {
	labels := strings.Split(part, ".")
	if last := labels[len(labels)-1]; isAllDigits(last) {
		return ErrorList{errInvalid(p, host, "invalid host", fmt.Sprintf("top-level label %q must not be all digits (IP addresses are not hosts)", last))}
	}
	for i, l := range labels {
		if i == len(labels)-1 && l == "" && i > 0 {
			break // a trailing dot
		}
		if len(l) > 63 || !istioHostLabel.MatchString(l) {
			return ErrorList{errInvalid(p, host, "invalid host", fmt.Sprintf("label %q is not a DNS label", l))}
		}
	}
	return nil
}

func isAllDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// validateWorkloadSelector applies Istio's selector rules: keys present,
// no wildcards, and Kubernetes label syntax (a selector that breaks it could
// never match a workload).
func validateWorkloadSelector(p *field.Path, labels map[string]string) ErrorList {
	var errs ErrorList
	for _, k := range sortedKeys(labels) {
		v := labels[k]
		kp := p.Key(k)
		switch {
		case k == "":
			errs = append(errs, errInvalid(p, k, "invalid label key", "must not be empty"))
		case strings.Contains(k, "*"):
			errs = append(errs, errInvalid(p, k, "invalid label key", "wildcards are not supported in selectors"))
		default:
			if msgs := content.IsLabelKey(k); len(msgs) > 0 {
				errs = append(errs, errInvalid(p, k, "invalid label key", strings.Join(msgs, "; ")))
			}
		}
		if strings.Contains(v, "*") {
			errs = append(errs, errInvalid(kp, v, "invalid label value", "wildcards are not supported in selectors"))
		} else if msgs := content.IsLabelValue(v); len(msgs) > 0 {
			errs = append(errs, errInvalid(kp, v, "invalid label value", strings.Join(msgs, "; ")))
		}
	}
	return errs
}

// policyTargetKinds are the kinds an Istio policy's targetRef may name: a
// Gateway (ingress or waypoint), a Service, a ServiceEntry, or the waypoint
// GatewayClass.
func policyTargetKinds() []groupKind {
	return []groupKind{
		{GroupGateway, "Gateway"},
		{GroupCore, "Service"},
		{GroupNetworking, "ServiceEntry"},
		{GroupGateway, "GatewayClass"},
	}
}

// validateSelectorOrTargets enforces that at most one of selector,
// targetRef and targetRefs is set and checks each of them.
func validateSelectorOrTargets(p *field.Path, selector *typev1beta1.WorkloadSelector, targetRef *typev1beta1.PolicyTargetReference, targetRefs []*typev1beta1.PolicyTargetReference) ErrorList {
	var errs ErrorList
	var set []string
	if selector != nil {
		set = append(set, "selector")
	}
	if targetRef != nil {
		set = append(set, "targetRef")
	}
	if len(targetRefs) > 0 {
		set = append(set, "targetRefs")
	}
	if len(set) > 1 {
		errs = append(errs, errForbidden(p.Child(set[1]), nil, "only one of selector, targetRef or targetRefs may be set, found "+strings.Join(set, " and ")))
	}
	if selector != nil {
		errs = append(errs, validateWorkloadSelector(p.Child("selector", "matchLabels"), selector.GetMatchLabels())...)
	}
	if targetRef != nil {
		errs = append(errs, validatePolicyTargetRef(p.Child("targetRef"), targetRef)...)
	}
	errs = append(errs, validateMaxItems(p.Child("targetRefs"), len(targetRefs), 16)...)
	for i, r := range targetRefs {
		errs = append(errs, validatePolicyTargetRef(p.Child("targetRefs").Index(i), r)...)
	}
	return errs
}

func validatePolicyTargetRef(p *field.Path, ref *typev1beta1.PolicyTargetReference) ErrorList {
	var errs ErrorList
	if ref.GetName() == "" {
		errs = append(errs, errRequired(p.Child("name"), ""))
	} else if len(ref.GetName()) > 253 {
		errs = append(errs, errTooLong(p.Child("name"), ref.GetName(), 253))
	}
	if ref.GetNamespace() != "" {
		errs = append(errs, errForbidden(p.Child("namespace"), ref.GetNamespace(), "cross-namespace references are not supported"))
	}
	group := ref.GetGroup()
	if group == CoreKeyGroup {
		group = GroupCore
	}
	if ref.GetKind() == "" {
		return append(errs, errRequired(p.Child("kind"), ""))
	}
	allowed := policyTargetKinds()
	for _, a := range allowed {
		if a.group == group && a.kind == ref.GetKind() {
			return errs
		}
	}
	supported := make([]string, len(allowed))
	for i, a := range allowed {
		supported[i] = a.kind
		if a.group != GroupCore {
			supported[i] = a.group + "/" + a.kind
		}
	}
	shown := ref.GetKind()
	if ref.GetGroup() != "" {
		shown = ref.GetGroup() + "/" + shown
	}
	return append(errs, errNotSupported(p, shown, supported))
}

func validateMaxItems(p *field.Path, n, limit int) ErrorList {
	if n > limit {
		return ErrorList{errTooMany(p, n, limit)}
	}
	return nil
}

func validateMaxLength(p *field.Path, v string, limit int) ErrorList {
	if len(v) > limit {
		return ErrorList{errTooLong(p, v, limit)}
	}
	return nil
}

// validateRegex checks an RE2 pattern (the syntax Envoy uses, which Go's
// regexp implements).
func validateRegex(p *field.Path, v string) ErrorList {
	if _, err := regexp.Compile(v); err != nil {
		return ErrorList{errInvalid(p, v, "invalid regular expression", strings.TrimPrefix(err.Error(), "error parsing regexp: "))}
	}
	return nil
}

// validateIstioDuration applies Istio's duration rule: at least 1ms and in
// whole milliseconds.
func validateIstioDuration(p *field.Path, d *durationpb.Duration) ErrorList {
	if d == nil {
		return nil
	}
	if err := d.CheckValid(); err != nil {
		return ErrorList{errInvalid(p, formatProtoDuration(time.Duration(d.GetSeconds())*time.Second+time.Duration(d.GetNanos())), "invalid duration", "out of range")}
	}
	dur := d.AsDuration()
	switch {
	case dur < time.Millisecond:
		return ErrorList{errInvalid(p, dur.String(), "invalid duration", "must be at least 1ms")}
	case dur%time.Millisecond != 0:
		return ErrorList{errInvalid(p, dur.String(), "invalid duration", "must be a whole number of milliseconds")}
	}
	return nil
}

// validateNonEmptyStrings rejects empty entries in a list of match values.
func validateNonEmptyStrings(p *field.Path, values []string) ErrorList {
	var errs ErrorList
	for i, v := range values {
		if v == "" {
			errs = append(errs, errInvalid(p.Index(i), v, "invalid value", "must not be empty"))
		}
	}
	return errs
}

// validatePortString checks a port written as a decimal string.
func validatePortString(p *field.Path, v string) ErrorList {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n < 1 || n > 65535 {
		return ErrorList{errInvalid(p, v, "invalid port", "must be a number between 1 and 65535")}
	}
	return nil
}
