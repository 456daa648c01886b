// Package httpapi is SIGANTENG's HTTP API: huma operations that decode,
// call the service and encode, and nothing else. routes.go lists the whole
// API; problem.go maps application errors to HTTP statuses in one place.
package httpapi

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/google/uuid"
	"go.opentelemetry.io/otel/trace"

	"github.com/siganteng/siganteng/internal/artifact"
	"github.com/siganteng/siganteng/internal/auth"
	"github.com/siganteng/siganteng/internal/logctx"
	"github.com/siganteng/siganteng/internal/metrics"
	"github.com/siganteng/siganteng/internal/service"
	"github.com/siganteng/siganteng/internal/task"
)

// Tasks is the service as the API uses it.
type Tasks interface {
	// SubmitGenerateText records and enqueues a task; EINVALID, EUNAVAILABLE.
	SubmitGenerateText(ctx context.Context, in task.GenerateTextInput) (*task.Record, error)
	// GenerateText runs the work now; EINVALID, EUNAVAILABLE, ETIMEOUT,
	// EREJECTED, EPROVIDER.
	GenerateText(ctx context.Context, in task.GenerateTextInput) (*task.TextResult, error)
	// SubmitDescribeImage records and enqueues a task; EINVALID, ETOOLARGE,
	// EUNSUPPORTED, EUNAVAILABLE.
	SubmitDescribeImage(ctx context.Context, in task.DescribeImageInput) (*task.Record, error)
	// DescribeImage runs the work now; errors as both of the above.
	DescribeImage(ctx context.Context, in task.DescribeImageInput) (*task.TextResult, error)
	// SubmitEmbed records and enqueues a task; EINVALID, EUNAVAILABLE.
	SubmitEmbed(ctx context.Context, in task.EmbedInput) (*task.Record, error)
	// Embed runs the work now; errors as GenerateText's.
	Embed(ctx context.Context, in task.EmbedInput) (*task.EmbedResult, error)
	// SubmitSpeechToText stores the audio, records and enqueues a task;
	// EINVALID, ETOOLARGE, EUNSUPPORTED, EUNAVAILABLE.
	SubmitSpeechToText(ctx context.Context, in task.SpeechToTextInput, audio io.Reader) (*task.Record, error)
	// SpeechToText transcribes now; errors as both of the above.
	SpeechToText(ctx context.Context, in task.SpeechToTextInput, audio io.Reader) (*task.TranscriptResult, error)
	// SubmitTextToSpeech records and enqueues a task; EINVALID, EUNAVAILABLE.
	SubmitTextToSpeech(ctx context.Context, in task.TextToSpeechInput) (*task.Record, error)
	// TextToSpeech starts speech now; errors as GenerateText's. The caller
	// closes the body.
	TextToSpeech(ctx context.Context, in task.TextToSpeechInput) (*service.Audio, error)
	// Get returns a record, its result inlined; ENOTFOUND, EUNAVAILABLE.
	Get(ctx context.Context, id string) (*task.Record, error)
	// GetLinked returns a record whose large result is named, not
	// inlined; ENOTFOUND, EUNAVAILABLE.
	GetLinked(ctx context.Context, id string) (*task.Record, error)
	// Cancel revokes a task and returns its record; ENOTFOUND, EUNAVAILABLE.
	Cancel(ctx context.Context, id string) (*task.Record, error)
	// Idempotent runs submit once per Idempotency-Key; see service.Idempotent.
	Idempotent(ctx context.Context, key string, typ task.Type, input any, submit func() (*task.Record, error)) (*task.Record, bool, error)
	// Wait returns the record once the task has ended or d has passed.
	Wait(ctx context.Context, id string, d time.Duration) (*task.Record, error)
	// List returns a page of tasks, newest first; EINVALID for a bad
	// cursor, EUNAVAILABLE.
	List(ctx context.Context, q service.ListQuery) (task.Page, error)
	// Models lists the models the caller may name.
	Models(ctx context.Context) []task.ModelInfo
	// Usage returns usage per key and day; EINVALID, EUNAVAILABLE.
	Usage(ctx context.Context, q service.UsageQuery) ([]task.DayUsage, error)
	// HoldStream takes one of the caller's waiting connections for an
	// event stream; ELIMITED at its key's bound. The caller releases it.
	HoldStream(ctx context.Context) (release func(), err error)
	// FollowEvents sends a task's events until its end; see
	// service.FollowEvents.
	FollowEvents(ctx context.Context, id, after string, keepalive time.Duration, send func(service.Event) error, idle func() error) error
	// Retry runs a FAILURE or REVOKED task again as a new task; replayed
	// when it had been retried already. ENOTFOUND, ECONFLICT, EUNAVAILABLE.
	Retry(ctx context.Context, id string) (*task.Record, bool, error)
	// CreatePipelineIdempotent checks and keeps a pipeline, once per
	// Idempotency-Key; replayed for the key's earlier one. EINVALID,
	// ECONFLICT, EUNAVAILABLE.
	CreatePipelineIdempotent(ctx context.Context, key string, in task.PipelineInput) (*task.PipelineRecord, bool, error)
	// GetPipeline, CancelPipeline: ENOTFOUND, EUNAVAILABLE.
	GetPipeline(ctx context.Context, id string) (*task.PipelineRecord, error)
	CancelPipeline(ctx context.Context, id string) (*task.PipelineRecord, error)
	// ListPipelines lists the caller's pipelines; EINVALID, EUNAVAILABLE.
	ListPipelines(ctx context.Context, after string, limit int) (service.PipelinePage, error)
	// FollowPipelineEvents sends a pipeline's events until its end.
	FollowPipelineEvents(ctx context.Context, id, after string, keepalive time.Duration, send func(service.Event) error, idle func() error) error
	// OpenArtifact opens a finished task's artifact; ENOTFOUND, ECONFLICT,
	// EUNAVAILABLE. The caller closes the object.
	OpenArtifact(ctx context.Context, id string) (task.Artifact, artifact.Object, error)
}

// Deps are what the API needs.
type Deps struct {
	Tasks Tasks
	// Ready reports whether the API can take work (Redis answers).
	Ready   func(ctx context.Context) error
	Log     *slog.Logger
	Version string
	// MaxUploadBytes bounds an image sent inside a request body.
	MaxUploadBytes int64
	// EventKeepalive is how often an idle event stream gets a comment
	// line; 15 s when zero.
	EventKeepalive time.Duration
	// Auth checks API keys; nil leaves the API open (tests of other parts).
	Auth       Authenticator
	AuthPolicy AuthPolicy
	// Limiter bounds each key's request rate; nil for none.
	Limiter RateLimiter
	// MaxBodyBytes bounds JSON request bodies.
	MaxBodyBytes int64
	// CORSOrigins may call the API from browsers; empty for none.
	CORSOrigins []string
	// TrustedProxies are the proxies whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// GuestRateLimit is how many requests without a valid key one client
	// address may make per second (bursts of twice that) before it is
	// refused without a Redis read; 0 for no limit.
	GuestRateLimit int
	// Metrics records requests and submits; nil for none.
	Metrics *metrics.Metrics
	// V1 is the OpenAI-compatible front, served under /v1/ behind the same
	// keys, limits and log; nil for none.
	V1 http.Handler
	// Operations serves /metrics and /monitoring to admin callers; nil
	// when they are on a separate address (METRICS_ADDR) or off.
	Operations http.Handler
}

// New returns the API's handler.
func New(deps Deps) http.Handler {
	mux := http.NewServeMux()
	api := humago.New(mux, apiConfig(deps.Version))
	hs := &handlers{deps: deps, guests: newGuestLimiter(deps.GuestRateLimit, nil)}
	// The route of each request, for the access log and the metrics.
	api.UseMiddleware(func(ctx huma.Context, next func(huma.Context)) {
		if info := infoOf(ctx.Context()); info != nil {
			info.route = ctx.Operation().Path
		}
		trace.SpanFromContext(ctx.Context()).SetName(ctx.Operation().Method + " " + ctx.Operation().Path)
		next(ctx)
	})
	registerRoutes(api, hs)
	mux.Handle("GET /docs/", docs())
	if deps.V1 != nil {
		mux.Handle("/v1/", withRoute(deps.V1))
	}
	if deps.Operations != nil {
		// Each operations route answers its own methods only (GET, and the
		// dashboard's POST and DELETE), always behind the admin check.
		ops := adminOnly(deps.Operations)
		mux.Handle("GET /metrics", ops)
		mux.Handle("GET /debug/pprof/", ops)
		for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
			mux.Handle(method+" /monitoring/", ops)
		}
		mux.Handle("GET /monitoring", http.RedirectHandler("/monitoring/", http.StatusMovedPermanently))
	}
	var h http.Handler = mux
	h = withUploadLimit(deps.MaxUploadBytes+64<<10, h, uploadPaths[:2]...)
	h = withImageUploads(deps.MaxUploadBytes, h, uploadPaths[2:]...)
	h = hs.withAuth(h)
	h = withContentTypes(h)
	h = withOrigins(deps.CORSOrigins, h)
	h = withCORS(deps.CORSOrigins, h)
	h = withSecurityHeaders(h)
	return withAccessLog(deps.Log, deps.Metrics, deps.TrustedProxies, withRecovery(deps.Log, h))
}

// withRoute names a /v1 request's route for the access log and metrics:
// the path, with a response id replaced by its pattern.
func withRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if info := infoOf(r.Context()); info != nil {
			info.route = v1Route(r.URL.Path)
		}
		next.ServeHTTP(w, r)
	})
}

// v1Route is the pattern of a /v1 path, or "" (counted as other) for one
// the front does not serve: a label per unknown path would grow without
// bound.
func v1Route(path string) string {
	switch path {
	case "/v1/chat/completions", "/v1/responses", "/v1/embeddings", "/v1/audio/speech", v1Transcriptions, "/v1/models", v1Files, "/v1/batches":
		return path
	}
	for _, c := range []struct {
		prefix  string
		actions []string
	}{{"/v1/responses/", []string{"cancel", "input_items"}}, {"/v1/files/", []string{"content"}}, {"/v1/batches/", []string{"cancel"}}} {
		rest, ok := strings.CutPrefix(path, c.prefix)
		if !ok {
			continue
		}
		switch _, action, _ := strings.Cut(rest, "/"); {
		case action == "":
			return c.prefix + "{id}"
		case slices.Contains(c.actions, action):
			return c.prefix + "{id}/" + action
		}
	}
	if strings.HasPrefix(path, "/v1/models/") {
		return "/v1/models/{id}"
	}
	return ""
}

// uploadPaths take multipart/form-data bodies: audio, then images.
var uploadPaths = []string{"/background/speech_to_text", "/speech_to_text", "/background/describe_image", "/describe_image"}

// adminOnly serves next to admin callers (any caller of an open API) only.
func adminOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !auth.FromContext(r.Context()).Admin {
			writeProblem(w, http.StatusForbidden, "this needs an admin API key")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// withUploadLimit bounds multipart bodies on paths, which huma reads without
// its own limit: a declared length over limit is a 413 before anything is
// read, and an undeclared one stops being read at limit.
func withUploadLimit(limit int64, next http.Handler, paths ...string) http.Handler {
	limited := make(map[string]bool, len(paths))
	for _, p := range paths {
		limited[p] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if limited[r.URL.Path] {
			if r.ContentLength > limit {
				writeProblem(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the upload is larger than MAX_UPLOAD_BYTES (%d bytes)", limit-64<<10))
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, limit)
		}
		next.ServeHTTP(w, r)
	})
}

// OpenAPI returns the OpenAPI document, as served at /openapi.json.
func OpenAPI(version string, maxUploadBytes int64) ([]byte, error) {
	api := humago.New(http.NewServeMux(), apiConfig(version))
	registerRoutes(api, &handlers{deps: Deps{MaxUploadBytes: maxUploadBytes}})
	return api.OpenAPI().MarshalJSON()
}

func apiConfig(version string) huma.Config {
	cfg := huma.DefaultConfig("SIGANTENG", version)
	cfg.Info.Description = "Runs slow AI work (LLM calls and more) in background workers. " +
		"Submit with `POST /background/{type}` and get `202 Accepted` with a `task_id` at once; " +
		"poll `GET /background/tasks/{task_id}` until the status is `SUCCESS`, `FAILURE` or `REVOKED`. " +
		"Status words are Celery's, so clients of the original FastAPI + Celery service keep working. " +
		"Errors are RFC 9457 problem details."
	// /docs is Swagger UI (what FastAPI users know), served from the binary
	// by docs(), not huma's page, which loads it from a CDN.
	cfg.DocsPath = ""
	// No $schema links in bodies: clients of the original do not expect them,
	// and the status read is the hottest path.
	cfg.CreateHooks = nil
	return cfg
}

type handlers struct {
	deps   Deps
	guests *guestLimiter
	mode   modeLog
}

// statusRecorder remembers the status a handler wrote, for the access log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// requestInfo is filled in as a request goes down the layers, for the line
// the access log writes and the metrics it records on the way back.
type requestInfo struct {
	route  string // the operation's path pattern; "" when no operation matched
	taskID string // the task a submit made
}

type requestInfoKey struct{}

func infoOf(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(requestInfoKey{}).(*requestInfo)
	return info
}

// requestID returns the client's X-Request-ID when it is a sane token, so
// a caller's own id can be followed, or a new one.
func requestID(r *http.Request) string {
	id := r.Header.Get("X-Request-ID")
	if len(id) == 0 || len(id) > 128 {
		return uuid.NewString()
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return uuid.NewString()
		}
	}
	return id
}

// clientIP is the address of the client: the connection's, unless that is
// a trusted proxy, in which case the last address in X-Forwarded-For that
// is not a trusted proxy (addresses before it could be forged by anyone).
func clientIP(r *http.Request, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	isTrusted := func(s string) bool {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			return false
		}
		for _, p := range trusted {
			if p.Contains(a.Unmap()) {
				return true
			}
		}
		return false
	}
	if !isTrusted(host) {
		return host
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop := strings.TrimSpace(hops[i])
		if hop == "" {
			continue
		}
		if !isTrusted(hop) {
			if _, err := netip.ParseAddr(hop); err != nil {
				return host // garbage: believe nothing
			}
			return hop
		}
	}
	return host
}

// withAccessLog gives each request an id (echoed in X-Request-ID and on
// every log line written with its context), counts it in the metrics, and
// logs it: at info level, or error for a 5xx (LOG_LEVEL=warn turns the
// lines off, and the hot paths then pay nothing for them).
func withAccessLog(log *slog.Logger, m *metrics.Metrics, trusted []netip.Prefix, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := requestID(r)
		w.Header().Set("X-Request-ID", id)
		info := &requestInfo{}
		ctx := context.WithValue(logctx.WithRequestID(r.Context(), id), requestInfoKey{}, info)
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r.WithContext(ctx))
		route := info.route
		if route == "" {
			route = "other"
		}
		m.HTTPRequest(route, r.Method, rec.status, time.Since(start))
		level := slog.LevelInfo
		if rec.status >= 500 {
			level = slog.LevelError
		}
		if !log.Enabled(ctx, level) {
			return // the hot paths pay nothing for a log line nobody keeps
		}
		attrs := []any{"method", r.Method, "path", r.URL.Path, "status", rec.status, "duration", time.Since(start),
			"client", clientIP(r, trusted)}
		if info.taskID != "" {
			attrs = append(attrs, "task_id", info.taskID)
		}
		log.Log(ctx, level, "http request", attrs...)
	})
}

func withRecovery(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.Error("panic in handler", "path", r.URL.Path, "panic", v)
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(http.StatusInternalServerError)
				_, _ = w.Write([]byte(`{"title":"Internal Server Error","status":500,"detail":"internal error"}`))
			}
		}()
		next.ServeHTTP(w, r)
	})
}
