package provider

import (
	"context"
	"net/http"
	"testing"
	"time"
)

func TestParseRateLimitReadsOpenAIsHeaders(t *testing.T) {
	h := http.Header{}
	h.Set("x-ratelimit-limit-requests", "6000")
	h.Set("x-ratelimit-remaining-requests", "0")
	h.Set("x-ratelimit-reset-requests", "6m0s")
	h.Set("x-ratelimit-limit-tokens", "150000")
	h.Set("x-ratelimit-remaining-tokens", "149984")
	h.Set("x-ratelimit-reset-tokens", "6ms")
	h.Set("retry-after-ms", "250")
	h.Set("Retry-After", "1")
	got := ParseRateLimit(h, time.Now())
	want := RateLimit{LimitRequests: 6000, RemainingRequests: 0, ResetRequests: 6 * time.Minute,
		LimitTokens: 150000, RemainingTokens: 149984, ResetTokens: 6 * time.Millisecond, RetryAfter: 250 * time.Millisecond}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if !got.Said() {
		t.Fatal("Said is false for headers that say everything")
	}
}

func TestParseRateLimitWithoutHeadersSaysNothing(t *testing.T) {
	got := ParseRateLimit(http.Header{}, time.Now())
	if got.Said() {
		t.Fatalf("nothing said, yet %+v", got)
	}
	h := http.Header{}
	h.Set("Retry-After", "2")
	h.Set("x-ratelimit-reset-requests", "0.5")
	got = ParseRateLimit(h, time.Now())
	if got.RetryAfter != 2*time.Second || got.ResetRequests != 500*time.Millisecond || got.RemainingRequests != -1 {
		t.Fatalf("got %+v", got)
	}
}

func TestParseResetRefusesNonsense(t *testing.T) {
	for v, want := range map[string]time.Duration{"": 0, "-1": 0, "NaN": 0, "soon": 0, "1h30m": MaxRetryAfter, "90000": MaxRetryAfter, "20ms": 20 * time.Millisecond} {
		if got := ParseReset(v); got != want {
			t.Errorf("ParseReset(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestDeferredWaitsTravelInTheContext(t *testing.T) {
	ctx := context.Background()
	if _, ok := DeferredWaits(ctx); ok {
		t.Fatal("a plain context defers waits")
	}
	if id, ok := DeferredWaits(WithDeferredWaits(ctx, "t1")); !ok || id != "t1" {
		t.Fatalf("the marked context gives %q, %v", id, ok)
	}
}
