package resource

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

var (
	// routePathChars are the characters an Exact or PathPrefix match may use.
	routePathChars = regexp.MustCompile(`^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$`)
	grpcService    = regexp.MustCompile(`^(?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$`)
	grpcMethod     = regexp.MustCompile(`^[A-Za-z_][A-Za-z_0-9]*$`)
	corsOrigin     = regexp.MustCompile(`(^\*$)|(^(http(s)?):\/\/(((\*\.)?([a-zA-Z0-9\-]+\.)*[a-zA-Z0-9-]+|\*)(:([0-9]{1,5}))?)$)`)
)

// validateParentRefs checks the route's parentRefs, including the CRD rule
// that several references to the same parent must each name a distinct
// sectionName. A parent may be a Gateway or, for mesh (GAMMA) routes, a
// Service (group "" and kind Service).
func validateParentRefs(p *field.Path, refs []gatewayv1.ParentReference) ErrorList {
	var errs ErrorList
	errs = append(errs, validateMaxItems(p, len(refs), maxParentRefs)...)
	type parentKey struct{ group, kind, namespace, name string }
	keyOf := func(r gatewayv1.ParentReference) parentKey {
		k := parentKey{group: GroupGateway, kind: defaultParentKind, name: string(r.Name)}
		if r.Group != nil {
			k.group = string(*r.Group)
		}
		if r.Kind != nil {
			k.kind = string(*r.Kind)
		}
		if r.Namespace != nil {
			k.namespace = string(*r.Namespace)
		}
		return k
	}
	sectionOf := func(r gatewayv1.ParentReference) string {
		if r.SectionName == nil {
			return ""
		}
		return string(*r.SectionName)
	}
	for i, r := range refs {
		rp := p.Index(i)
		if r.Group != nil {
			errs = append(errs, validateGroup(rp.Child("group"), string(*r.Group))...)
		}
		if r.Kind != nil {
			errs = append(errs, validateKindName(rp.Child("kind"), string(*r.Kind))...)
		}
		errs = append(errs, validateObjectRefName(rp.Child("name"), string(r.Name))...)
		if r.Namespace != nil {
			errs = append(errs, validateDNS1123Label(rp.Child("namespace"), string(*r.Namespace), "invalid namespace")...)
		}
		if r.SectionName != nil {
			errs = append(errs, validateSectionName(rp.Child("sectionName"), string(*r.SectionName), false)...)
		}
		if r.Port != nil {
			errs = append(errs, validatePort(rp.Child("port"), int64(*r.Port))...)
		}
		for j := 0; j < i; j++ {
			if keyOf(refs[j]) != keyOf(r) {
				continue
			}
			switch a, b := sectionOf(refs[j]), sectionOf(r); {
			case (a == "") != (b == ""):
				errs = append(errs, errRequired(rp.Child("sectionName"), fmt.Sprintf("parentRefs[%d] names the same parent, so every reference to it must set sectionName", j)))
			case a == b:
				errs = append(errs, errDuplicate(rp, string(r.Name), fmt.Sprintf("same parent and sectionName as parentRefs[%d]", j)))
			default:
				continue
			}
			break
		}
	}
	return errs
}

func validateRouteHostnames(p *field.Path, hostnames []gatewayv1.Hostname) ErrorList {
	errs := validateMaxItems(p, len(hostnames), maxRouteHostnames)
	for i, h := range hostnames {
		errs = append(errs, validateGatewayHostname(p.Index(i), string(h), true)...)
	}
	return errs
}

// validateRuleNames requires rule names, when set, to be valid and unique.
func validateRuleName(p *field.Path, name *gatewayv1.SectionName, seen map[string]int, index int) ErrorList {
	if name == nil {
		return nil
	}
	errs := validateSectionName(p, string(*name), false)
	if prev, dup := seen[string(*name)]; dup {
		errs = append(errs, errDuplicate(p, string(*name), fmt.Sprintf("rule names must be unique, already used by rules[%d]", prev)))
	}
	seen[string(*name)] = index
	return errs
}

func validateHTTPRoute(obj *Object) ErrorList {
	s := obj.Spec.(*gatewayv1.HTTPRouteSpec)
	p := field.NewPath("spec")
	var errs ErrorList
	errs = append(errs, validateParentRefs(p.Child("parentRefs"), s.ParentRefs)...)
	errs = append(errs, validateRouteHostnames(p.Child("hostnames"), s.Hostnames)...)

	rules := p.Child("rules")
	errs = append(errs, validateMaxItems(rules, len(s.Rules), maxRouteRules)...)
	total := 0
	names := map[string]int{}
	for i := range s.Rules {
		r := &s.Rules[i]
		rp := rules.Index(i)
		total += len(r.Matches)
		errs = append(errs, validateRuleName(rp.Child("name"), r.Name, names, i)...)
		errs = append(errs, validateHTTPRule(rp, r)...)
	}
	if total > maxRouteMatchTotal {
		errs = append(errs, &FieldError{
			Type: ErrorTypeTooMany, Field: rules.String(), Value: fmt.Sprint(total),
			Summary: "too many matches", Detail: fmt.Sprintf("all rules together may have at most %d matches", maxRouteMatchTotal),
		})
	}
	return errs
}

func validateHTTPRule(p *field.Path, r *gatewayv1.HTTPRouteRule) ErrorList {
	var errs ErrorList
	matches := p.Child("matches")
	errs = append(errs, validateMaxItems(matches, len(r.Matches), maxRuleMatches)...)
	for i := range r.Matches {
		errs = append(errs, validateHTTPMatch(matches.Index(i), &r.Matches[i])...)
	}

	filters := p.Child("filters")
	errs = append(errs, validateMaxItems(filters, len(r.Filters), maxRuleFilters)...)
	seen := map[gatewayv1.HTTPRouteFilterType]int{}
	for i := range r.Filters {
		f := &r.Filters[i]
		fp := filters.Index(i)
		errs = append(errs, validateHTTPFilter(fp, f, r.Matches)...)
		switch f.Type {
		case gatewayv1.HTTPRouteFilterRequestHeaderModifier, gatewayv1.HTTPRouteFilterResponseHeaderModifier,
			gatewayv1.HTTPRouteFilterRequestRedirect, gatewayv1.HTTPRouteFilterURLRewrite, gatewayv1.HTTPRouteFilterCORS:
			if prev, dup := seen[f.Type]; dup {
				errs = append(errs, errDuplicate(fp.Child("type"), string(f.Type), fmt.Sprintf("a rule may have only one %s filter, already at filters[%d]", f.Type, prev)))
			} else {
				seen[f.Type] = i
			}
		}
	}
	_, hasRedirect := seen[gatewayv1.HTTPRouteFilterRequestRedirect]
	if _, hasRewrite := seen[gatewayv1.HTTPRouteFilterURLRewrite]; hasRedirect && hasRewrite {
		errs = append(errs, errForbidden(filters.Index(seen[gatewayv1.HTTPRouteFilterURLRewrite]), nil, "RequestRedirect and URLRewrite cannot be used in the same rule"))
	}
	if hasRedirect && len(r.BackendRefs) > 0 {
		errs = append(errs, errForbidden(p.Child("backendRefs"), nil, "a rule with a RequestRedirect filter cannot have backendRefs"))
	}

	backends := p.Child("backendRefs")
	errs = append(errs, validateMaxItems(backends, len(r.BackendRefs), maxBackendRefs)...)
	for i := range r.BackendRefs {
		b := &r.BackendRefs[i]
		bp := backends.Index(i)
		errs = append(errs, validateBackendRef(bp, &b.BackendRef)...)
		errs = append(errs, validateMaxItems(bp.Child("filters"), len(b.Filters), maxRuleFilters)...)
		for j := range b.Filters {
			errs = append(errs, validateHTTPFilter(bp.Child("filters").Index(j), &b.Filters[j], r.Matches)...)
		}
	}

	if t := r.Timeouts; t != nil {
		tp := p.Child("timeouts")
		var request, backend time.Duration
		if t.Request != nil {
			if e := validateGatewayDuration(tp.Child("request"), string(*t.Request)); e != nil {
				errs = append(errs, e...)
			} else {
				request, _ = time.ParseDuration(string(*t.Request))
			}
		}
		if t.BackendRequest != nil {
			if e := validateGatewayDuration(tp.Child("backendRequest"), string(*t.BackendRequest)); e != nil {
				errs = append(errs, e...)
			} else {
				backend, _ = time.ParseDuration(string(*t.BackendRequest))
			}
		}
		if request > 0 && backend > request {
			errs = append(errs, errInvalid(tp.Child("backendRequest"), string(*t.BackendRequest), "invalid timeout", fmt.Sprintf("must not be longer than the request timeout %s", *t.Request)))
		}
	}
	if rt := r.Retry; rt != nil {
		rp := p.Child("retry")
		for i, c := range rt.Codes {
			if c < 400 || c > 599 {
				errs = append(errs, errInvalid(rp.Child("codes").Index(i), int(c), "invalid status code", "must be between 400 and 599"))
			}
		}
		if rt.Attempts != nil && *rt.Attempts < 0 {
			errs = append(errs, errInvalid(rp.Child("attempts"), *rt.Attempts, "invalid value", "must not be negative"))
		}
		if rt.Backoff != nil {
			errs = append(errs, validateGatewayDuration(rp.Child("backoff"), string(*rt.Backoff))...)
		}
	}
	errs = append(errs, validateSessionPersistence(p.Child("sessionPersistence"), r.SessionPersistence)...)
	return errs
}

func validateHTTPMatch(p *field.Path, m *gatewayv1.HTTPRouteMatch) ErrorList {
	var errs ErrorList
	if m.Path != nil {
		errs = append(errs, validatePathMatch(p.Child("path"), m.Path)...)
	}
	headers := p.Child("headers")
	errs = append(errs, validateMaxItems(headers, len(m.Headers), maxHeaderMatches)...)
	seen := map[string]int{}
	for i, h := range m.Headers {
		hp := headers.Index(i)
		typ := gatewayv1.HeaderMatchExact
		if h.Type != nil {
			typ = *h.Type
		}
		errs = append(errs, validateHeaderMatch(hp, string(h.Name), h.Value, string(typ), 4096, seen, i)...)
	}
	params := p.Child("queryParams")
	errs = append(errs, validateMaxItems(params, len(m.QueryParams), maxHeaderMatches)...)
	seenParams := map[string]int{}
	for i, q := range m.QueryParams {
		typ := gatewayv1.QueryParamMatchExact
		if q.Type != nil {
			typ = *q.Type
		}
		errs = append(errs, validateHeaderMatch(params.Index(i), string(q.Name), q.Value, string(typ), 1024, seenParams, i)...)
	}
	if m.Method != nil {
		methods := []gatewayv1.HTTPMethod{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
		if !containsValue(methods, *m.Method) {
			errs = append(errs, errNotSupported(p.Child("method"), string(*m.Method), methods))
		}
	}
	return errs
}

// validateHeaderMatch checks one header or query parameter match: a token
// name that is unique within the match, a non-empty value, a known match
// type and, for RegularExpression, a pattern that compiles.
func validateHeaderMatch(p *field.Path, name, value, typ string, maxValue int, seen map[string]int, index int) ErrorList {
	var errs ErrorList
	np := p.Child("name")
	switch {
	case name == "":
		errs = append(errs, errRequired(np, ""))
	case len(name) > 256:
		errs = append(errs, errTooLong(np, name, 256))
	case !headerNameToken.MatchString(name):
		errs = append(errs, errInvalid(np, name, "invalid name", "must be an HTTP token (letters, digits and !#$%&'*+-.^_`|~)"))
	}
	if prev, dup := seen[name]; dup && name != "" {
		errs = append(errs, errDuplicate(np, name, fmt.Sprintf("already matched by entry [%d] of this match", prev)))
	} else {
		seen[name] = index
	}
	switch {
	case value == "":
		errs = append(errs, errRequired(p.Child("value"), ""))
	case len(value) > maxValue:
		errs = append(errs, errTooLong(p.Child("value"), value, maxValue))
	}
	switch typ {
	case "Exact":
	case "RegularExpression":
		if value != "" {
			errs = append(errs, validateRegex(p.Child("value"), value)...)
		}
	default:
		errs = append(errs, errNotSupported(p.Child("type"), typ, []string{"Exact", "RegularExpression"}))
	}
	return errs
}

func validatePathMatch(p *field.Path, m *gatewayv1.HTTPPathMatch) ErrorList {
	typ := gatewayv1.PathMatchPathPrefix
	if m.Type != nil {
		typ = *m.Type
	}
	value := "/"
	if m.Value != nil {
		value = *m.Value
	}
	vp := p.Child("value")
	if len(value) > 1024 {
		return ErrorList{errTooLong(vp, value, 1024)}
	}
	switch typ {
	case gatewayv1.PathMatchExact, gatewayv1.PathMatchPathPrefix:
		return validateRoutePath(vp, value, string(typ))
	case gatewayv1.PathMatchRegularExpression:
		return validateRegex(vp, value)
	default:
		types := []gatewayv1.PathMatchType{gatewayv1.PathMatchExact, gatewayv1.PathMatchPathPrefix, gatewayv1.PathMatchRegularExpression}
		return ErrorList{errNotSupported(p.Child("type"), string(typ), types)}
	}
}

// validateRoutePath applies the CRD rules for Exact and PathPrefix values: an
// absolute, normalized path of URL path characters.
func validateRoutePath(p *field.Path, v, typ string) ErrorList {
	if !strings.HasPrefix(v, "/") {
		return ErrorList{errInvalid(p, v, "invalid path", typ+" paths must start with /")}
	}
	for _, bad := range []string{"//", "/./", "/../", "%2f", "%2F", "#"} {
		if strings.Contains(v, bad) {
			return ErrorList{errInvalid(p, v, "invalid path", fmt.Sprintf("must not contain %q", bad))}
		}
	}
	for _, bad := range []string{"/..", "/."} {
		if strings.HasSuffix(v, bad) {
			return ErrorList{errInvalid(p, v, "invalid path", fmt.Sprintf("must not end with %q", bad))}
		}
	}
	if !routePathChars.MatchString(v) {
		return ErrorList{errInvalid(p, v, "invalid path", "contains characters not allowed in a URL path")}
	}
	return nil
}

// httpFilterFields lists, for each HTTPRoute filter type, whether the
// filter sets the field that belongs to each type.
func httpFilterFields(f *gatewayv1.HTTPRouteFilter) []struct {
	typ  gatewayv1.HTTPRouteFilterType
	json string
	set  bool
} {
	return []struct {
		typ  gatewayv1.HTTPRouteFilterType
		json string
		set  bool
	}{
		{gatewayv1.HTTPRouteFilterRequestHeaderModifier, "requestHeaderModifier", f.RequestHeaderModifier != nil},
		{gatewayv1.HTTPRouteFilterResponseHeaderModifier, "responseHeaderModifier", f.ResponseHeaderModifier != nil},
		{gatewayv1.HTTPRouteFilterRequestMirror, "requestMirror", f.RequestMirror != nil},
		{gatewayv1.HTTPRouteFilterRequestRedirect, "requestRedirect", f.RequestRedirect != nil},
		{gatewayv1.HTTPRouteFilterURLRewrite, "urlRewrite", f.URLRewrite != nil},
		{gatewayv1.HTTPRouteFilterCORS, "cors", f.CORS != nil},
		{gatewayv1.HTTPRouteFilterExternalAuth, "externalAuth", f.ExternalAuth != nil},
		{gatewayv1.HTTPRouteFilterExtensionRef, "extensionRef", f.ExtensionRef != nil},
	}
}

// validateHTTPFilter checks one filter: its type is known, exactly the field
// of that type is set, and the field's own rules. matches are the rule's
// matches, which a ReplacePrefixMatch path modifier depends on.
func validateHTTPFilter(p *field.Path, f *gatewayv1.HTTPRouteFilter, matches []gatewayv1.HTTPRouteMatch) ErrorList {
	var errs ErrorList
	fields := httpFilterFields(f)
	known := false
	for _, fld := range fields {
		known = known || fld.typ == f.Type
	}
	if f.Type == "" {
		errs = append(errs, errRequired(p.Child("type"), ""))
	} else if !known {
		types := make([]gatewayv1.HTTPRouteFilterType, len(fields))
		for i, fld := range fields {
			types[i] = fld.typ
		}
		errs = append(errs, errNotSupported(p.Child("type"), string(f.Type), types))
	}
	for _, fld := range fields {
		switch {
		case fld.set && fld.typ != f.Type:
			errs = append(errs, errForbidden(p.Child(fld.json), nil, fmt.Sprintf("must be unset when type is %q", f.Type)))
		case !fld.set && fld.typ == f.Type:
			errs = append(errs, errRequired(p.Child(fld.json), fmt.Sprintf("type %s needs it", f.Type)))
		}
	}
	errs = append(errs, validateHeaderFilter(p.Child("requestHeaderModifier"), f.RequestHeaderModifier)...)
	errs = append(errs, validateHeaderFilter(p.Child("responseHeaderModifier"), f.ResponseHeaderModifier)...)
	errs = append(errs, validateMirrorFilter(p.Child("requestMirror"), f.RequestMirror)...)
	if rd := f.RequestRedirect; rd != nil {
		rp := p.Child("requestRedirect")
		if rd.Scheme != nil && *rd.Scheme != "http" && *rd.Scheme != "https" {
			errs = append(errs, errNotSupported(rp.Child("scheme"), *rd.Scheme, []string{"http", "https"}))
		}
		if rd.Hostname != nil {
			errs = append(errs, validateGatewayHostname(rp.Child("hostname"), string(*rd.Hostname), false)...)
		}
		if rd.Port != nil {
			errs = append(errs, validatePort(rp.Child("port"), int64(*rd.Port))...)
		}
		if rd.StatusCode != nil {
			codes := []int{301, 302, 303, 307, 308}
			if !containsValue(codes, *rd.StatusCode) {
				errs = append(errs, errInvalid(rp.Child("statusCode"), *rd.StatusCode, "unsupported value", "supported values: 301, 302, 303, 307, 308"))
			}
		}
		errs = append(errs, validatePathModifier(rp.Child("path"), rd.Path, matches)...)
	}
	if rw := f.URLRewrite; rw != nil {
		rp := p.Child("urlRewrite")
		if rw.Hostname != nil {
			errs = append(errs, validateGatewayHostname(rp.Child("hostname"), string(*rw.Hostname), false)...)
		}
		errs = append(errs, validatePathModifier(rp.Child("path"), rw.Path, matches)...)
	}
	errs = append(errs, validateCORSFilter(p.Child("cors"), f.CORS)...)
	if ea := f.ExternalAuth; ea != nil {
		ep := p.Child("externalAuth")
		protos := []gatewayv1.HTTPRouteExternalAuthProtocol{gatewayv1.HTTPRouteExternalAuthHTTPProtocol, gatewayv1.HTTPRouteExternalAuthGRPCProtocol}
		if !containsValue(protos, ea.ExternalAuthProtocol) {
			errs = append(errs, errNotSupported(ep.Child("protocol"), string(ea.ExternalAuthProtocol), protos))
		}
		errs = append(errs, validateBackendObjectRef(ep.Child("backendRef"), &ea.BackendRef)...)
	}
	errs = append(errs, validateExtensionRef(p.Child("extensionRef"), f.ExtensionRef)...)
	return errs
}

func validateExtensionRef(p *field.Path, r *gatewayv1.LocalObjectReference) ErrorList {
	if r == nil {
		return nil
	}
	var errs ErrorList
	errs = append(errs, validateGroup(p.Child("group"), string(r.Group))...)
	errs = append(errs, validateKindName(p.Child("kind"), string(r.Kind))...)
	errs = append(errs, validateObjectRefName(p.Child("name"), string(r.Name))...)
	return errs
}

// validatePathModifier checks a redirect or rewrite path: the value set
// matches the type, and ReplacePrefixMatch is only used on a rule with
// exactly one PathPrefix match (it replaces that prefix).
func validatePathModifier(p *field.Path, m *gatewayv1.HTTPPathModifier, matches []gatewayv1.HTTPRouteMatch) ErrorList {
	if m == nil {
		return nil
	}
	var errs ErrorList
	switch m.Type {
	case gatewayv1.FullPathHTTPPathModifier:
		if m.ReplaceFullPath == nil {
			errs = append(errs, errRequired(p.Child("replaceFullPath"), "type ReplaceFullPath needs it"))
		}
		if m.ReplacePrefixMatch != nil {
			errs = append(errs, errForbidden(p.Child("replacePrefixMatch"), nil, "must be unset when type is ReplaceFullPath"))
		}
	case gatewayv1.PrefixMatchHTTPPathModifier:
		if m.ReplacePrefixMatch == nil {
			errs = append(errs, errRequired(p.Child("replacePrefixMatch"), "type ReplacePrefixMatch needs it"))
		}
		if m.ReplaceFullPath != nil {
			errs = append(errs, errForbidden(p.Child("replaceFullPath"), nil, "must be unset when type is ReplacePrefixMatch"))
		}
		if len(matches) != 1 || matches[0].Path == nil || matches[0].Path.Type == nil || *matches[0].Path.Type != gatewayv1.PathMatchPathPrefix {
			errs = append(errs, errInvalid(p.Child("type"), string(m.Type), "invalid path modifier", "ReplacePrefixMatch needs the rule to have exactly one match, of type PathPrefix"))
		}
	default:
		types := []gatewayv1.HTTPPathModifierType{gatewayv1.FullPathHTTPPathModifier, gatewayv1.PrefixMatchHTTPPathModifier}
		errs = append(errs, errNotSupported(p.Child("type"), string(m.Type), types))
	}
	if m.ReplaceFullPath != nil {
		errs = append(errs, validateMaxLength(p.Child("replaceFullPath"), *m.ReplaceFullPath, 1024)...)
	}
	if m.ReplacePrefixMatch != nil {
		errs = append(errs, validateMaxLength(p.Child("replacePrefixMatch"), *m.ReplacePrefixMatch, 1024)...)
	}
	return errs
}

// validateHeaderFilter checks a header modifier: set and add entries have
// unique token names and non-empty values, remove lists unique names.
func validateHeaderFilter(p *field.Path, h *gatewayv1.HTTPHeaderFilter) ErrorList {
	if h == nil {
		return nil
	}
	var errs ErrorList
	for _, list := range []struct {
		name    string
		headers []gatewayv1.HTTPHeader
	}{{"set", h.Set}, {"add", h.Add}} {
		lp := p.Child(list.name)
		errs = append(errs, validateMaxItems(lp, len(list.headers), 16)...)
		seen := map[string]int{}
		for i, hd := range list.headers {
			errs = append(errs, validateHeaderMatch(lp.Index(i), string(hd.Name), hd.Value, "Exact", 4096, seen, i)...)
		}
	}
	rp := p.Child("remove")
	errs = append(errs, validateMaxItems(rp, len(h.Remove), 16)...)
	seen := map[string]int{}
	for i, name := range h.Remove {
		switch {
		case name == "":
			errs = append(errs, errInvalid(rp.Index(i), name, "invalid header name", "must not be empty"))
		case !headerNameToken.MatchString(name):
			errs = append(errs, errInvalid(rp.Index(i), name, "invalid header name", "must be an HTTP token"))
		}
		if prev, dup := seen[name]; dup {
			errs = append(errs, errDuplicate(rp.Index(i), name, fmt.Sprintf("already listed as remove[%d]", prev)))
		}
		seen[name] = i
	}
	return errs
}

func validateMirrorFilter(p *field.Path, m *gatewayv1.HTTPRequestMirrorFilter) ErrorList {
	if m == nil {
		return nil
	}
	errs := validateBackendObjectRef(p.Child("backendRef"), &m.BackendRef)
	if m.Percent != nil && m.Fraction != nil {
		errs = append(errs, errForbidden(p.Child("fraction"), nil, "only one of percent or fraction may be set"))
	}
	if m.Percent != nil && (*m.Percent < 0 || *m.Percent > 100) {
		errs = append(errs, errInvalid(p.Child("percent"), *m.Percent, "invalid percentage", "must be between 0 and 100"))
	}
	if fr := m.Fraction; fr != nil {
		denom := int32(defaultMirrorDenom)
		if fr.Denominator != nil {
			denom = *fr.Denominator
		}
		switch {
		case fr.Numerator < 0:
			errs = append(errs, errInvalid(p.Child("fraction", "numerator"), fr.Numerator, "invalid value", "must not be negative"))
		case denom < 1:
			errs = append(errs, errInvalid(p.Child("fraction", "denominator"), denom, "invalid value", "must be at least 1"))
		case fr.Numerator > denom:
			errs = append(errs, errInvalid(p.Child("fraction", "numerator"), fr.Numerator, "invalid value", fmt.Sprintf("must not exceed the denominator %d", denom)))
		}
	}
	return errs
}

func validateCORSFilter(p *field.Path, c *gatewayv1.HTTPCORSFilter) ErrorList {
	if c == nil {
		return nil
	}
	var errs ErrorList
	op := p.Child("allowOrigins")
	errs = append(errs, validateMaxItems(op, len(c.AllowOrigins), 64)...)
	origins := make([]string, len(c.AllowOrigins))
	for i, o := range c.AllowOrigins {
		origins[i] = string(o)
		if len(o) > maxNameLength || !corsOrigin.MatchString(string(o)) {
			errs = append(errs, errInvalid(op.Index(i), string(o), "invalid origin", `must be "*" or scheme://host[:port] with http or https`))
		}
	}
	errs = append(errs, validateLoneWildcard(op, origins)...)
	mp := p.Child("allowMethods")
	errs = append(errs, validateMaxItems(mp, len(c.AllowMethods), 9)...)
	methods := make([]string, len(c.AllowMethods))
	allowed := []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "*"}
	for i, m := range c.AllowMethods {
		methods[i] = string(m)
		if !containsValue(allowed, string(m)) {
			errs = append(errs, errNotSupported(mp.Index(i), string(m), allowed))
		}
	}
	errs = append(errs, validateLoneWildcard(mp, methods)...)
	for _, list := range []struct {
		name    string
		headers []gatewayv1.HTTPHeaderName
	}{{"allowHeaders", c.AllowHeaders}, {"exposeHeaders", c.ExposeHeaders}} {
		lp := p.Child(list.name)
		errs = append(errs, validateMaxItems(lp, len(list.headers), 64)...)
		names := make([]string, len(list.headers))
		for i, h := range list.headers {
			names[i] = string(h)
			if !headerNameToken.MatchString(string(h)) || len(h) > 256 {
				errs = append(errs, errInvalid(lp.Index(i), string(h), "invalid header name", "must be an HTTP token"))
			}
		}
		if list.name == "allowHeaders" {
			errs = append(errs, validateLoneWildcard(lp, names)...)
		}
	}
	if c.MaxAge < 0 {
		errs = append(errs, errInvalid(p.Child("maxAge"), c.MaxAge, "invalid value", "must be at least 1"))
	}
	return errs
}

// validateLoneWildcard rejects "*" listed beside other values.
func validateLoneWildcard(p *field.Path, values []string) ErrorList {
	if len(values) < 2 {
		return nil
	}
	for i, v := range values {
		if v == "*" {
			return ErrorList{errInvalid(p.Index(i), v, "invalid value", `"*" cannot be combined with other values`)}
		}
	}
	return nil
}

// validateBackendObjectRef checks a backend reference; a reference to a
// core Service must name the port.
func validateBackendObjectRef(p *field.Path, r *gatewayv1.BackendObjectReference) ErrorList {
	var errs ErrorList
	group, kind := "", defaultRouteKind
	if r.Group != nil {
		group = string(*r.Group)
		errs = append(errs, validateGroup(p.Child("group"), group)...)
	}
	if r.Kind != nil {
		kind = string(*r.Kind)
		errs = append(errs, validateKindName(p.Child("kind"), kind)...)
	}
	errs = append(errs, validateObjectRefName(p.Child("name"), string(r.Name))...)
	if r.Namespace != nil {
		errs = append(errs, validateDNS1123Label(p.Child("namespace"), string(*r.Namespace), "invalid namespace")...)
	}
	if r.Port != nil {
		errs = append(errs, validatePort(p.Child("port"), int64(*r.Port))...)
	} else if group == "" && kind == "Service" {
		errs = append(errs, errRequired(p.Child("port"), "a Service backend needs a port"))
	}
	return errs
}

func validateBackendRef(p *field.Path, r *gatewayv1.BackendRef) ErrorList {
	errs := validateBackendObjectRef(p, &r.BackendObjectReference)
	if r.Weight != nil && (*r.Weight < 0 || *r.Weight > maxBackendWeight) {
		errs = append(errs, errInvalid(p.Child("weight"), *r.Weight, "invalid weight", "must be between 0 and 1000000"))
	}
	return errs
}

func validateSessionPersistence(p *field.Path, sp *gatewayv1.SessionPersistence) ErrorList {
	if sp == nil {
		return nil
	}
	var errs ErrorList
	if sp.SessionName != nil {
		errs = append(errs, validateMaxLength(p.Child("sessionName"), *sp.SessionName, 128)...)
	}
	if sp.AbsoluteTimeout != nil {
		errs = append(errs, validateGatewayDuration(p.Child("absoluteTimeout"), string(*sp.AbsoluteTimeout))...)
	}
	if sp.Type != nil {
		types := []gatewayv1.SessionPersistenceType{gatewayv1.CookieBasedSessionPersistence, gatewayv1.HeaderBasedSessionPersistence}
		if !containsValue(types, *sp.Type) {
			errs = append(errs, errNotSupported(p.Child("type"), string(*sp.Type), types))
		}
	}
	if cc := sp.CookieConfig; cc != nil && cc.LifetimeType != nil {
		types := []gatewayv1.CookieLifetimeType{gatewayv1.SessionCookieLifetimeType, gatewayv1.PermanentCookieLifetimeType}
		if !containsValue(types, *cc.LifetimeType) {
			errs = append(errs, errNotSupported(p.Child("cookieConfig", "lifetimeType"), string(*cc.LifetimeType), types))
		}
		if *cc.LifetimeType == gatewayv1.PermanentCookieLifetimeType && sp.AbsoluteTimeout == nil {
			errs = append(errs, errRequired(p.Child("absoluteTimeout"), "a Permanent cookie needs absoluteTimeout"))
		}
	}
	return errs
}

func validateGRPCRoute(obj *Object) ErrorList {
	s := obj.Spec.(*gatewayv1.GRPCRouteSpec)
	p := field.NewPath("spec")
	var errs ErrorList
	errs = append(errs, validateParentRefs(p.Child("parentRefs"), s.ParentRefs)...)
	errs = append(errs, validateRouteHostnames(p.Child("hostnames"), s.Hostnames)...)
	rules := p.Child("rules")
	errs = append(errs, validateMaxItems(rules, len(s.Rules), maxRouteRules)...)
	total := 0
	names := map[string]int{}
	for i := range s.Rules {
		r := &s.Rules[i]
		rp := rules.Index(i)
		total += len(r.Matches)
		errs = append(errs, validateRuleName(rp.Child("name"), r.Name, names, i)...)
		errs = append(errs, validateGRPCRule(rp, r)...)
	}
	if total > maxRouteMatchTotal {
		errs = append(errs, &FieldError{
			Type: ErrorTypeTooMany, Field: rules.String(), Value: fmt.Sprint(total),
			Summary: "too many matches", Detail: fmt.Sprintf("all rules together may have at most %d matches", maxRouteMatchTotal),
		})
	}
	return errs
}

func validateGRPCRule(p *field.Path, r *gatewayv1.GRPCRouteRule) ErrorList {
	var errs ErrorList
	matches := p.Child("matches")
	errs = append(errs, validateMaxItems(matches, len(r.Matches), maxRuleMatches)...)
	for i, m := range r.Matches {
		mp := matches.Index(i)
		if m.Method != nil {
			errs = append(errs, validateGRPCMethodMatch(mp.Child("method"), m.Method)...)
		}
		headers := mp.Child("headers")
		errs = append(errs, validateMaxItems(headers, len(m.Headers), maxHeaderMatches)...)
		seen := map[string]int{}
		for j, h := range m.Headers {
			typ := gatewayv1.GRPCHeaderMatchExact
			if h.Type != nil {
				typ = *h.Type
			}
			errs = append(errs, validateHeaderMatch(headers.Index(j), string(h.Name), h.Value, string(typ), 4096, seen, j)...)
		}
	}
	filters := p.Child("filters")
	errs = append(errs, validateMaxItems(filters, len(r.Filters), maxRuleFilters)...)
	seen := map[gatewayv1.GRPCRouteFilterType]int{}
	for i := range r.Filters {
		f := &r.Filters[i]
		fp := filters.Index(i)
		errs = append(errs, validateGRPCFilter(fp, f)...)
		if f.Type == gatewayv1.GRPCRouteFilterRequestHeaderModifier || f.Type == gatewayv1.GRPCRouteFilterResponseHeaderModifier {
			if prev, dup := seen[f.Type]; dup {
				errs = append(errs, errDuplicate(fp.Child("type"), string(f.Type), fmt.Sprintf("a rule may have only one %s filter, already at filters[%d]", f.Type, prev)))
			} else {
				seen[f.Type] = i
			}
		}
	}
	backends := p.Child("backendRefs")
	errs = append(errs, validateMaxItems(backends, len(r.BackendRefs), maxBackendRefs)...)
	for i := range r.BackendRefs {
		b := &r.BackendRefs[i]
		bp := backends.Index(i)
		errs = append(errs, validateBackendRef(bp, &b.BackendRef)...)
		errs = append(errs, validateMaxItems(bp.Child("filters"), len(b.Filters), maxRuleFilters)...)
		for j := range b.Filters {
			errs = append(errs, validateGRPCFilter(bp.Child("filters").Index(j), &b.Filters[j])...)
		}
	}
	errs = append(errs, validateSessionPersistence(p.Child("sessionPersistence"), r.SessionPersistence)...)
	return errs
}

// validateGRPCMethodMatch: at least one of service and method; for Exact
// matches they must be a proto service name and method name.
func validateGRPCMethodMatch(p *field.Path, m *gatewayv1.GRPCMethodMatch) ErrorList {
	var errs ErrorList
	typ := gatewayv1.GRPCMethodMatchExact
	if m.Type != nil {
		typ = *m.Type
	}
	if m.Service == nil && m.Method == nil {
		errs = append(errs, errRequired(p, "set service, method or both"))
	}
	for _, part := range []struct {
		name  string
		value *string
		re    *regexp.Regexp
		form  string
	}{
		{"service", m.Service, grpcService, "a proto service name such as foo.bar.Greeter"},
		{"method", m.Method, grpcMethod, "a proto method name such as SayHello"},
	} {
		if part.value == nil {
			continue
		}
		vp := p.Child(part.name)
		v := *part.value
		if len(v) > 1024 {
			errs = append(errs, errTooLong(vp, v, 1024))
			continue
		}
		switch typ {
		case gatewayv1.GRPCMethodMatchExact:
			if !part.re.MatchString(v) {
				errs = append(errs, errInvalid(vp, v, "invalid "+part.name, "must be "+part.form))
			}
		case gatewayv1.GRPCMethodMatchRegularExpression:
			errs = append(errs, validateRegex(vp, v)...)
		}
	}
	types := []gatewayv1.GRPCMethodMatchType{gatewayv1.GRPCMethodMatchExact, gatewayv1.GRPCMethodMatchRegularExpression}
	if !containsValue(types, typ) {
		errs = append(errs, errNotSupported(p.Child("type"), string(typ), types))
	}
	return errs
}

func validateGRPCFilter(p *field.Path, f *gatewayv1.GRPCRouteFilter) ErrorList {
	var errs ErrorList
	fields := []struct {
		typ  gatewayv1.GRPCRouteFilterType
		json string
		set  bool
	}{
		{gatewayv1.GRPCRouteFilterRequestHeaderModifier, "requestHeaderModifier", f.RequestHeaderModifier != nil},
		{gatewayv1.GRPCRouteFilterResponseHeaderModifier, "responseHeaderModifier", f.ResponseHeaderModifier != nil},
		{gatewayv1.GRPCRouteFilterRequestMirror, "requestMirror", f.RequestMirror != nil},
		{gatewayv1.GRPCRouteFilterExtensionRef, "extensionRef", f.ExtensionRef != nil},
	}
	types := make([]gatewayv1.GRPCRouteFilterType, len(fields))
	for i, fld := range fields {
		types[i] = fld.typ
	}
	if f.Type == "" {
		errs = append(errs, errRequired(p.Child("type"), ""))
	} else if !containsValue(types, f.Type) {
		errs = append(errs, errNotSupported(p.Child("type"), string(f.Type), types))
	}
	for _, fld := range fields {
		switch {
		case fld.set && fld.typ != f.Type:
			errs = append(errs, errForbidden(p.Child(fld.json), nil, fmt.Sprintf("must be unset when type is %q", f.Type)))
		case !fld.set && fld.typ == f.Type:
			errs = append(errs, errRequired(p.Child(fld.json), fmt.Sprintf("type %s needs it", f.Type)))
		}
	}
	errs = append(errs, validateHeaderFilter(p.Child("requestHeaderModifier"), f.RequestHeaderModifier)...)
	errs = append(errs, validateHeaderFilter(p.Child("responseHeaderModifier"), f.ResponseHeaderModifier)...)
	errs = append(errs, validateMirrorFilter(p.Child("requestMirror"), f.RequestMirror)...)
	errs = append(errs, validateExtensionRef(p.Child("extensionRef"), f.ExtensionRef)...)
	return errs
}
