package provider

import (
	"regexp"
	"strings"
)

// tokenShapes match credentials by their look, for messages that quote a key
// we were not told about (a provider echoing part of a wrong key, say).
var tokenShapes = regexp.MustCompile(`(?i)(\bsk-[a-z0-9_\-*.]{6,}|\bhf_[a-z0-9]{6,}|\bsgk_[a-z0-9]{6,}|\bwhsec_[a-z0-9+/=]{6,}|\bbearer\s+[a-z0-9_\-.~+/=*]{6,})`)

// Redact removes every secret and anything shaped like an API key from s.
func Redact(s string, secrets ...string) string {
	for _, secret := range secrets {
		if len(secret) >= 4 {
			s = strings.ReplaceAll(s, secret, "[REDACTED]")
		}
	}
	return tokenShapes.ReplaceAllString(s, "[REDACTED]")
}
