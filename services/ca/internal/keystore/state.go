package keystore

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Keys under the CA's prefix (DESIGN §3: outside the resource prefix, so
// nothing here reaches the change feed).
const (
	Prefix   = "/ambit/v1/_ca/"
	StateKey = Prefix + "state"
)

// schemaVersion is the layout of State; a CA that finds a newer one refuses
// to touch it rather than drop fields it does not know.
const schemaVersion = 1

// Rotation phases as stored.
const (
	PhaseIdle       = ""
	PhaseRootAdded  = "root-added"
	PhaseSigningNew = "signing-new"
)

// State is the CA's whole persistent state, one JSON document at StateKey,
// changed only by compare-and-swap on its mod revision. Keeping it in one
// key makes every change (a root added, the active authority switched, a
// root dropped) atomic for all replicas.
type State struct {
	Schema      int    `json:"schema"`
	TrustDomain string `json:"trustDomain"`
	// KEKID identifies the key-encryption key that sealed the keys.
	KEKID string `json:"kekId"`
	// BundleVersion increases whenever the trusted roots or token keys
	// change (not on other edits), so watchers see a new bundle only when
	// there is one.
	BundleVersion uint64 `json:"bundleVersion"`
	// Authorities are the trusted authorities, oldest first.
	Authorities []AuthorityRecord `json:"authorities"`
	// Active is the id of the authority that signs.
	Active   string         `json:"active"`
	Rotation RotationRecord `json:"rotation"`
	// TokenKey signs node bearer tokens.
	TokenKey SealedKey `json:"tokenKey"`
}

// AuthorityRecord is one authority as stored, its key sealed.
type AuthorityRecord struct {
	ID     string `json:"id"`
	Origin string `json:"origin"`
	// ChainPEM: signing certificate first, root last.
	ChainPEM string `json:"chainPem"`
	// Key is the PKCS#8 signing key sealed with the KEK.
	Key string `json:"key"`
	// MaxIssuedTTL is the longest lifetime of a certificate this authority
	// has signed (seconds), recorded before such a certificate is returned,
	// so the old root is kept exactly as long as its certificates live.
	MaxIssuedTTL int64     `json:"maxIssuedTtl"`
	CreatedAt    time.Time `json:"createdAt"`
}

// RotationRecord is the rotation in progress, if any.
type RotationRecord struct {
	Phase string `json:"phase,omitempty"`
	Old   string `json:"old,omitempty"`
	New   string `json:"new,omitempty"`
	// RequiredVersion is the first bundle version holding the new root.
	RequiredVersion uint64    `json:"requiredVersion,omitempty"`
	StartedAt       time.Time `json:"startedAt,omitzero"`
	SwitchedAt      time.Time `json:"switchedAt,omitzero"`
	// DropAt is when the old root leaves the bundle.
	DropAt time.Time `json:"dropAt,omitzero"`
}

// SealedKey is a sealed PKCS#8 key with its id.
type SealedKey struct {
	ID  string `json:"id"`
	Key string `json:"key"`
}

// Authority is an authority in the clear.
type Authority struct {
	Record AuthorityRecord
	Material
}

// Snapshot is the decoded, decrypted state at one etcd revision. It is
// immutable: changes produce a new Snapshot.
type Snapshot struct {
	State    State
	Revision int64
	// Authorities by id, and in State order.
	ByID    map[string]*Authority
	Ordered []*Authority
	Active  *Authority
	// TokenKey signs node bearer tokens; TokenKeyID names it (JWT kid).
	TokenKey   *ecdsa.PrivateKey
	TokenKeyID string
}

// Roots are the trusted roots, oldest first.
func (s *Snapshot) Roots() []*x509.Certificate {
	out := make([]*x509.Certificate, len(s.Ordered))
	for i, a := range s.Ordered {
		out[i] = a.Root()
	}
	return out
}

func authorityAAD(id string) string { return "ambit-ca/v1/authority/" + id }
func tokenKeyAAD(id string) string  { return "ambit-ca/v1/token-key/" + id }

// SealAuthority turns material into a record sealed with kek.
func SealAuthority(kek *KEK, m *Material, now time.Time) (AuthorityRecord, error) {
	der, err := x509.MarshalPKCS8PrivateKey(m.Key)
	if err != nil {
		return AuthorityRecord{}, fmt.Errorf("keystore: marshal signing key: %w", err)
	}
	id := AuthorityID(m.Signing())
	return AuthorityRecord{
		ID:        id,
		Origin:    m.Origin,
		ChainPEM:  string(EncodeCertificates(m.Chain)),
		Key:       kek.seal(der, authorityAAD(id)),
		CreatedAt: now.UTC(),
	}, nil
}

// newTokenKey generates and seals a token-signing key.
func newTokenKey(kek *KEK) (SealedKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return SealedKey{}, fmt.Errorf("keystore: generate token key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return SealedKey{}, err
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return SealedKey{}, err
	}
	id := AuthorityID(&x509.Certificate{Raw: pub})
	return SealedKey{ID: id, Key: kek.seal(der, tokenKeyAAD(id))}, nil
}

// NewState returns the first state: one active authority and a token key.
func NewState(kek *KEK, td spiffeid.TrustDomain, m *Material, now time.Time) (State, error) {
	rec, err := SealAuthority(kek, m, now)
	if err != nil {
		return State{}, err
	}
	tk, err := newTokenKey(kek)
	if err != nil {
		return State{}, err
	}
	return State{
		Schema:        schemaVersion,
		TrustDomain:   td.Name(),
		KEKID:         kek.ID(),
		BundleVersion: 1,
		Authorities:   []AuthorityRecord{rec},
		Active:        rec.ID,
		TokenKey:      tk,
	}, nil
}

// decode parses and decrypts a stored state.
func decode(kek *KEK, td spiffeid.TrustDomain, raw []byte, rev int64) (*Snapshot, error) {
	var st State
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("keystore: decode %s: %w", StateKey, err)
	}
	if st.Schema != schemaVersion {
		return nil, fmt.Errorf("keystore: %s has schema %d; this CA understands %d", StateKey, st.Schema, schemaVersion)
	}
	if st.TrustDomain != td.Name() {
		return nil, fmt.Errorf("keystore: stored CA is for trust domain %q, configured %q", st.TrustDomain, td.Name())
	}
	if st.KEKID != kek.ID() {
		return nil, fmt.Errorf("keystore: the CA keys were sealed with key-encryption key %s, configured key is %s", st.KEKID, kek.ID())
	}
	snap := &Snapshot{State: st, Revision: rev, ByID: map[string]*Authority{}}
	for _, rec := range st.Authorities {
		a, err := openAuthority(kek, rec)
		if err != nil {
			return nil, err
		}
		snap.ByID[rec.ID] = a
		snap.Ordered = append(snap.Ordered, a)
	}
	snap.Active = snap.ByID[st.Active]
	if snap.Active == nil {
		return nil, fmt.Errorf("keystore: active authority %q is not among the trusted ones", st.Active)
	}
	der, err := kek.open(st.TokenKey.Key, tokenKeyAAD(st.TokenKey.ID))
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("keystore: token key: %w", err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("keystore: token key is %T, want ECDSA", k)
	}
	snap.TokenKey, snap.TokenKeyID = ek, st.TokenKey.ID
	return snap, nil
}

func openAuthority(kek *KEK, rec AuthorityRecord) (*Authority, error) {
	chain, err := ParseCertificates([]byte(rec.ChainPEM))
	if err != nil {
		return nil, fmt.Errorf("keystore: authority %s: %w", rec.ID, err)
	}
	if AuthorityID(chain[0]) != rec.ID {
		return nil, fmt.Errorf("keystore: authority %s: id does not match its certificate", rec.ID)
	}
	der, err := kek.open(rec.Key, authorityAAD(rec.ID))
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("keystore: authority %s key: %w", rec.ID, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("keystore: authority %s key is %T", rec.ID, k)
	}
	if !publicKeysEqual(chain[0].PublicKey, signer.Public()) {
		return nil, errors.New("keystore: authority " + rec.ID + ": key does not match certificate")
	}
	return &Authority{Record: rec, Material: Material{Chain: chain, Key: signer, Origin: rec.Origin}}, nil
}
