package bearer_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/ambitmesh/ambit/pkg/spiffe"

	"github.com/ambitmesh/ambit/services/ca/internal/bearer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestTokens(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	node := spiffe.MustParse("spiffe://cluster.local/ambit/node/n1")
	td := node.TrustDomain()
	now := time.Now()
	keys := func(kid string) *ecdsa.PublicKey {
		if kid == "k1" {
			return &key.PublicKey
		}
		return nil
	}
	tok, err := bearer.Mint(key, "k1", node, now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	id, exp, err := bearer.Verify(tok, keys, td, now)
	if err != nil || id != node || !exp.Equal(now.Add(time.Hour).Truncate(time.Second)) {
		t.Fatalf("Verify = %s, %s, %v", id, exp, err)
	}
	if _, err := bearer.Mint(key, "k1", spiffe.MustParse("spiffe://cluster.local/ns/a/sa/b"), now, now.Add(time.Hour)); err == nil {
		t.Error("minted a token for a workload")
	}

	sign := func(method jwt.SigningMethod, k any, kid string, claims jwt.RegisteredClaims) string {
		tk := jwt.NewWithClaims(method, claims)
		tk.Header["kid"] = kid
		s, err := tk.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	base := jwt.RegisteredClaims{
		Issuer: bearer.Issuer(td), Subject: node.String(), Audience: jwt.ClaimStrings{bearer.Audience},
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	}
	with := func(f func(*jwt.RegisteredClaims)) jwt.RegisteredClaims { c := base; f(&c); return c }
	bad := map[string]string{
		"expired":      tok,
		"unknown kid":  sign(jwt.SigningMethodES256, key, "k2", base),
		"other key":    sign(jwt.SigningMethodES256, other, "k1", base),
		"alg none":     sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "k1", base),
		"hmac":         sign(jwt.SigningMethodHS256, []byte("secret"), "k1", base),
		"wrong issuer": sign(jwt.SigningMethodES256, key, "k1", with(func(c *jwt.RegisteredClaims) { c.Issuer = "spiffe://cluster.local/ambit/xds" })),
		"wrong aud":    sign(jwt.SigningMethodES256, key, "k1", with(func(c *jwt.RegisteredClaims) { c.Audience = jwt.ClaimStrings{"istio-ca"} })),
		"no exp":       sign(jwt.SigningMethodES256, key, "k1", with(func(c *jwt.RegisteredClaims) { c.ExpiresAt = nil })),
		"workload sub": sign(jwt.SigningMethodES256, key, "k1", with(func(c *jwt.RegisteredClaims) { c.Subject = "spiffe://cluster.local/ns/a/sa/b" })),
		"foreign sub":  sign(jwt.SigningMethodES256, key, "k1", with(func(c *jwt.RegisteredClaims) { c.Subject = "spiffe://evil.example/ambit/node/n1" })),
		"garbage":      "a.b.c",
		"huge":         strings.Repeat("a", 5000),
	}
	for name, tk := range bad {
		at := now
		if name == "expired" {
			at = now.Add(2 * time.Hour)
		}
		if _, _, err := bearer.Verify(tk, keys, td, at); !errors.Is(err, bearer.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}
