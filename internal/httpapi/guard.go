package httpapi

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/rs/cors"

	"github.com/siganteng/siganteng/internal/auth"
)

// Authenticator checks API keys.
type Authenticator interface {
	// Authenticate returns the caller of a key: auth.ErrMalformed,
	// auth.ErrInvalid, or another error when the keys cannot be read.
	Authenticate(ctx context.Context, raw string) (auth.Caller, error)
	// Any reports whether any key is active.
	Any(ctx context.Context) (bool, error)
}

// RateLimiter counts a caller's requests.
type RateLimiter interface {
	Allow(ctx context.Context, c auth.Caller) (auth.Decision, error)
}

// AuthPolicy says when the API is open to callers without a key.
type AuthPolicy struct {
	// Disabled opens the API on purpose (AUTH_DISABLED): every caller acts
	// as an admin.
	Disabled bool
	// Loopback is true when the API listens on a loopback address only;
	// there it is open while no key exists, so the one-command start needs
	// no key.
	Loopback bool
}

// anonymous is the caller of an open API.
var anonymous = auth.Caller{Name: "anonymous", Admin: true}

// public paths need no key: health checks and the API's documentation.
func public(path string) bool {
	switch {
	case path == "/healthz", path == "/readyz", path == "/docs",
		strings.HasPrefix(path, "/openapi"), strings.HasPrefix(path, "/schemas/"):
		return true
	}
	return false
}

// withAuth finds the caller of each request, refuses requests without a
// valid key when keys are needed, applies the caller's rate limit, and puts
// the caller in the request's context for the service to check ownership.
func (h *handlers) withAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if public(r.URL.Path) || r.Method == http.MethodOptions {
			next.ServeHTTP(w, r)
			return
		}
		caller, status, detail := h.caller(r)
		if status != 0 {
			if status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="siganteng"`)
			}
			writeProblem(w, status, detail)
			return
		}
		if caller.KeyID != "" && h.deps.Limiter != nil {
			d, err := h.deps.Limiter.Allow(r.Context(), caller)
			switch {
			case err != nil:
				// Redis is failing: the request will meet it too and answer
				// 503; refusing it here would only hide why.
				h.deps.Log.WarnContext(r.Context(), "rate limit not checked", "err", err)
			case !d.Allowed:
				setRateHeaders(w.Header(), d)
				w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(d.RetryAfter.Seconds())))))
				writeProblem(w, http.StatusTooManyRequests, fmt.Sprintf("rate limit reached: this API key may make %d requests per second (bursts of %d)", d.Limit, d.Burst))
				return
			default:
				setRateHeaders(w.Header(), d)
			}
		}
		next.ServeHTTP(w, r.WithContext(auth.WithCaller(r.Context(), caller)))
	})
}

// caller authenticates r; a non-zero status is the refusal to send.
func (h *handlers) caller(r *http.Request) (auth.Caller, int, string) {
	policy := h.deps.AuthPolicy
	if h.deps.Auth == nil || policy.Disabled {
		return anonymous, 0, ""
	}
	raw, bad := presentedKey(r)
	if bad != "" {
		return auth.Caller{}, http.StatusUnauthorized, bad
	}
	if raw == "" {
		anyKeys, err := h.deps.Auth.Any(r.Context())
		switch {
		case err != nil:
			h.deps.Log.WarnContext(r.Context(), "API keys unreadable", "err", err)
			return auth.Caller{}, http.StatusServiceUnavailable, "the key store is unavailable"
		case !anyKeys && policy.Loopback:
			return anonymous, 0, ""
		case !anyKeys:
			return auth.Caller{}, http.StatusUnauthorized, "no API key exists yet: create one with 'siganteng keys create --name NAME'"
		}
		return auth.Caller{}, http.StatusUnauthorized, "an API key is needed: send it as 'Authorization: Bearer sgk_…' or 'X-API-Key: sgk_…'"
	}
	caller, err := h.deps.Auth.Authenticate(r.Context(), raw)
	switch {
	case errors.Is(err, auth.ErrMalformed):
		return auth.Caller{}, http.StatusUnauthorized, "the API key is malformed: SIGANTENG keys start with sgk_ and have 54 characters"
	case errors.Is(err, auth.ErrInvalid):
		return auth.Caller{}, http.StatusUnauthorized, "the API key is not valid (unknown or revoked)"
	case err != nil:
		h.deps.Log.WarnContext(r.Context(), "API keys unreadable", "err", err)
		return auth.Caller{}, http.StatusServiceUnavailable, "the key store is unavailable"
	}
	return caller, 0, ""
}

// presentedKey reads the key from Authorization: Bearer or X-API-Key. Two
// different keys, or another authorization scheme, are refused.
func presentedKey(r *http.Request) (string, string) {
	var bearer string
	if v := r.Header.Get("Authorization"); v != "" {
		scheme, token, ok := strings.Cut(v, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			return "", "the Authorization header must be 'Bearer <key>'"
		}
		bearer = strings.TrimSpace(token)
	}
	header := strings.TrimSpace(r.Header.Get("X-API-Key"))
	if bearer != "" && header != "" && bearer != header {
		return "", "Authorization and X-API-Key carry different keys"
	}
	if bearer != "" {
		return bearer, ""
	}
	return header, ""
}

// setRateHeaders writes the RateLimit headers of the IETF draft
// (draft-ietf-httpapi-ratelimit-headers), as most clients read them.
func setRateHeaders(h http.Header, d auth.Decision) {
	h.Set("RateLimit-Limit", strconv.Itoa(d.Burst))
	h.Set("RateLimit-Remaining", strconv.Itoa(max(0, d.Remaining)))
	h.Set("RateLimit-Reset", strconv.Itoa(max(0, int(math.Ceil(d.ResetAfter.Seconds())))))
	h.Set("RateLimit-Policy", fmt.Sprintf("%d;w=1;burst=%d", d.Limit, d.Burst))
}

// withCORS lets browsers on origins call the API; with none, no
// cross-origin headers are sent and browsers refuse such calls.
func withCORS(origins []string, next http.Handler) http.Handler {
	if len(origins) == 0 {
		return next
	}
	return cors.New(cors.Options{
		AllowedOrigins: origins,
		AllowedMethods: []string{http.MethodGet, http.MethodPost},
		AllowedHeaders: []string{"Authorization", "X-API-Key", "Content-Type", "Idempotency-Key", "Prefer", "Cancel-After", "Last-Event-ID", "X-Request-ID"},
		ExposedHeaders: []string{"Location", "Idempotent-Replayed", "Preference-Applied", "Retry-After",
			"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy"},
		MaxAge: 600,
	}).Handler(next)
}

// withSecurityHeaders sets the headers every answer should carry, and those
// of HTML pages (the docs, whose Content-Security-Policy huma sets).
func withSecurityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		if r.URL.Path == "/docs" {
			h.Set("X-Frame-Options", "DENY")
			h.Set("Referrer-Policy", "no-referrer")
		}
		next.ServeHTTP(w, r)
	})
}
