package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/cors"

	"github.com/siganteng/siganteng/internal/auth"
	"github.com/siganteng/siganteng/internal/openaiapi"
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
	// Embedded is the one-command development start: the embedded Redis,
	// which no other process can reach, so no key can be made for it; the
	// API is open there while no key exists. With a real Redis it never is.
	Embedded bool
	// AllowedHosts are the Host names, besides loopback ones, that an open
	// API answers (ALLOWED_HOSTS); any other Host is refused, which stops
	// DNS rebinding from turning a web page into a client.
	AllowedHosts []string
}

// openCaller is the caller of an open API.
var openCaller = auth.Caller{Name: "anonymous", Admin: true}

// public paths need no key: health checks and the API's documentation.
func public(path string) bool {
	switch {
	case health(path), path == "/docs", strings.HasPrefix(path, "/docs/"),
		strings.HasPrefix(path, "/openapi"), strings.HasPrefix(path, "/schemas/"):
		return true
	}
	return false
}

// health paths are probed by load balancers and orchestrators under any
// Host, so the Host check passes them; they tell nothing.
func health(path string) bool { return path == "/healthz" || path == "/readyz" }

// withAuth finds the caller of each request, refuses requests without a
// valid key when keys are needed, applies the caller's rate limit, and puts
// the caller in the request's context for the service to check ownership.
// Requests that carry no valid key are counted per client address, in
// memory, and refused past a rate before any Redis read.
func (h *handlers) withAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if public(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		ip := clientIP(r, h.deps.TrustedProxies)
		if wait, ok := h.guests.blocked(ip); ok {
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
			refuse(w, r, http.StatusTooManyRequests, "too many requests without a valid API key from this address; wait, then send a valid key")
			return
		}
		caller, status, detail := h.caller(r)
		if status != 0 {
			if status == http.StatusUnauthorized {
				h.guests.failed(ip)
				w.Header().Set("WWW-Authenticate", `Bearer realm="siganteng"`)
			}
			refuse(w, r, status, detail)
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
				setRateHeaders(w.Header(), d, r.URL.Path)
				w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(d.RetryAfter.Seconds())))))
				refuse(w, r, http.StatusTooManyRequests, fmt.Sprintf("rate limit reached: this API key may make %d requests per second (bursts of %d)", d.Limit, d.Burst))
				return
			default:
				setRateHeaders(w.Header(), d, r.URL.Path)
			}
		}
		next.ServeHTTP(w, r.WithContext(auth.WithCaller(r.Context(), caller)))
	})
}

// firstKeyHint says how to make the first key, in a 401 and in the log.
const firstKeyHint = "no API key exists yet, so every request is refused: create the first one with " +
	"'siganteng keys create --name NAME --admin' (with REDIS_URL naming this server's Redis)"

// caller authenticates r; a non-zero status is the refusal to send.
func (h *handlers) caller(r *http.Request) (auth.Caller, int, string) {
	policy := h.deps.AuthPolicy
	if h.deps.Auth == nil || policy.Disabled {
		return h.open(r)
	}
	raw, bad := presentedKey(r)
	if raw == "" || policy.Embedded {
		anyKeys, err := h.deps.Auth.Any(r.Context())
		if err != nil {
			h.deps.Log.WarnContext(r.Context(), "API keys unreadable", "err", err)
			return auth.Caller{}, http.StatusServiceUnavailable, "the key store is unavailable"
		}
		h.mode.observe(h.deps.Log, policy.Embedded, anyKeys)
		if !anyKeys && policy.Embedded {
			// Open: whatever key is sent (the SDKs insist on sending one)
			// is not looked at.
			return h.open(r)
		}
		if raw == "" && bad == "" {
			if !anyKeys {
				return auth.Caller{}, http.StatusUnauthorized, firstKeyHint
			}
			return auth.Caller{}, http.StatusUnauthorized, "an API key is needed: send it as 'Authorization: Bearer sgk_…' or 'X-API-Key: sgk_…'"
		}
	}
	if bad != "" {
		return auth.Caller{}, http.StatusUnauthorized, bad
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

// open is the caller of an open API, for a request whose Host is a
// loopback name or one of ALLOWED_HOSTS: a page served from elsewhere that
// rebinds its own name to 127.0.0.1 still sends its own name as Host.
func (h *handlers) open(r *http.Request) (auth.Caller, int, string) {
	if !hostAllowed(r.Host, h.deps.AuthPolicy.AllowedHosts) {
		return auth.Caller{}, http.StatusForbidden, "while the API is open (no API keys), it answers only requests addressed to " +
			"localhost or a loopback address; add this host name to ALLOWED_HOSTS to allow it"
	}
	return openCaller, 0, ""
}

// hostAllowed reports whether a request's Host is loopback or listed.
func hostAllowed(hostport string, allowed []string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	if a, err := netip.ParseAddr(host); err == nil && a.Unmap().IsLoopback() {
		return true
	}
	for _, name := range allowed {
		if strings.EqualFold(name, host) {
			return true
		}
	}
	return false
}

// modeLog remembers whether keys existed at the last keyless request, to
// log when that changes: the first key closing an open API, or the last
// one revoked leaving every request refused.
type modeLog struct{ state atomic.Int32 } // 0 unknown, 1 no keys, 2 keys

func (m *modeLog) observe(log *slog.Logger, embedded, anyKeys bool) {
	now := int32(1)
	if anyKeys {
		now = 2
	}
	was := m.state.Swap(now)
	if was == now || was == 0 { // the first look: start-up has said it
		return
	}
	switch {
	case anyKeys:
		log.Warn("an API key exists now: the API requires keys")
	case embedded:
		log.Warn("no API key exists: the API is open to requests addressed to localhost")
	default:
		log.Error("no API key exists (the last one was revoked?): " + firstKeyHint)
	}
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
// (draft-ietf-httpapi-ratelimit-headers), as most clients read them, and
// on /v1 OpenAI's x-ratelimit-*-requests too, as its SDKs and tools read
// them.
func setRateHeaders(h http.Header, d auth.Decision, path string) {
	if strings.HasPrefix(path, "/v1/") {
		h.Set("X-Ratelimit-Limit-Requests", strconv.Itoa(d.Burst))
		h.Set("X-Ratelimit-Remaining-Requests", strconv.Itoa(max(0, d.Remaining)))
		h.Set("X-Ratelimit-Reset-Requests", max(time.Millisecond, d.ResetAfter.Round(time.Millisecond)).String())
	}
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

// withOrigins refuses, before anything is done, a request from a web page
// whose origin CORS_ORIGINS does not allow. Browsers send Origin on every
// cross-origin POST, the "simple" ones (a form, text/plain) included, which
// the CORS layer alone would let run and only hide the answer of. Requests
// without Origin (curl, the SDKs) and same-origin ones (the /docs page) pass.
func withOrigins(origins []string, next http.Handler) http.Handler {
	allowed := map[string]bool{}
	for _, o := range origins {
		allowed[strings.ToLower(strings.TrimSuffix(o, "/"))] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" || allowed["*"] || allowed[strings.ToLower(origin)] || sameOrigin(origin, r.Host) {
			next.ServeHTTP(w, r)
			return
		}
		refuse(w, r, http.StatusForbidden, "requests from this web origin are not allowed: the operator lists the origins that may call the API in CORS_ORIGINS")
	})
}

// sameOrigin reports whether origin names the host the request was sent to.
func sameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, host)
}

// withContentTypes refuses a request body that is not JSON on a JSON
// operation (415), where huma would decode a body sent with no type or as
// text/plain: such a body is what a web page may send cross-origin without
// asking first. The upload paths take multipart/form-data too.
func withContentTypes(next http.Handler) http.Handler {
	uploads := map[string]bool{}
	for _, p := range uploadPaths {
		uploads[p] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength == 0 || r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions {
			next.ServeHTTP(w, r)
			return
		}
		mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		isJSON := mediaType == "application/json" || strings.HasSuffix(mediaType, "+json")
		if isJSON || (uploads[r.URL.Path] || r.URL.Path == v1Transcriptions || r.URL.Path == v1Files) && mediaType == "multipart/form-data" || strings.HasPrefix(r.URL.Path, "/monitoring/") {
			next.ServeHTTP(w, r)
			return
		}
		want := "application/json"
		if uploads[r.URL.Path] {
			want += " or multipart/form-data"
		}
		refuse(w, r, http.StatusUnsupportedMediaType, "the request body must be sent with Content-Type: "+want)
	})
}

// v1Transcriptions and v1Files take multipart/form-data on the
// OpenAI-compatible front.
const (
	v1Transcriptions = "/v1/audio/transcriptions"
	v1Files          = "/v1/files"
)

// refuse answers a request the guards stop: an RFC 9457 problem, or on the
// OpenAI-compatible front OpenAI's error object, which its SDKs read.
func refuse(w http.ResponseWriter, r *http.Request, status int, detail string) {
	if !strings.HasPrefix(r.URL.Path, "/v1/") {
		writeProblem(w, status, detail)
		return
	}
	code := ""
	switch status {
	case http.StatusUnauthorized:
		code = "invalid_api_key"
	case http.StatusTooManyRequests:
		code = "rate_limit_exceeded"
	}
	openaiapi.WriteError(w, status, detail, "", code)
}

// withSecurityHeaders sets the headers every answer should carry, and those
// of HTML pages (the docs, whose Content-Security-Policy huma sets). API
// answers hold tasks' results and are never to be kept by a cache.
func withSecurityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		switch {
		case r.URL.Path == "/docs/":
			h.Set("X-Frame-Options", "DENY")
			h.Set("Referrer-Policy", "no-referrer")
			h.Set("Cache-Control", "no-cache")
		case strings.HasPrefix(r.URL.Path, "/docs"), strings.HasPrefix(r.URL.Path, "/openapi"), strings.HasPrefix(r.URL.Path, "/schemas/"):
		default:
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}
