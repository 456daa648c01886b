package provider

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// WaitError says a call was not made because its deployment has no budget
// now (its requests, tokens or concurrent calls per its limits, or a pause
// the provider asked for with a 429). It is flow control, not a failure:
// the caller waits until Until and tries again, using up no retry.
type WaitError struct {
	Deployment string
	// Reason is what is spent: "requests", "tokens", "concurrency", or
	// "provider" when the provider itself answered 429.
	Reason string
	Until  time.Time
	// Reserved is true when the deployment holds a call slot at Until for
	// this task: the task must come back for it, not try elsewhere.
	Reserved bool
}

func (e *WaitError) Error() string {
	return fmt.Sprintf("deployment %s has no %s budget until %s", e.Deployment, e.Reason, e.Until.UTC().Format(time.RFC3339Nano))
}

type deferKey struct{}

// WithDeferredWaits marks ctx as the attempt of queued task id: a wait for
// budget longer than a moment comes back as a *WaitError at once, so the
// task waits in the queue and holds no worker, and the slot reserved for
// it is kept under its id. Without it (a synchronous call) the wait is
// spent in place, up to ctx's deadline.
func WithDeferredWaits(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, deferKey{}, id)
}

// DeferredWaits returns the task id of a queued task's attempt, and false
// for any other call.
func DeferredWaits(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(deferKey{}).(string)
	return id, ok
}

type keyKey struct{}

// WithFlowKey names whose call ctx is (the API key's id, "" for an open
// API), so that a saturated deployment's budget is shared fairly between
// the keys with work waiting for it.
func WithFlowKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, keyKey{}, key)
}

type weightKey struct{}

// WithFlowWeight weighs ctx's key's share of a saturated deployment
// against other keys' (see auth's ShareWeight); 1 when not said.
func WithFlowWeight(ctx context.Context, weight int) context.Context {
	return context.WithValue(ctx, weightKey{}, weight)
}

// FlowWeightOf is the weight WithFlowWeight gave, at least 1.
func FlowWeightOf(ctx context.Context) int {
	w, _ := ctx.Value(weightKey{}).(int)
	return max(w, 1)
}

// FlowKeyOf is the key WithFlowKey named; "" when none.
func FlowKeyOf(ctx context.Context) string {
	k, _ := ctx.Value(keyKey{}).(string)
	return k
}

// RateLimit is what a provider said of its limits in one answer's headers:
// the x-ratelimit-* family (OpenAI, Azure OpenAI, Groq, Together, vLLM and
// others) and, on a 429, Retry-After or retry-after-ms. Zero fields were
// not said.
type RateLimit struct {
	LimitRequests     int64
	RemainingRequests int64 // -1 when not said
	ResetRequests     time.Duration
	LimitTokens       int64
	RemainingTokens   int64 // -1 when not said
	ResetTokens       time.Duration
	RetryAfter        time.Duration
}

// Said reports whether the headers held anything about limits.
func (r RateLimit) Said() bool {
	return r.LimitRequests > 0 || r.LimitTokens > 0 || r.RemainingRequests >= 0 || r.RemainingTokens >= 0 || r.RetryAfter > 0
}

// ParseRateLimit reads the rate-limit headers of one answer.
func ParseRateLimit(h http.Header, now time.Time) RateLimit {
	r := RateLimit{
		LimitRequests:     headerInt(h, "x-ratelimit-limit-requests"),
		RemainingRequests: headerIntOr(h, "x-ratelimit-remaining-requests", -1),
		ResetRequests:     ParseReset(h.Get("x-ratelimit-reset-requests")),
		LimitTokens:       headerInt(h, "x-ratelimit-limit-tokens"),
		RemainingTokens:   headerIntOr(h, "x-ratelimit-remaining-tokens", -1),
		ResetTokens:       ParseReset(h.Get("x-ratelimit-reset-tokens")),
	}
	if ms, err := strconv.ParseFloat(strings.TrimSpace(h.Get("retry-after-ms")), 64); err == nil && ms > 0 {
		r.RetryAfter = min(time.Duration(ms*float64(time.Millisecond)), MaxRetryAfter)
	} else {
		r.RetryAfter = ParseRetryAfter(h.Get("Retry-After"), now)
	}
	return r
}

func headerInt(h http.Header, name string) int64 { return headerIntOr(h, name, 0) }

func headerIntOr(h http.Header, name string, absent int64) int64 {
	v := strings.TrimSpace(h.Get(name))
	if v == "" {
		return absent
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return absent
	}
	return n
}

// ParseReset reads an x-ratelimit-reset-* value: OpenAI writes a Go-like
// duration ("1s", "6m0s", "20ms"), others plain seconds ("0.5"). It is at
// most MaxRetryAfter; 0 when absent or unreadable.
func ParseReset(v string) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if !(secs > 0) {
			return 0
		}
		return min(time.Duration(secs*float64(time.Second)), MaxRetryAfter)
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return min(d, MaxRetryAfter)
	}
	return 0
}
