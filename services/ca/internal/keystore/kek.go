package keystore

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// KEKSize is the size of the key-encryption key: AES-256.
const KEKSize = 32

// KEK is the key-encryption key that seals the CA's private keys in etcd.
// It never leaves the CA's memory and is never stored in etcd; replicas
// share it through the same file or environment variable.
type KEK struct {
	aead cipher.AEAD
	id   string
}

// ParseKEK accepts the key as 32 raw bytes (binary: at least one byte not
// printable ASCII), or as base64 (standard or URL alphabet, padded or not)
// or hex text of 32 bytes; surrounding white space is ignored. Printable
// text is never taken as raw key bytes, so a 32-character password or the
// hex of a 16-byte key is refused instead of silently becoming a weak key.
func ParseKEK(b []byte) (*KEK, error) {
	raw := b
	if len(raw) != KEKSize || isPrintable(raw) {
		text := strings.TrimSpace(string(b))
		raw = nil
		for _, dec := range []func(string) ([]byte, error){
			hex.DecodeString,
			base64.StdEncoding.DecodeString, base64.RawStdEncoding.DecodeString,
			base64.URLEncoding.DecodeString, base64.RawURLEncoding.DecodeString,
		} {
			if d, err := dec(text); err == nil && len(d) == KEKSize {
				raw = d
				break
			}
		}
		if raw == nil {
			return nil, fmt.Errorf("keystore: key-encryption key must be %d bytes (raw, hex or base64)", KEKSize)
		}
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("keystore: key-encryption key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("keystore: key-encryption key: %w", err)
	}
	// The id lets the CA tell a wrong KEK from corrupted data. It is a hash
	// of a 256-bit random key under a fixed label, so it reveals nothing.
	sum := sha256.Sum256(append([]byte("ambit-ca kek id\x00"), raw...))
	return &KEK{aead: aead, id: hex.EncodeToString(sum[:8])}, nil
}

// LoadKEK reads the key from file, or else takes value (from the
// environment). Exactly one must be given.
func LoadKEK(file, value string) (*KEK, error) {
	switch {
	case file != "" && value != "":
		return nil, errors.New("keystore: key-encryption key given both as a file and as a value; give one")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("keystore: read key-encryption key: %w", err)
		}
		return ParseKEK(b)
	case value != "":
		return ParseKEK([]byte(value))
	}
	return nil, errors.New("keystore: no key-encryption key configured")
}

// NewKEK returns a random key, base64 encoded, for operators and tests.
func NewKEK() string {
	b := make([]byte, KEKSize)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// ID identifies the key without revealing it.
func (k *KEK) ID() string { return k.id }

// seal encrypts plain with AES-GCM, binding it to aad (what the blob is, so
// one sealed key cannot be swapped in for another), and returns
// base64(nonce || ciphertext).
func (k *KEK) seal(plain []byte, aad string) string {
	nonce := make([]byte, k.aead.NonceSize())
	_, _ = rand.Read(nonce)
	out := k.aead.Seal(nonce, nonce, plain, []byte(aad))
	return base64.StdEncoding.EncodeToString(out)
}

// open reverses seal.
func (k *KEK) open(sealed, aad string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil {
		return nil, fmt.Errorf("keystore: sealed key is not base64: %w", err)
	}
	n := k.aead.NonceSize()
	if len(b) < n+k.aead.Overhead() {
		return nil, errors.New("keystore: sealed key too short")
	}
	plain, err := k.aead.Open(nil, b[:n], b[n:], []byte(aad))
	if err != nil {
		return nil, fmt.Errorf("keystore: cannot decrypt %s (wrong key-encryption key, or tampered data): %w", aad, err)
	}
	return plain, nil
}

func isPrintable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}
