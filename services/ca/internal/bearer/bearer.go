// Package bearer mints and verifies node bearer tokens: the credential
// Istio's ztunnel sends as "authorization: Bearer <token>" over TLS
// instead of a client certificate (DESIGN §2).
//
// A node token is a compact JWS (JWT) signed with ES256 by a key the CA
// keeps sealed beside its authorities (keystore): header {alg: ES256, typ:
// JWT, kid}, claims {iss: spiffe://<td>/ambit/ca, sub: the node's SPIFFE
// ID, aud: ["ambit-control-plane"], iat, nbf, exp, jti}. The CA mints one
// only for a caller presenting that node's client certificate, for at most
// 24h and never beyond the certificate's expiry, so a token is a
// short-lived, bearer-usable copy of a node certificate and nothing more: it
// authorizes exactly what the node's certificate does, and it cannot be
// used to mint another. The public keys travel in the trust bundle
// (TrustBundle.token_keys), so xds can verify tokens without the CA.
//
// Verification accepts only ES256 with a known kid (no "none", no HMAC
// confusion), requires iss, aud, exp and a node subject of the trust
// domain. There is no revocation list; the lifetime bounds the exposure.
package bearer

import (
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ambitmesh/ambit/pkg/spiffe"
)

// Audience is the aud claim of every node token.
const Audience = "ambit-control-plane"

// Lifetimes.
const (
	DefaultTTL = time.Hour
	MaxTTL     = 24 * time.Hour
	// maxTokenBytes bounds what is parsed at all.
	maxTokenBytes = 4096
)

// ErrInvalid wraps every verification failure.
var ErrInvalid = errors.New("bearer: invalid node token")

// Issuer returns the iss claim for td: the CA's own SPIFFE ID.
func Issuer(td spiffeid.TrustDomain) string {
	return "spiffe://" + td.Name() + "/ambit/" + string(spiffe.ComponentCA)
}

// Mint signs a token for node valid from now until exp.
func Mint(key *ecdsa.PrivateKey, kid string, node spiffe.Identity, now, exp time.Time) (string, error) {
	if node.Kind() != spiffe.KindNode {
		return "", fmt.Errorf("bearer: %s is not a node identity", node)
	}
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	claims := jwt.RegisteredClaims{
		Issuer:    Issuer(node.TrustDomain()),
		Subject:   node.String(),
		Audience:  jwt.ClaimStrings{Audience},
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
		ExpiresAt: jwt.NewNumericDate(exp),
		ID:        base64.RawURLEncoding.EncodeToString(jti),
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	tok.Header["kid"] = kid
	return tok.SignedString(key)
}

// KeyFunc returns the public key with id kid, or nil if unknown.
type KeyFunc func(kid string) *ecdsa.PublicKey

// Verify checks a token and returns the node it names and its expiry.
func Verify(token string, keys KeyFunc, td spiffeid.TrustDomain, now time.Time) (spiffe.Identity, time.Time, error) {
	if len(token) > maxTokenBytes {
		return spiffe.Identity{}, time.Time{}, fmt.Errorf("%w: longer than %d bytes", ErrInvalid, maxTokenBytes)
	}
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodES256.Alg()}),
		jwt.WithIssuer(Issuer(td)),
		jwt.WithAudience(Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	var claims jwt.RegisteredClaims
	_, err := parser.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		key := keys(kid)
		if key == nil {
			return nil, fmt.Errorf("unknown key id %q", kid)
		}
		return key, nil
	})
	if err != nil {
		return spiffe.Identity{}, time.Time{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	id, err := spiffe.Parse(claims.Subject)
	if err != nil {
		return spiffe.Identity{}, time.Time{}, fmt.Errorf("%w: subject: %w", ErrInvalid, err)
	}
	if id.Kind() != spiffe.KindNode || id.TrustDomain() != td {
		return spiffe.Identity{}, time.Time{}, fmt.Errorf("%w: subject %s is not a node of %s", ErrInvalid, id, td.Name())
	}
	return id, claims.ExpiresAt.Time, nil
}
