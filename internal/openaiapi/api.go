// Package openaiapi is SIGANTENG's OpenAI-compatible front, under /v1: chat
// completions, responses (background ones included), embeddings, audio,
// models, files and batches, in OpenAI's shapes, so that code written for an OpenAI SDK runs on
// SIGANTENG by changing its base URL. It translates to the same task kinds
// and service as the native API (internal/httpapi) and back; it holds no
// logic of its own beyond the translation.
package openaiapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/siganteng/siganteng/internal/artifact"
	"github.com/siganteng/siganteng/internal/service"
	"github.com/siganteng/siganteng/internal/task"
)

// Tasks is the service as this front uses it.
type Tasks interface {
	GenerateText(ctx context.Context, in task.GenerateTextInput) (*task.TextResult, error)
	StreamText(ctx context.Context, in task.GenerateTextInput, onText func(string)) (*task.TextResult, error)
	SubmitGenerateTextKeeping(ctx context.Context, in task.GenerateTextInput, request []byte) (*task.Record, error)
	KeptRequest(ctx context.Context, rec *task.Record) ([]byte, error)
	Get(ctx context.Context, id string) (*task.Record, error)
	Cancel(ctx context.Context, id string) (*task.Record, error)
	Delete(ctx context.Context, id string) error
	Embed(ctx context.Context, in task.EmbedInput) (*task.EmbedResult, error)
	TextToSpeech(ctx context.Context, in task.TextToSpeechInput) (*service.Audio, error)
	SpeechToText(ctx context.Context, in task.SpeechToTextInput, audio io.Reader) (*task.TranscriptResult, error)
	Models(ctx context.Context) []task.ModelInfo
	HoldStream(ctx context.Context) (release func(), err error)
	FollowEvents(ctx context.Context, id, after string, keepalive time.Duration, send func(service.Event) error, idle func() error) error

	CreateFile(ctx context.Context, in service.FileInput, body io.Reader) (*task.File, error)
	GetFile(ctx context.Context, id string) (*task.File, error)
	OpenFile(ctx context.Context, id string) (*task.File, artifact.Object, error)
	ListFiles(ctx context.Context, purpose, after string, limit int, order string) ([]task.File, bool, error)
	DeleteFile(ctx context.Context, id string) error
	CreateBatch(ctx context.Context, in service.BatchInput) (*task.Batch, error)
	GetBatch(ctx context.Context, id string) (*task.Batch, error)
	ListBatches(ctx context.Context, after string, limit int) ([]task.Batch, bool, error)
	CancelBatch(ctx context.Context, id string) (*task.Batch, error)
}

// Deps are what the front needs.
type Deps struct {
	Tasks Tasks
	Log   *slog.Logger
	// MaxBodyBytes bounds JSON request bodies; MaxUploadBytes audio files.
	MaxBodyBytes, MaxUploadBytes int64
	// MaxFileBytes bounds a file of the Files API.
	MaxFileBytes int64
	// Keepalive is how often an idle stream gets a comment line; 15 s
	// when zero.
	Keepalive time.Duration
	Now       func() time.Time // time.Now when nil
}

type api struct{ deps Deps }

// New returns the handler for the /v1 paths. Authentication, rate limits
// and the access log are the caller's (internal/httpapi wraps it).
func New(deps Deps) http.Handler {
	if deps.Keepalive == 0 {
		deps.Keepalive = 15 * time.Second
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	a := &api{deps: deps}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", a.chatCompletions)
	mux.HandleFunc("POST /v1/responses", a.createResponse)
	mux.HandleFunc("GET /v1/responses/{id}", a.getResponse)
	mux.HandleFunc("POST /v1/responses/{id}/cancel", a.cancelResponse)
	mux.HandleFunc("DELETE /v1/responses/{id}", a.deleteResponse)
	mux.HandleFunc("GET /v1/responses/{id}/input_items", a.inputItems)
	mux.HandleFunc("POST /v1/embeddings", a.embeddings)
	mux.HandleFunc("POST /v1/audio/speech", a.speech)
	mux.HandleFunc("POST /v1/audio/transcriptions", a.transcriptions)
	mux.HandleFunc("GET /v1/models", a.models)
	mux.HandleFunc("GET /v1/models/{id}", a.model)
	mux.HandleFunc("POST /v1/files", a.createFile)
	mux.HandleFunc("GET /v1/files", a.listFiles)
	mux.HandleFunc("GET /v1/files/{id}", a.getFile)
	mux.HandleFunc("GET /v1/files/{id}/content", a.fileContent)
	mux.HandleFunc("DELETE /v1/files/{id}", a.deleteFile)
	mux.HandleFunc("POST /v1/batches", a.createBatch)
	mux.HandleFunc("GET /v1/batches", a.listBatches)
	mux.HandleFunc("GET /v1/batches/{id}", a.getBatch)
	mux.HandleFunc("POST /v1/batches/{id}/cancel", a.cancelBatch)
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, http.StatusNotFound, fmt.Sprintf("SIGANTENG does not serve %s %s", r.Method, r.URL.Path), "", "unknown_url")
	})
	return mux
}

// errorBody is OpenAI's error object.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func errorOf(status int, message, param, code string) errorBody {
	typ := "invalid_request_error"
	switch {
	case status == http.StatusUnauthorized:
		typ = "authentication_error"
	case status == http.StatusForbidden:
		typ = "permission_error"
	case status == http.StatusNotFound:
		typ = "not_found_error"
	case status == http.StatusTooManyRequests:
		typ = "rate_limit_error"
	case status >= 500:
		typ = "server_error"
	}
	e := errorDetail{Message: message, Type: typ}
	if param != "" {
		e.Param = &param
	}
	if code != "" {
		e.Code = &code
	}
	return errorBody{Error: e}
}

// WriteError answers with OpenAI's error object, as the SDKs read it; the
// HTTP layer uses it for the refusals it makes before this front runs.
func WriteError(w http.ResponseWriter, status int, message, param, code string) {
	writeJSON(w, status, errorOf(status, message, param, code))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// statusOf maps an application error to OpenAI's status, param and code,
// as OpenAI answers the same fault.
func (a *api) statusOf(ctx context.Context, err error) (int, string, string, string, time.Duration) {
	var e *task.Error
	if !errors.As(err, &e) {
		a.deps.Log.ErrorContext(ctx, "unexpected error", "err", err)
		return http.StatusInternalServerError, "internal error", "", "", 0
	}
	switch e.Code {
	case task.EINVALID:
		if e.Field == "model" {
			// An unknown model, or one this key may not use: to the key
			// it does not exist, as OpenAI says of models it lacks.
			return http.StatusNotFound, e.Message, "model", "model_not_found", 0
		}
		return http.StatusBadRequest, e.Message, e.Field, "invalid_value", 0
	case task.ETOOLARGE:
		return http.StatusRequestEntityTooLarge, e.Message, e.Field, "too_large", 0
	case task.EUNSUPPORTED:
		return http.StatusBadRequest, e.Message, e.Field, "unsupported_format", 0
	case task.ENOTFOUND:
		return http.StatusNotFound, e.Message, "", "not_found", 0
	case task.ECONFLICT:
		return http.StatusConflict, e.Message, "", "conflict", 0
	case task.ELIMITED:
		return http.StatusTooManyRequests, e.Message, "", "rate_limit_exceeded", e.RetryAfter
	case task.EUNAVAILABLE:
		a.deps.Log.WarnContext(ctx, "unavailable", "err", err)
		return http.StatusServiceUnavailable, e.Message, "", "unavailable", e.RetryAfter
	case task.ETIMEOUT:
		return http.StatusGatewayTimeout, e.Message, "", "timeout", 0
	case task.EREJECTED:
		return http.StatusBadRequest, e.Message, "", "provider_rejected", 0
	case task.EPROVIDER:
		a.deps.Log.WarnContext(ctx, "provider failure", "err", err)
		return http.StatusBadGateway, e.Message, "", "provider_error", 0
	}
	a.deps.Log.ErrorContext(ctx, "internal error", "err", err)
	return http.StatusInternalServerError, "internal error", "", "", 0
}

// fail answers err in OpenAI's shape, with Retry-After where a retry helps.
func (a *api) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, message, param, code, retry := a.statusOf(r.Context(), err)
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(retry.Seconds())))))
	}
	WriteError(w, status, message, param, code)
}

// decode reads a JSON body of at most MaxBodyBytes into v. Fields this
// front does not know are ignored, as SDKs add optional ones over time;
// those that would change the answer are refused where they are read.
func (a *api) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	_, ok := a.decodeKeeping(w, r, v)
	return ok
}

// decodeKeeping is decode that also returns the body as it came.
func (a *api) decodeKeeping(w http.ResponseWriter, r *http.Request, v any) ([]byte, bool) {
	limit := a.deps.MaxBodyBytes
	if limit <= 0 {
		limit = 8 << 20
	}
	if r.ContentLength > limit {
		WriteError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body is larger than %d bytes (MAX_BODY_BYTES)", limit), "", "too_large")
		return nil, false
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err == nil {
		err = json.Unmarshal(raw, v)
	}
	if err != nil {
		var tooLarge *http.MaxBytesError
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.As(err, &tooLarge):
			WriteError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body is larger than %d bytes (MAX_BODY_BYTES)", limit), "", "too_large")
		case errors.As(err, &typeErr):
			WriteError(w, http.StatusBadRequest, fmt.Sprintf("%s must be of type %s", typeErr.Field, typeErr.Type), typeErr.Field, "invalid_type")
		default:
			WriteError(w, http.StatusBadRequest, "the body is not valid JSON: "+strings.TrimPrefix(err.Error(), "json: "), "", "invalid_json")
		}
		return nil, false
	}
	return raw, true
}

// stringOrList reads a field that is a string or a list of strings.
func stringOrList(raw json.RawMessage, param string) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, nil
	}
	var list []string
	if json.Unmarshal(raw, &list) != nil {
		return nil, task.Invalid(param, param+" must be a string or a list of strings")
	}
	return list, nil
}
