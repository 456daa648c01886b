package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/siganteng/siganteng/internal/task"
)

// Kind classifies a provider failure once, so that the worker decides retry or
// failure without knowing the provider.
type Kind int

// The kinds of provider failure. The first four are transient.
const (
	KindUnavailable   Kind = iota + 1 // 5xx, refused connection, network error
	KindRateLimited                   // 429
	KindTimeout                       // no answer in time
	KindBadResponse                   // an answer we could not read; may be a proxy hiccup
	KindRejected                      // 400, 404, 409, 413, 422: the request itself is wrong
	KindAuth                          // 401, 403: our credentials are wrong
	KindNotConfigured                 // no usable provider at all
	KindTooLarge                      // the answer passed its size limit
)

func (k Kind) String() string {
	switch k {
	case KindUnavailable:
		return "unavailable"
	case KindRateLimited:
		return "rate limited"
	case KindTimeout:
		return "timeout"
	case KindBadResponse:
		return "bad response"
	case KindRejected:
		return "rejected"
	case KindAuth:
		return "authentication failed"
	case KindNotConfigured:
		return "not configured"
	case KindTooLarge:
		return "answer too large"
	}
	return "unknown"
}

// Code is the failure's word on task records and routed calls, one of the
// task.Failure* codes, so every front and the router say the same thing.
func (k Kind) Code() task.FailureCode {
	switch k {
	case KindRateLimited:
		return task.FailureProviderRateLimited
	case KindTimeout:
		return task.FailureTimeout
	case KindRejected:
		return task.FailureProviderRejected
	case KindAuth:
		return task.FailureProviderAuth
	case KindNotConfigured:
		return task.FailureNotConfigured
	case KindTooLarge:
		return task.FailureResponseTooLarge
	}
	return task.FailureProviderUnavailable
}

// Error is the one error type adapters return. Message has been cleaned of
// secrets and is safe to show to clients.
type Error struct {
	Provider   string
	Kind       Kind
	StatusCode int           // the provider's HTTP status, 0 when there was none
	RetryAfter time.Duration // the provider's Retry-After, 0 when absent
	Message    string
}

func (e *Error) Error() string {
	if e.StatusCode != 0 {
		return fmt.Sprintf("%s: %s (HTTP %d): %s", e.Provider, e.Kind, e.StatusCode, e.Message)
	}
	return fmt.Sprintf("%s: %s: %s", e.Provider, e.Kind, e.Message)
}

// Transient reports whether the same request may succeed later.
func (e *Error) Transient() bool {
	switch e.Kind {
	case KindUnavailable, KindRateLimited, KindTimeout, KindBadResponse:
		return true
	}
	return false
}

// KindForStatus classifies an HTTP status from a provider.
func KindForStatus(status int) Kind {
	switch {
	case status == http.StatusTooManyRequests:
		return KindRateLimited
	case status == http.StatusRequestTimeout:
		return KindTimeout
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		return KindAuth
	case status >= 500:
		return KindUnavailable
	default:
		return KindRejected
	}
}

// maxErrorBody bounds how much of an error answer is read: enough for any
// provider's error JSON, not enough to hurt if a proxy sends a page.
const maxErrorBody = 64 << 10

// maxMessage bounds the message kept on a record.
const maxMessage = 500

// ErrorFromResponse turns a non-2xx answer into an *Error, reading the
// provider's error body in any of the shapes providers use:
// {"error": {"message": ...}} (OpenAI), {"error": "..."} (Ollama, Hugging
// Face), {"message": ...}, {"detail": ...} or plain text. secrets are removed
// from the message.
func ErrorFromResponse(name string, res *http.Response, secrets ...string) *Error {
	body, _ := io.ReadAll(io.LimitReader(res.Body, maxErrorBody))
	msg := errorMessage(body)
	if msg == "" {
		msg = http.StatusText(res.StatusCode)
	}
	return &Error{
		Provider:   name,
		Kind:       KindForStatus(res.StatusCode),
		StatusCode: res.StatusCode,
		RetryAfter: ParseRetryAfter(res.Header.Get("Retry-After"), time.Now()),
		Message:    Redact(msg, secrets...),
	}
}

func errorMessage(body []byte) string {
	var shaped struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
		Detail  json.RawMessage `json:"detail"`
	}
	if json.Unmarshal(body, &shaped) != nil {
		return truncate(strings.TrimSpace(string(body)))
	}
	if len(shaped.Error) > 0 {
		var s string
		if json.Unmarshal(shaped.Error, &s) == nil {
			return truncate(s)
		}
		var obj struct {
			Message string `json:"message"`
			Type    string `json:"type"`
			Code    any    `json:"code"`
		}
		if json.Unmarshal(shaped.Error, &obj) == nil && obj.Message != "" {
			return truncate(obj.Message)
		}
	}
	if shaped.Message != "" {
		return truncate(shaped.Message)
	}
	if len(shaped.Detail) > 0 {
		var s string
		if json.Unmarshal(shaped.Detail, &s) == nil {
			return truncate(s)
		}
		return truncate(string(shaped.Detail))
	}
	return ""
}

func truncate(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	cut := maxMessage
	for cut > 0 && !utf8Start(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// ErrorFromTransport classifies a failure to get any answer at all. It returns
// ctx's own error unchanged when the caller cancelled, so that shutdown and
// revocation are not mistaken for provider faults.
func ErrorFromTransport(ctx context.Context, name string, err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	var pe *Error
	if errors.As(err, &pe) {
		return pe
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, ErrResponseTooLarge) {
		return TooLarge(name)
	}
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		return &Error{Provider: name, Kind: KindTimeout, Message: "no answer before the deadline"}
	}
	return &Error{Provider: name, Kind: KindUnavailable, Message: Redact(transportMessage(err), secrets...)}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// transportMessage describes a network failure without the request URL,
// which may carry a key in its query string.
func transportMessage(err error) string {
	var op *net.OpError
	if errors.As(err, &op) {
		return fmt.Sprintf("%s %s: %v", op.Op, addrString(op.Addr), op.Err)
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return "DNS lookup failed for " + dns.Name
	}
	return truncate(err.Error())
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// MaxRetryAfter bounds what a provider's Retry-After is believed: a
// provider is anybody's code, and a value of years (or one that overflows a
// duration) must not park work or reach a client unchanged. Callers clamp
// further to their own settings (RETRY_MAX_DELAY).
const MaxRetryAfter = time.Hour

// ParseRetryAfter reads a Retry-After header in either of its forms
// (delay-seconds or an HTTP date), at most MaxRetryAfter. It returns 0 when
// absent or unreadable.
func ParseRetryAfter(value string, now time.Time) time.Duration {
	value = strings.TrimSpace(value)
	if value == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(value, 64); err == nil {
		if !(secs > 0) { // also NaN
			return 0
		}
		if secs >= MaxRetryAfter.Seconds() {
			return MaxRetryAfter
		}
		return time.Duration(secs * float64(time.Second))
	}
	if at, err := http.ParseTime(value); err == nil && at.After(now) {
		return min(at.Sub(now), MaxRetryAfter)
	}
	return 0
}
