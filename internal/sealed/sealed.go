// Package sealed encrypts small secrets kept at rest in Redis (a webhook URL
// with its receiver's token), so that a look at Redis, its dumps or the queue
// dashboard shows nothing usable. The key is derived from a server secret
// that API and workers share (WEBHOOK_SECRET).
package sealed

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
)

// prefix marks a sealed value, so a plain one (written before sealing
// existed) is told apart.
const prefix = "sealed:v1:"

// ErrUnreadable is returned for a value sealed under another secret, or
// damaged.
var ErrUnreadable = errors.New("sealed: value cannot be opened (was the secret changed?)")

// Box seals and opens values under one key.
type Box struct{ aead cipher.AEAD }

// New returns a box whose key is derived from secret, for the purpose
// named (a different purpose gives a different key).
func New(secret, purpose string) (*Box, error) {
	if secret == "" {
		return nil, errors.New("sealed: empty secret")
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("siganteng sealed " + purpose))
	block, err := aes.NewCipher(mac.Sum(nil))
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Box{aead: aead}, nil
}

// Seal encrypts plain with a fresh nonce.
func (b *Box) Seal(plain string) string {
	nonce := make([]byte, b.aead.NonceSize())
	_, _ = rand.Read(nonce) // never fails (crypto/rand)
	out := b.aead.Seal(nonce, nonce, []byte(plain), nil)
	return prefix + base64.RawURLEncoding.EncodeToString(out)
}

// Open decrypts a sealed value; a value without the sealed prefix is
// returned as it is.
func (b *Box) Open(value string) (string, error) {
	rest, ok := strings.CutPrefix(value, prefix)
	if !ok {
		return value, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(rest)
	n := b.aead.NonceSize()
	if err != nil || len(raw) < n {
		return "", ErrUnreadable
	}
	plain, err := b.aead.Open(nil, raw[:n], raw[n:], nil)
	if err != nil {
		return "", ErrUnreadable
	}
	return string(plain), nil
}

// IsSealed reports whether value was sealed.
func IsSealed(value string) bool { return strings.HasPrefix(value, prefix) }
