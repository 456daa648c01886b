// Package flow paces provider calls to each deployment's limits: requests
// per minute, tokens per minute and concurrent calls, configured or learned
// from what the provider says (x-ratelimit-* headers, 429 with Retry-After).
// The budget lives in Redis, so every worker and API instance shares it; a
// call that must wait is told until when, and a queued task waits in the
// queue (holding no worker) with a slot reserved for it.
package flow

import (
	"fmt"
	"strings"
)

// Limits bound one deployment; zero is no limit.
type Limits struct {
	RPM        int `yaml:"rpm" json:"rpm,omitempty"`               // requests per minute
	TPM        int `yaml:"tpm" json:"tpm,omitempty"`               // tokens per minute, input and output
	Concurrent int `yaml:"concurrent" json:"concurrent,omitempty"` // calls at once
}

// Validate says which limit is wrong, naming where it was set.
func (l Limits) Validate(where string) error {
	var bad []string
	if l.RPM < 0 {
		bad = append(bad, fmt.Sprintf("rpm is %d", l.RPM))
	}
	if l.TPM < 0 {
		bad = append(bad, fmt.Sprintf("tpm is %d", l.TPM))
	}
	if l.Concurrent < 0 {
		bad = append(bad, fmt.Sprintf("concurrent is %d", l.Concurrent))
	}
	if len(bad) > 0 {
		return fmt.Errorf("%s: %s; a limit is a positive number, or 0 (or absent) for none", where, strings.Join(bad, ", "))
	}
	return nil
}

// Set reports whether any limit is configured.
func (l Limits) Set() bool { return l.RPM > 0 || l.TPM > 0 || l.Concurrent > 0 }
