package demo

import (
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"

	"github.com/ambitmesh/ambit/pkg/spiffe"
)

func loadBundle(path string) (*x509bundle.Bundle, error) {
	return x509bundle.Load(spiffe.DefaultTrustDomain(), path)
}
