// Package auth holds SIGANTENG's API keys: their format, their store in
// Redis (a hash of each key, never the key), and the caller a request acts
// as, which every per-task operation checks.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"math/big"
	"strings"
)

// KeyPrefix starts every key, so that secret scanners (and people) can
// recognise one in a log, a commit or a paste.
const KeyPrefix = "sgk_"

// The parts of a key after the prefix: an id shown in listings and used to
// find the key, the secret, and a checksum that lets scanners and the API
// tell a real key from a random string without asking Redis.
const (
	idLen       = 12
	secretLen   = 32
	checksumLen = 6
	keyLen      = len(KeyPrefix) + idLen + secretLen + checksumLen
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// ErrMalformed is returned by ParseKey for anything that is not a key.
var ErrMalformed = errors.New("auth: not a SIGANTENG API key")

// Key is a parsed API key.
type Key struct {
	ID   string // KeyPrefix and the id part: shown in listings, safe to log
	hash string // SHA-256 of the whole key, hex
}

// NewKey makes a random key and returns it in full (to be shown once) and
// parsed.
func NewKey() (string, Key, error) {
	body, err := randomBase62(idLen + secretLen)
	if err != nil {
		return "", Key{}, err
	}
	raw := KeyPrefix + body + checksum(KeyPrefix+body)
	k, err := ParseKey(raw)
	return raw, k, err
}

// ParseKey checks a key's shape and checksum. It reads nothing else, so a
// malformed key is refused without a Redis call.
func ParseKey(raw string) (Key, error) {
	if len(raw) != keyLen || !strings.HasPrefix(raw, KeyPrefix) {
		return Key{}, ErrMalformed
	}
	for i := len(KeyPrefix); i < len(raw); i++ {
		if strings.IndexByte(base62, raw[i]) < 0 {
			return Key{}, ErrMalformed
		}
	}
	body, sum := raw[:keyLen-checksumLen], raw[keyLen-checksumLen:]
	if checksum(body) != sum {
		return Key{}, ErrMalformed
	}
	h := sha256.Sum256([]byte(raw))
	return Key{ID: raw[:len(KeyPrefix)+idLen], hash: hex.EncodeToString(h[:])}, nil
}

// checksum is the CRC-32 of s in base62, padded to checksumLen.
func checksum(s string) string {
	n := big.NewInt(int64(crc32.ChecksumIEEE([]byte(s))))
	out := make([]byte, checksumLen)
	base := big.NewInt(62)
	mod := new(big.Int)
	for i := checksumLen - 1; i >= 0; i-- {
		n.DivMod(n, base, mod)
		out[i] = base62[mod.Int64()]
	}
	return string(out)
}

func randomBase62(n int) (string, error) {
	out := make([]byte, n)
	max := big.NewInt(62)
	for i := range out {
		v, err := rand.Int(rand.Reader, max)
		if err != nil {
			return "", err
		}
		out[i] = base62[v.Int64()]
	}
	return string(out), nil
}
