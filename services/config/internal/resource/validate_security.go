package resource

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	securityv1beta1 "istio.io/api/security/v1beta1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// pathLiteral is one literal segment of an Istio path template (an RFC 3986
// pchar sequence).
var pathLiteral = regexp.MustCompile(`^[-A-Za-z0-9._~%!$&'()+,;:@=]+$`)

// dryRunAnnotation turns an AuthorizationPolicy into a dry run; Istio
// accepts it on no other kind.
const dryRunAnnotation = "istio.io/dry-run"

// Limits from the Istio CRD schema.
const (
	maxAuthzRules       = 512
	maxServiceAccounts  = 16
	maxServiceAccountLn = 320
	maxJWTRules         = 4096
	maxJWKSURILength    = 2048
)

// validateIstioMetadata applies the metadata rules Istio adds for its own
// kinds: only an AuthorizationPolicy may carry istio.io/dry-run.
func validateIstioMetadata(obj *Object) ErrorList {
	v, ok := obj.Metadata.Annotations[dryRunAnnotation]
	if !ok {
		return nil
	}
	p := field.NewPath("metadata", "annotations").Key(dryRunAnnotation)
	ap, isAuthz := obj.Spec.(*securityv1beta1.AuthorizationPolicy)
	if !isAuthz {
		return ErrorList{errForbidden(p, nil, "only AuthorizationPolicy supports dry-run")}
	}
	if ap.GetAction() != securityv1beta1.AuthorizationPolicy_ALLOW && ap.GetAction() != securityv1beta1.AuthorizationPolicy_DENY {
		return ErrorList{errForbidden(p, nil, fmt.Sprintf("dry-run supports only actions ALLOW and DENY, not %s", ap.GetAction()))}
	}
	if _, err := strconv.ParseBool(v); err != nil {
		return ErrorList{errInvalid(p, v, "invalid boolean", "must be true or false")}
	}
	return nil
}

func validateAuthorizationPolicy(obj *Object) ErrorList {
	ap := obj.Spec.(*securityv1beta1.AuthorizationPolicy)
	p := field.NewPath("spec")
	errs := validateIstioMetadata(obj)
	errs = append(errs, validateSelectorOrTargets(p, ap.GetSelector(), ap.GetTargetRef(), ap.GetTargetRefs())...)

	action := ap.GetAction()
	switch action {
	case securityv1beta1.AuthorizationPolicy_CUSTOM:
		if len(ap.GetRules()) == 0 {
			errs = append(errs, errRequired(p.Child("rules"), "a CUSTOM policy without rules never applies; add an empty rule {} to apply it to every request"))
		}
		if ap.GetProvider().GetName() == "" {
			errs = append(errs, errRequired(p.Child("provider", "name"), "action CUSTOM needs the name of an extension provider"))
		}
	case securityv1beta1.AuthorizationPolicy_DENY:
		if len(ap.GetRules()) == 0 {
			// Istio rejects this too: with no rules a DENY never matches.
			errs = append(errs, errRequired(p.Child("rules"), "a DENY policy without rules never applies; add an empty rule {} to deny every request"))
		}
	}
	if ap.GetProvider() != nil && action != securityv1beta1.AuthorizationPolicy_CUSTOM {
		errs = append(errs, errForbidden(p.Child("provider"), nil, fmt.Sprintf("provider is only allowed with action CUSTOM, not %s", action)))
	}

	rules := p.Child("rules")
	errs = append(errs, validateMaxItems(rules, len(ap.GetRules()), maxAuthzRules)...)
	for i, r := range ap.GetRules() {
		errs = append(errs, validateAuthzRule(rules.Index(i), r, action)...)
	}
	return errs
}

func validateAuthzRule(p *field.Path, r *securityv1beta1.Rule, action securityv1beta1.AuthorizationPolicy_Action) ErrorList {
	var errs ErrorList
	errs = append(errs, validateMaxItems(p.Child("from"), len(r.GetFrom()), maxAuthzRules)...)
	for i, from := range r.GetFrom() {
		fp := p.Child("from").Index(i).Child("source")
		if from.GetSource() == nil {
			errs = append(errs, errRequired(fp, ""))
			continue
		}
		errs = append(errs, validateAuthzSource(fp, from.GetSource(), action)...)
	}
	errs = append(errs, validateMaxItems(p.Child("to"), len(r.GetTo()), maxAuthzRules)...)
	for i, to := range r.GetTo() {
		op := p.Child("to").Index(i).Child("operation")
		if to.GetOperation() == nil {
			errs = append(errs, errRequired(op, ""))
			continue
		}
		errs = append(errs, validateAuthzOperation(op, to.GetOperation())...)
	}
	errs = append(errs, validateMaxItems(p.Child("when"), len(r.GetWhen()), maxAuthzRules)...)
	for i, c := range r.GetWhen() {
		errs = append(errs, validateAuthzCondition(p.Child("when").Index(i), c, action)...)
	}
	return errs
}

func validateAuthzSource(p *field.Path, s *securityv1beta1.Source, action securityv1beta1.AuthorizationPolicy_Action) ErrorList {
	var errs ErrorList
	matchLists := []struct {
		name   string
		values []string
	}{
		{"principals", s.GetPrincipals()}, {"notPrincipals", s.GetNotPrincipals()},
		{"requestPrincipals", s.GetRequestPrincipals()}, {"notRequestPrincipals", s.GetNotRequestPrincipals()},
		{"namespaces", s.GetNamespaces()}, {"notNamespaces", s.GetNotNamespaces()},
		{"trustDomains", s.GetTrustDomains()}, {"notTrustDomains", s.GetNotTrustDomains()},
	}
	ipLists := []struct {
		name   string
		values []string
	}{
		{"ipBlocks", s.GetIpBlocks()}, {"notIpBlocks", s.GetNotIpBlocks()},
		{"remoteIpBlocks", s.GetRemoteIpBlocks()}, {"notRemoteIpBlocks", s.GetNotRemoteIpBlocks()},
	}
	saLists := []struct {
		name   string
		values []string
	}{
		{"serviceAccounts", s.GetServiceAccounts()}, {"notServiceAccounts", s.GetNotServiceAccounts()},
	}

	empty := true
	for _, l := range matchLists {
		empty = empty && len(l.values) == 0
		for i, v := range l.values {
			errs = append(errs, validateWildcardMatch(p.Child(l.name).Index(i), v)...)
		}
	}
	for _, l := range ipLists {
		empty = empty && len(l.values) == 0
		for i, v := range l.values {
			if v == "" {
				errs = append(errs, errInvalid(p.Child(l.name).Index(i), v, "invalid IP address", "must not be empty"))
				continue
			}
			errs = append(errs, validateIPOrCIDR(p.Child(l.name).Index(i), v)...)
		}
	}
	for _, l := range saLists {
		empty = empty && len(l.values) == 0
		errs = append(errs, validateMaxItems(p.Child(l.name), len(l.values), maxServiceAccounts)...)
		for i, v := range l.values {
			errs = append(errs, validateServiceAccountRef(p.Child(l.name).Index(i), v)...)
		}
	}
	if empty {
		errs = append(errs, errRequired(p, "a source must set at least one field"))
	}

	if len(s.GetServiceAccounts())+len(s.GetNotServiceAccounts()) > 0 &&
		len(s.GetPrincipals())+len(s.GetNotPrincipals())+len(s.GetNamespaces())+len(s.GetNotNamespaces()) > 0 {
		name := "serviceAccounts"
		if len(s.GetServiceAccounts()) == 0 {
			name = "notServiceAccounts"
		}
		errs = append(errs, errForbidden(p.Child(name), nil, "cannot be combined with principals or namespaces"))
	}

	if action == securityv1beta1.AuthorizationPolicy_CUSTOM {
		for _, l := range matchLists[:6] {
			if len(l.values) > 0 {
				errs = append(errs, errForbidden(p.Child(l.name), nil, "not supported with action CUSTOM"))
			}
		}
	}
	return errs
}

// validateWildcardMatch checks an Istio string match value: not empty, and a
// "*" only alone, as a prefix or as a suffix.
func validateWildcardMatch(p *field.Path, v string) ErrorList {
	if v == "" {
		return ErrorList{errInvalid(p, v, "invalid value", "must not be empty")}
	}
	if v == "*" {
		return nil
	}
	inner := v
	if strings.HasPrefix(inner, "*") {
		inner = inner[1:]
	} else if strings.HasSuffix(inner, "*") {
		inner = inner[:len(inner)-1]
	}
	if strings.Contains(inner, "*") {
		return ErrorList{errInvalid(p, v, "invalid match value", `"*" is only allowed alone, as a prefix or as a suffix`)}
	}
	return nil
}

// validateServiceAccountRef checks "<serviceaccount>" or
// "<namespace>/<serviceaccount>", without wildcards.
func validateServiceAccountRef(p *field.Path, v string) ErrorList {
	switch {
	case v == "":
		return ErrorList{errInvalid(p, v, "invalid service account", "must not be empty")}
	case len(v) > maxServiceAccountLn:
		return ErrorList{errTooLong(p, v, maxServiceAccountLn)}
	case strings.Contains(v, "*"):
		return ErrorList{errInvalid(p, v, "invalid service account", "wildcards are not allowed")}
	case strings.Count(v, "/") > 1:
		return ErrorList{errInvalid(p, v, "invalid service account", "must be <serviceaccount> or <namespace>/<serviceaccount>")}
	}
	if ns, sa, ok := strings.Cut(v, "/"); ok && (ns == "" || sa == "") {
		return ErrorList{errInvalid(p, v, "invalid service account", "must be <serviceaccount> or <namespace>/<serviceaccount>")}
	}
	return nil
}

func validateAuthzOperation(p *field.Path, op *securityv1beta1.Operation) ErrorList {
	var errs ErrorList
	lists := []struct {
		name   string
		values []string
	}{
		{"hosts", op.GetHosts()}, {"notHosts", op.GetNotHosts()},
		{"ports", op.GetPorts()}, {"notPorts", op.GetNotPorts()},
		{"methods", op.GetMethods()}, {"notMethods", op.GetNotMethods()},
		{"paths", op.GetPaths()}, {"notPaths", op.GetNotPaths()},
	}
	empty := true
	for _, l := range lists {
		empty = empty && len(l.values) == 0
		for i, v := range l.values {
			vp := p.Child(l.name).Index(i)
			switch l.name {
			case "ports", "notPorts":
				errs = append(errs, validatePortString(vp, v)...)
			case "paths", "notPaths":
				if isPathTemplate(v) {
					errs = append(errs, validatePathTemplate(vp, v)...)
				} else {
					errs = append(errs, validateWildcardMatch(vp, v)...)
				}
			default:
				errs = append(errs, validateWildcardMatch(vp, v)...)
			}
		}
	}
	if empty {
		errs = append(errs, errRequired(p, "an operation must set at least one field"))
	}
	return errs
}

func isPathTemplate(v string) bool {
	return strings.Contains(v, "{*}") || strings.Contains(v, "{**}")
}

// validatePathTemplate checks a path that uses Istio's templates: each
// segment is {*}, {**} (only last) or a plain literal.
func validatePathTemplate(p *field.Path, v string) ErrorList {
	segments := strings.Split(strings.Trim(v, "/"), "/")
	matchAnySeen := false
	for _, seg := range segments {
		switch {
		case seg == "{*}" || seg == "{**}":
			if matchAnySeen {
				return ErrorList{errInvalid(p, v, "invalid path template", "{**} must be the last segment")}
			}
			matchAnySeen = seg == "{**}"
		case strings.ContainsAny(seg, "{}"):
			return ErrorList{errInvalid(p, v, "invalid path template", fmt.Sprintf("segment %q: braces are only allowed as {*} or {**}", seg))}
		case !pathLiteral.MatchString(seg):
			return ErrorList{errInvalid(p, v, "invalid path template", fmt.Sprintf("segment %q is not a valid literal", seg))}
		}
	}
	return nil
}

// conditionKeyKind says how the values of a `when` condition key are checked.
type conditionKeyKind int

const (
	condFree conditionKeyKind = iota
	condIP
	condPort
	condServiceAccount
	condMapKey // key must be written name[sub-key]
)

// conditionKeys lists the supported `when` keys (exact matches); the
// bracketed and prefixed families are handled in conditionKeyKindOf.
func conditionKeys() map[string]conditionKeyKind {
	return map[string]conditionKeyKind{
		"source.ip":              condIP,
		"remote.ip":              condIP,
		"destination.ip":         condIP,
		"destination.port":       condPort,
		"source.namespace":       condFree,
		"source.principal":       condFree,
		"source.serviceAccount":  condServiceAccount,
		"request.auth.principal": condFree,
		"request.auth.audiences": condFree,
		"request.auth.presenter": condFree,
		"connection.sni":         condFree,
	}
}

// mapKeyConditionPrefixes are the key families written as name[sub-key].
func mapKeyConditionPrefixes() []string {
	return []string{
		"request.headers",
		"request.experimental.inline.headers",
		"request.auth.claims",
		"experimental.envoy.filters.",
	}
}

func validateAuthzCondition(p *field.Path, c *securityv1beta1.Condition, action securityv1beta1.AuthorizationPolicy_Action) ErrorList {
	var errs ErrorList
	key := c.GetKey()
	kp := p.Child("key")
	if key == "" {
		return ErrorList{errRequired(kp, "")}
	}
	if len(c.GetValues()) == 0 && len(c.GetNotValues()) == 0 {
		errs = append(errs, errRequired(p.Child("values"), fmt.Sprintf("at least one of values or notValues must be set for key %q", key)))
	}

	kind, keyErr := conditionKeyKindOf(kp, key)
	if keyErr != nil {
		return append(errs, keyErr)
	}
	for _, list := range []struct {
		name   string
		values []string
	}{{"values", c.GetValues()}, {"notValues", c.GetNotValues()}} {
		for i, v := range list.values {
			vp := p.Child(list.name).Index(i)
			if v == "" {
				errs = append(errs, errInvalid(vp, v, "invalid value", "must not be empty"))
				continue
			}
			switch kind {
			case condIP:
				errs = append(errs, validateIPOrCIDR(vp, v)...)
			case condPort:
				errs = append(errs, validatePortString(vp, v)...)
			case condServiceAccount:
				errs = append(errs, validateServiceAccountRef(vp, v)...)
			}
		}
	}
	if action == securityv1beta1.AuthorizationPolicy_CUSTOM &&
		(key == "source.namespace" || key == "source.principal" || strings.HasPrefix(key, "request.auth.")) {
		errs = append(errs, errForbidden(kp, key, "not supported with action CUSTOM"))
	}
	return errs
}

// conditionKeyKindOf classifies a condition key, or explains why it is not
// accepted.
func conditionKeyKindOf(p *field.Path, key string) (conditionKeyKind, *FieldError) {
	if kind, ok := conditionKeys()[key]; ok {
		return kind, nil
	}
	for _, prefix := range mapKeyConditionPrefixes() {
		if strings.HasPrefix(key, prefix) {
			open := strings.IndexByte(key, '[')
			if open <= 0 || !strings.HasSuffix(key, "]") || open >= len(key)-2 {
				return 0, errInvalid(p, key, "invalid condition key", "must have the form name[sub-key]")
			}
			return condMapKey, nil
		}
	}
	switch {
	case key == "destination.namespace":
		return 0, errInvalid(p, key, "unsupported condition key", "use the policy's namespace (metadata.namespace) instead")
	case strings.HasPrefix(key, "destination.labels"):
		return 0, errInvalid(p, key, "unsupported condition key", "use the policy's selector instead")
	case key == "destination.name" || key == "destination.user":
		return 0, errInvalid(p, key, "unsupported condition key", "only supported by the removed v1alpha1 API")
	}
	supported := sortedKeys(conditionKeys())
	supported = append(supported, "request.headers[<name>]", "request.auth.claims[<claim>]", "experimental.envoy.filters.<filter>[<key>]")
	return 0, errNotSupported(p, key, supported)
}

func validatePeerAuthentication(obj *Object) ErrorList {
	pa := obj.Spec.(*securityv1beta1.PeerAuthentication)
	p := field.NewPath("spec")
	errs := validateIstioMetadata(obj)
	if pa.GetSelector() != nil {
		errs = append(errs, validateWorkloadSelector(p.Child("selector", "matchLabels"), pa.GetSelector().GetMatchLabels())...)
	}
	ports := pa.GetPortLevelMtls()
	if len(ports) > 0 && len(pa.GetSelector().GetMatchLabels()) == 0 {
		errs = append(errs, errForbidden(p.Child("portLevelMtls"), nil, "port-level mTLS needs a workload selector with labels; mesh-wide and namespace-wide policies cannot set it"))
	}
	for _, port := range sortedUint32Keys(ports) {
		if port < 1 || port > 65535 {
			errs = append(errs, errInvalid(p.Child("portLevelMtls").Key(strconv.FormatUint(uint64(port), 10)), port, "invalid port", "must be between 1 and 65535"))
		}
	}
	return errs
}

func validateRequestAuthentication(obj *Object) ErrorList {
	ra := obj.Spec.(*securityv1beta1.RequestAuthentication)
	p := field.NewPath("spec")
	errs := validateIstioMetadata(obj)
	errs = append(errs, validateSelectorOrTargets(p, ra.GetSelector(), ra.GetTargetRef(), ra.GetTargetRefs())...)
	rules := p.Child("jwtRules")
	errs = append(errs, validateMaxItems(rules, len(ra.GetJwtRules()), maxJWTRules)...)
	for i, r := range ra.GetJwtRules() {
		errs = append(errs, validateJWTRule(rules.Index(i), r)...)
	}
	return errs
}

func validateJWTRule(p *field.Path, r *securityv1beta1.JWTRule) ErrorList {
	var errs ErrorList
	if r.GetIssuer() == "" {
		errs = append(errs, errRequired(p.Child("issuer"), ""))
	}
	errs = append(errs, validateNonEmptyStrings(p.Child("audiences"), r.GetAudiences())...)
	if uri := r.GetJwksUri(); uri != "" {
		errs = append(errs, validateJWKSURI(p.Child("jwksUri"), uri)...)
	}
	if r.GetJwks() != "" {
		if r.GetJwksUri() != "" {
			errs = append(errs, errForbidden(p.Child("jwks"), nil, "only one of jwks or jwksUri may be set"))
		}
		var set map[string]any
		if err := json.Unmarshal([]byte(r.GetJwks()), &set); err != nil {
			errs = append(errs, errInvalid(p.Child("jwks"), r.GetJwks(), "invalid JWKS", "must be a JSON Web Key Set (a JSON object)"))
		}
	}
	for i, h := range r.GetFromHeaders() {
		hp := p.Child("fromHeaders").Index(i).Child("name")
		if h.GetName() == "" {
			errs = append(errs, errRequired(hp, ""))
		} else if !headerNameToken.MatchString(h.GetName()) {
			errs = append(errs, errInvalid(hp, h.GetName(), "invalid header name", "must be an HTTP header name"))
		}
	}
	errs = append(errs, validateNonEmptyStrings(p.Child("fromParams"), r.GetFromParams())...)
	errs = append(errs, validateNonEmptyStrings(p.Child("fromCookies"), r.GetFromCookies())...)
	for i, c := range r.GetOutputClaimToHeaders() {
		cp := p.Child("outputClaimToHeaders").Index(i)
		if c.GetClaim() == "" {
			errs = append(errs, errRequired(cp.Child("claim"), ""))
		}
		switch {
		case c.GetHeader() == "":
			errs = append(errs, errRequired(cp.Child("header"), ""))
		case !istioHeaderName.MatchString(c.GetHeader()):
			errs = append(errs, errInvalid(cp.Child("header"), c.GetHeader(), "invalid header name", "must match ^[-_A-Za-z0-9]+$"))
		}
	}
	if r.GetOutputPayloadToHeader() != "" && !istioHeaderName.MatchString(r.GetOutputPayloadToHeader()) {
		errs = append(errs, errInvalid(p.Child("outputPayloadToHeader"), r.GetOutputPayloadToHeader(), "invalid header name", "must match ^[-_A-Za-z0-9]+$"))
	}
	errs = append(errs, validateMaxItems(p.Child("spaceDelimitedClaims"), len(r.GetSpaceDelimitedClaims()), 64)...)
	errs = append(errs, validateIstioDuration(p.Child("timeout"), r.GetTimeout())...)
	return errs
}

// validateJWKSURI requires an absolute http(s) URL with a host.
func validateJWKSURI(p *field.Path, uri string) ErrorList {
	if len(uri) > maxJWKSURILength {
		return ErrorList{errTooLong(p, uri, maxJWKSURILength)}
	}
	u, err := url.Parse(uri)
	if err != nil {
		return ErrorList{errInvalid(p, uri, "invalid URL", "cannot be parsed")}
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return ErrorList{errInvalid(p, uri, "invalid URL", "scheme must be http or https")}
	}
	if u.Hostname() == "" {
		return ErrorList{errInvalid(p, uri, "invalid URL", "must name a host")}
	}
	if port := u.Port(); port != "" {
		if errs := validatePortString(p, port); errs != nil {
			return ErrorList{errInvalid(p, uri, "invalid URL", "port must be between 1 and 65535")}
		}
	}
	return nil
}

func sortedUint32Keys[V any](m map[uint32]V) []uint32 {
	keys := make([]uint32, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
