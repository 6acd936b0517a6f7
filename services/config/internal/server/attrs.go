package server

import (
	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ambitmesh/ambit/pkg/spiffe"
)

const (
	kindNode         = spiffe.KindNode
	kindControlPlane = spiffe.KindControlPlane
)

func attrMethod(m string) attribute.KeyValue { return attribute.String("method", m) }
func attrKind(k string) attribute.KeyValue   { return attribute.String("kind", k) }
func attrResult(r string) attribute.KeyValue { return attribute.String("result", r) }
func attrReason(c codes.Code) attribute.KeyValue {
	return attribute.String("reason", c.String())
}

func statusCode(err error) codes.Code {
	st, _ := status.FromError(err)
	return st.Code()
}
