package loadtest

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Limits make the bench provider enforce an account's limits the way
// OpenAI does: requests and tokens per minute, each a bucket that refills
// evenly and holds one second's worth, and calls at once. Past one it
// answers 429 with OpenAI's error body, Retry-After, retry-after-ms and
// the x-ratelimit-* headers; every answer carries those headers unless
// Quiet (a provider that says nothing until it refuses). RetryAfterOnly is
// a provider that says nothing of its limits at all, only a 429 with
// Retry-After in whole seconds, as gateways, Hugging Face and Azure
// OpenAI's requests limit do.
type Limits struct {
	RPM, TPM, Concurrent int
	Quiet                bool
	RetryAfterOnly       bool
}

// limiter is Limits enforced in memory, with counts of what it answered.
type limiter struct {
	Limits
	mu       sync.Mutex
	reqTAT   time.Time // GCRA theoretical arrival times
	tokTAT   time.Time
	inFlight atomic.Int64
	answered atomic.Int64
	refused  atomic.Int64
}

// admit is one GCRA (generic cell rate algorithm) of perMinute units with
// a tolerance of one second: a request of cost units is let in while its
// bucket's theoretical arrival time is at most a second ahead, and then
// moves it on by cost units' interval.
func admit(tat *time.Time, now time.Time, perMinute int, cost int64) (ok bool, retry time.Duration, remaining int64) {
	interval := time.Minute / time.Duration(perMinute)
	t := *tat
	if t.Before(now) {
		t = now
	}
	if ahead := t.Sub(now); ahead > time.Second {
		return false, ahead - time.Second, 0
	}
	*tat = t.Add(interval * time.Duration(max(cost, 1)))
	return true, 0, max(int64((time.Second-(*tat).Sub(now))/interval)+1, 0)
}

// take admits one request of tokens, or says why not and for how long.
func (l *limiter) take(now time.Time, tokens int64, h http.Header) (refused string, retry time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	reqTAT, tokTAT := l.reqTAT, l.tokTAT
	var remReq, remTok int64 = -1, -1
	if l.RPM > 0 {
		ok, wait, rem := admit(&reqTAT, now, l.RPM, 1)
		if !ok {
			refused, retry = "requests", wait
		}
		remReq = rem
	}
	if l.TPM > 0 && refused == "" {
		ok, wait, rem := admit(&tokTAT, now, l.TPM, tokens)
		if !ok {
			refused, retry = "tokens", wait
		}
		remTok = rem
	}
	if refused == "" {
		l.reqTAT, l.tokTAT = reqTAT, tokTAT
	}
	if !l.RetryAfterOnly && (!l.Quiet || refused != "") {
		if l.RPM > 0 {
			h.Set("x-ratelimit-limit-requests", strconv.Itoa(l.RPM))
			h.Set("x-ratelimit-remaining-requests", strconv.FormatInt(max(remReq, 0), 10))
			h.Set("x-ratelimit-reset-requests", resetOf(l.reqTAT, now))
		}
		if l.TPM > 0 {
			h.Set("x-ratelimit-limit-tokens", strconv.Itoa(l.TPM))
			h.Set("x-ratelimit-remaining-tokens", strconv.FormatInt(max(remTok, 0), 10))
			h.Set("x-ratelimit-reset-tokens", resetOf(l.tokTAT, now))
		}
	}
	return refused, retry
}

// resetOf is OpenAI's x-ratelimit-reset-*: the time until the bucket is
// full again, as a Go duration ("1s", "6m0s", "20ms").
func resetOf(tat, now time.Time) string {
	d := tat.Sub(now)
	if d < 0 {
		d = 0
	}
	return d.Round(time.Millisecond).String()
}

// refuse answers 429 as OpenAI does; bare, with Retry-After alone.
func refuse(w http.ResponseWriter, what string, retry time.Duration, limit int, bare bool) {
	w.Header().Set("Retry-After", strconv.Itoa(max(int(math.Ceil(retry.Seconds())), 1)))
	if !bare {
		w.Header().Set("retry-after-ms", strconv.FormatInt(max(retry.Milliseconds(), 1), 10))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusTooManyRequests)
	msg := fmt.Sprintf("Rate limit reached for bench in organization org-bench on %s per min (RPM): Limit %d. Please try again in %s.", what, limit, retry.Round(time.Millisecond))
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"message": msg, "type": what, "param": nil, "code": "rate_limit_exceeded"}})
}
