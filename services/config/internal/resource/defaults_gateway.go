package resource

import (
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// The Gateway API CRDs declare OpenAPI defaults that the Kubernetes API
// server writes into every object (parentRef group/kind, backendRef
// kind/weight, the catch-all path match, listener allowedRoutes, ...).
// Consumers of the stored form rely on them being present, so Decode fills
// them the same way. An empty list is defaulted like a missing one: the
// stored JSON omits empty lists, and a round trip must not change the
// object.

func ptr[T any](v T) *T { return &v }

const (
	defaultRouteKind     = "Service"
	defaultParentKind    = "Gateway"
	defaultCertKind      = "Secret"
	defaultBackendWeight = 1
	defaultRedirectCode  = 302
	defaultMirrorDenom   = 100
	defaultCORSMaxAge    = 5
)

func defaultGateway(o *Object) {
	s := o.Spec.(*gatewayv1.GatewaySpec)
	for i := range s.Listeners {
		l := &s.Listeners[i]
		if l.AllowedRoutes == nil {
			l.AllowedRoutes = &gatewayv1.AllowedRoutes{}
		}
		if l.AllowedRoutes.Namespaces == nil {
			l.AllowedRoutes.Namespaces = &gatewayv1.RouteNamespaces{}
		}
		if l.AllowedRoutes.Namespaces.From == nil {
			l.AllowedRoutes.Namespaces.From = ptr(gatewayv1.NamespacesFromSame)
		}
		for j := range l.AllowedRoutes.Kinds {
			if l.AllowedRoutes.Kinds[j].Group == nil {
				l.AllowedRoutes.Kinds[j].Group = ptr(gatewayv1.Group(GroupGateway))
			}
		}
		if l.TLS != nil {
			if l.TLS.Mode == nil {
				l.TLS.Mode = ptr(gatewayv1.TLSModeTerminate)
			}
			for j := range l.TLS.CertificateRefs {
				defaultSecretRef(&l.TLS.CertificateRefs[j])
			}
		}
	}
	for i := range s.Addresses {
		if s.Addresses[i].Type == nil {
			s.Addresses[i].Type = ptr(gatewayv1.IPAddressType)
		}
	}
	if s.AllowedListeners != nil {
		if s.AllowedListeners.Namespaces == nil {
			s.AllowedListeners.Namespaces = &gatewayv1.ListenerNamespaces{}
		}
		if s.AllowedListeners.Namespaces.From == nil {
			s.AllowedListeners.Namespaces.From = ptr(gatewayv1.NamespacesFromNone)
		}
	}
	if s.TLS != nil {
		if s.TLS.Backend != nil && s.TLS.Backend.ClientCertificateRef != nil {
			defaultSecretRef(s.TLS.Backend.ClientCertificateRef)
		}
		if f := s.TLS.Frontend; f != nil {
			defaultFrontendValidation(f.Default.Validation)
			for i := range f.PerPort {
				defaultFrontendValidation(f.PerPort[i].TLS.Validation)
			}
		}
	}
}

func defaultFrontendValidation(v *gatewayv1.FrontendTLSValidation) {
	if v != nil && v.Mode == "" {
		v.Mode = gatewayv1.AllowValidOnly
	}
}

func defaultSecretRef(r *gatewayv1.SecretObjectReference) {
	if r.Group == nil {
		r.Group = ptr(gatewayv1.Group(""))
	}
	if r.Kind == nil {
		r.Kind = ptr(gatewayv1.Kind(defaultCertKind))
	}
}

func defaultParentRefs(refs []gatewayv1.ParentReference) {
	for i := range refs {
		if refs[i].Group == nil {
			refs[i].Group = ptr(gatewayv1.Group(GroupGateway))
		}
		if refs[i].Kind == nil {
			refs[i].Kind = ptr(gatewayv1.Kind(defaultParentKind))
		}
	}
}

func defaultBackendObjectRef(r *gatewayv1.BackendObjectReference) {
	if r.Group == nil {
		r.Group = ptr(gatewayv1.Group(""))
	}
	if r.Kind == nil {
		r.Kind = ptr(gatewayv1.Kind(defaultRouteKind))
	}
}

func defaultBackendRef(r *gatewayv1.BackendRef) {
	defaultBackendObjectRef(&r.BackendObjectReference)
	if r.Weight == nil {
		r.Weight = ptr(int32(defaultBackendWeight))
	}
}

func defaultMirror(m *gatewayv1.HTTPRequestMirrorFilter) {
	if m == nil {
		return
	}
	defaultBackendObjectRef(&m.BackendRef)
	if m.Fraction != nil && m.Fraction.Denominator == nil {
		m.Fraction.Denominator = ptr(int32(defaultMirrorDenom))
	}
}

func defaultHTTPFilters(filters []gatewayv1.HTTPRouteFilter) {
	for i := range filters {
		f := &filters[i]
		defaultMirror(f.RequestMirror)
		if f.RequestRedirect != nil && f.RequestRedirect.StatusCode == nil {
			f.RequestRedirect.StatusCode = ptr(defaultRedirectCode)
		}
		if f.CORS != nil && f.CORS.MaxAge == 0 {
			f.CORS.MaxAge = defaultCORSMaxAge
		}
		if f.ExternalAuth != nil {
			defaultBackendObjectRef(&f.ExternalAuth.BackendRef)
		}
	}
}

func defaultPathMatch() *gatewayv1.HTTPPathMatch {
	return &gatewayv1.HTTPPathMatch{Type: ptr(gatewayv1.PathMatchPathPrefix), Value: ptr("/")}
}

func defaultHTTPRoute(o *Object) {
	s := o.Spec.(*gatewayv1.HTTPRouteSpec)
	defaultParentRefs(s.ParentRefs)
	if len(s.Rules) == 0 {
		s.Rules = []gatewayv1.HTTPRouteRule{{}}
	}
	for i := range s.Rules {
		r := &s.Rules[i]
		if len(r.Matches) == 0 {
			r.Matches = []gatewayv1.HTTPRouteMatch{{}}
		}
		for j := range r.Matches {
			m := &r.Matches[j]
			if m.Path == nil {
				m.Path = defaultPathMatch()
			}
			if m.Path.Type == nil {
				m.Path.Type = ptr(gatewayv1.PathMatchPathPrefix)
			}
			if m.Path.Value == nil {
				m.Path.Value = ptr("/")
			}
			for k := range m.Headers {
				if m.Headers[k].Type == nil {
					m.Headers[k].Type = ptr(gatewayv1.HeaderMatchExact)
				}
			}
			for k := range m.QueryParams {
				if m.QueryParams[k].Type == nil {
					m.QueryParams[k].Type = ptr(gatewayv1.QueryParamMatchExact)
				}
			}
		}
		defaultHTTPFilters(r.Filters)
		for j := range r.BackendRefs {
			defaultBackendRef(&r.BackendRefs[j].BackendRef)
			defaultHTTPFilters(r.BackendRefs[j].Filters)
		}
	}
}

func defaultGRPCFilters(filters []gatewayv1.GRPCRouteFilter) {
	for i := range filters {
		defaultMirror(filters[i].RequestMirror)
	}
}

func defaultGRPCRoute(o *Object) {
	s := o.Spec.(*gatewayv1.GRPCRouteSpec)
	defaultParentRefs(s.ParentRefs)
	for i := range s.Rules {
		r := &s.Rules[i]
		for j := range r.Matches {
			m := &r.Matches[j]
			if m.Method != nil && m.Method.Type == nil {
				m.Method.Type = ptr(gatewayv1.GRPCMethodMatchExact)
			}
			for k := range m.Headers {
				if m.Headers[k].Type == nil {
					m.Headers[k].Type = ptr(gatewayv1.GRPCHeaderMatchExact)
				}
			}
		}
		defaultGRPCFilters(r.Filters)
		for j := range r.BackendRefs {
			defaultBackendRef(&r.BackendRefs[j].BackendRef)
			defaultGRPCFilters(r.BackendRefs[j].Filters)
		}
	}
}
