// Package spiffetest mints throwaway CAs and X.509-SVIDs so tests can run
// real mTLS handshakes without the CA service: a root per trust domain
// (foreign ones too), intermediate chains, and certificates with any
// validity window, expired included. Keys are ECDSA P-256, as in production.
//
// Helpers take a testing.TB and fail the test on error, so call them from
// the test goroutine.
package spiffetest
