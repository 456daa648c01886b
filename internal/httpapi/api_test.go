package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/artifact"
	"github.com/siganteng/siganteng/internal/httpapi"
	"github.com/siganteng/siganteng/internal/service"
	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
)

type fakeTasks struct {
	submitErr error
	syncErr   error
	got       task.GenerateTextInput
	records   map[string]*task.Record
	artifacts map[string][]byte
	gotSpeech task.TextToSpeechInput
	gotAudio  []byte
	gotList   service.ListQuery
	events    []service.Event // sent by FollowEvents, after an idle pause if idleFirst
	idleFirst bool
	gotAfter  string
}

func (f *fakeTasks) Models(context.Context) []task.ModelInfo {
	return []task.ModelInfo{{Name: "fake-model", Capability: task.TypeGenerateText, Default: true, Provider: "fake"}}
}

func (f *fakeTasks) Usage(_ context.Context, q service.UsageQuery) ([]task.DayUsage, error) {
	return []task.DayUsage{{Owner: "-", Date: q.From.Format(time.DateOnly), Tasks: 2, InputTokens: 10, OutputTokens: 5}}, nil
}

func (f *fakeTasks) List(_ context.Context, q service.ListQuery) (task.Page, error) {
	f.gotList = q
	if q.Cursor == "bad" {
		return task.Page{}, store.ErrBadCursor
	}
	var page task.Page
	for _, r := range f.records {
		if q.Status == "" || r.Status == q.Status {
			page.Tasks = append(page.Tasks, r)
		}
	}
	return page, nil
}

func (f *fakeTasks) HoldStream(context.Context) (func(), error) { return func() {}, nil }

func (f *fakeTasks) FollowEvents(_ context.Context, _ string, after string, _ time.Duration, send func(service.Event) error, idle func() error) error {
	f.gotAfter = after
	if f.idleFirst {
		if err := idle(); err != nil {
			return err
		}
	}
	for _, e := range f.events {
		if err := send(e); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeTasks) SubmitDescribeImage(_ context.Context, in task.DescribeImageInput) (*task.Record, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	return &task.Record{ID: "7a1c0c3e-0000-4000-8000-000000000002", Type: task.TypeDescribeImage, Status: task.StatusPending}, nil
}

func (f *fakeTasks) DescribeImage(_ context.Context, in task.DescribeImageInput) (*task.TextResult, error) {
	if f.syncErr != nil {
		return nil, f.syncErr
	}
	if err := in.Validate(); err != nil {
		return nil, err
	}
	return &task.TextResult{Text: "a cat", Provider: "fake"}, nil
}

func (f *fakeTasks) SubmitEmbed(_ context.Context, in task.EmbedInput) (*task.Record, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	return &task.Record{ID: "e1", Type: task.TypeEmbed, Status: task.StatusPending}, nil
}

func (f *fakeTasks) Embed(_ context.Context, in task.EmbedInput) (*task.EmbedResult, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	return &task.EmbedResult{Vectors: [][]float64{{0.5, 0.25}}, Dimensions: 2, Provider: "fake"}, nil
}

func (f *fakeTasks) SubmitSpeechToText(_ context.Context, in task.SpeechToTextInput, audio io.Reader) (*task.Record, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	b, _ := io.ReadAll(audio)
	f.gotAudio = b
	return &task.Record{ID: "s1", Type: task.TypeSpeechToText, Status: task.StatusPending}, nil
}

func (f *fakeTasks) SpeechToText(_ context.Context, in task.SpeechToTextInput, audio io.Reader) (*task.TranscriptResult, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	b, _ := io.ReadAll(audio)
	return &task.TranscriptResult{Text: fmt.Sprintf("%d bytes in %s", len(b), in.Language), Provider: "fake"}, nil
}

func (f *fakeTasks) SubmitTextToSpeech(_ context.Context, in task.TextToSpeechInput) (*task.Record, error) {
	f.gotSpeech = in
	if err := in.Validate(); err != nil {
		return nil, err
	}
	return &task.Record{ID: "5d1f6a3e-0000-4000-8000-000000000001", Type: task.TypeTextToSpeech, Status: task.StatusPending}, nil
}

func (f *fakeTasks) TextToSpeech(_ context.Context, in task.TextToSpeechInput) (*service.Audio, error) {
	f.gotSpeech = in
	if f.syncErr != nil {
		return nil, f.syncErr
	}
	if err := in.Validate(); err != nil {
		return nil, err
	}
	return &service.Audio{Body: io.NopCloser(strings.NewReader("RIFF....WAVE")), ContentType: "audio/wav"}, nil
}

func (f *fakeTasks) OpenArtifact(ctx context.Context, id string) (task.Artifact, artifact.Object, error) {
	rec, err := f.Get(ctx, id)
	if err != nil {
		return task.Artifact{}, nil, err
	}
	if !rec.Status.Terminal() {
		return task.Artifact{}, nil, &task.Error{Code: task.ECONFLICT, Message: "not finished"}
	}
	art, ok := task.ArtifactOf(rec)
	if !ok {
		return task.Artifact{}, nil, task.NotFound(id)
	}
	return art, &memObject{Reader: bytes.NewReader(f.artifacts[id])}, nil
}

type memObject struct{ *bytes.Reader }

func (m *memObject) Close() error       { return nil }
func (m *memObject) ModTime() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }

func (f *fakeTasks) SubmitGenerateText(_ context.Context, in task.GenerateTextInput) (*task.Record, error) {
	f.got = in
	if f.submitErr != nil {
		return nil, f.submitErr
	}
	if err := in.Validate(); err != nil {
		return nil, err
	}
	return &task.Record{ID: "0b6e3a4e-1d5f-4a54-9a3c-6a0d3f2b9c11", Type: task.TypeGenerateText, Status: task.StatusPending,
		CreatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}, nil
}

func (f *fakeTasks) GenerateText(_ context.Context, in task.GenerateTextInput) (*task.TextResult, error) {
	f.got = in
	if f.syncErr != nil {
		return nil, f.syncErr
	}
	if err := in.Validate(); err != nil {
		return nil, err
	}
	return &task.TextResult{Text: "hi", Model: "m", Provider: "fake"}, nil
}

func (f *fakeTasks) Cancel(ctx context.Context, id string) (*task.Record, error) {
	rec, err := f.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if !rec.Status.Terminal() {
		rec.Status = task.StatusRevoked
	}
	return rec, nil
}

func (f *fakeTasks) Idempotent(_ context.Context, key string, _ task.Type, _ any, submit func() (*task.Record, error)) (*task.Record, bool, error) {
	rec, err := submit()
	return rec, key == "replay-me", err
}

func (f *fakeTasks) Wait(ctx context.Context, id string, _ time.Duration) (*task.Record, error) {
	if rec, ok := f.records[id]; ok {
		return rec, nil
	}
	return &task.Record{ID: id, Status: task.StatusPending}, nil
}

func (f *fakeTasks) GetLinked(ctx context.Context, id string) (*task.Record, error) {
	return f.Get(ctx, id)
}

func (f *fakeTasks) Get(_ context.Context, id string) (*task.Record, error) {
	if r, ok := f.records[id]; ok {
		return r, nil
	}
	return nil, task.NotFound(id)
}

type testBundle struct {
	srv   *httptest.Server
	tasks *fakeTasks
	ready error
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	b := &testBundle{tasks: &fakeTasks{records: map[string]*task.Record{}, artifacts: map[string][]byte{}}}
	h := httpapi.New(httpapi.Deps{
		Tasks:          b.tasks,
		Ready:          func(context.Context) error { return b.ready },
		Log:            slog.New(slog.NewTextHandler(io.Discard, nil)),
		Version:        "test",
		MaxUploadBytes: 1 << 20,
	})
	b.srv = httptest.NewServer(h)
	t.Cleanup(b.srv.Close)
	return b
}

type problem struct {
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Errors []struct {
		Message  string `json:"message"`
		Location string `json:"location"`
	} `json:"errors"`
}

func (b *testBundle) do(t *testing.T, method, path, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, b.srv.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res, raw
}

func requireProblem(t *testing.T, res *http.Response, raw []byte, status int) problem {
	t.Helper()
	require.Equal(t, status, res.StatusCode, "%s", raw)
	require.Equal(t, "application/problem+json", res.Header.Get("Content-Type"))
	var p problem
	require.NoError(t, json.Unmarshal(raw, &p))
	require.Equal(t, status, p.Status)
	return p
}

func TestSubmitAnswers202WithLocation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res, raw := b.do(t, http.MethodPost, "/background/generate_text",
		`{"prompt":"Write a haiku","system":"terse","model":"m","max_tokens":50,"temperature":0.3}`)
	require.Equal(t, http.StatusAccepted, res.StatusCode, "%s", raw)
	require.Equal(t, "/background/tasks/0b6e3a4e-1d5f-4a54-9a3c-6a0d3f2b9c11", res.Header.Get("Location"))
	var rec map[string]any
	require.NoError(t, json.Unmarshal(raw, &rec))
	require.Equal(t, "0b6e3a4e-1d5f-4a54-9a3c-6a0d3f2b9c11", rec["task_id"])
	require.Equal(t, "PENDING", rec["status"])
	require.Equal(t, "generate_text", rec["type"])
	require.NotContains(t, rec, "$schema")
	require.Equal(t, "Write a haiku", b.tasks.got.Prompt)
	require.Equal(t, "terse", b.tasks.got.System)
	require.Equal(t, 50, *b.tasks.got.MaxTokens)
}

func TestSubmitIgnoresUnknownFieldsLikeTheOriginal(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res, raw := b.do(t, http.MethodPost, "/background/generate_text", `{"prompt":"x","user_id":42}`)
	require.Equal(t, http.StatusAccepted, res.StatusCode, "%s", raw)
}

func TestBadBodiesAreProblemsNamingTheField(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for body, location := range map[string]string{
		`{}`:              "body.prompt",
		`{"messages":[]}`: "body.messages",
		`{"prompt":"x","messages":[{"role":"user","content":"y"}]}`:              "body.messages",
		`{"messages":[{"role":"wizard","content":"x"}]}`:                         "body.messages[0].role",
		`{"messages":[{"role":"user","content":"  "}]}`:                          "body.messages[0].content",
		`{"messages":[{"role":"user","content":[{"type":"video","text":"x"}]}]}`: "body.messages[0].content[0].type",
		`{"messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]}]}`: "body.messages",
		`{"messages":[{"role":"user","content":"x"},{"role":"tool","tool_call_id":"c9","content":"1"}]}`:                                                          "body.messages[1].tool_call_id",
		`{"prompt":"x","response_format":{"type":"json_schema","json_schema":{"name":"s","schema":[1]}}}`:                                                         "body.response_format.json_schema.schema",
		`{"prompt":"x","response_format":{"type":"json_schema","json_schema":{"name":"s","schema":{"type":"string"}}}}`:                                           "body.response_format.json_schema.schema.type",
		`{"prompt":"x","tools":[{"type":"function","function":{"name":"f","parameters":"no"}}]}`:                                                                  "body.tools[0].function.parameters",
		`{"prompt":"x","tool_choice":{"type":"function","function":{"name":"g"}}}`:                                                                                "body.tool_choice",
		`{"prompt":"x","top_p":3}`:                                  "body.top_p",
		`{"prompt":"x","stop":["a","b","c","d","e"]}`:               "body.stop",
		`{"prompt":""}`:                                             "body.prompt",
		`{"prompt":"   "}`:                                          "body.prompt",
		`{"prompt":42}`:                                             "body.prompt",
		`{"prompt":"x","max_tokens":0}`:                             "body.max_tokens",
		`{"prompt":"x","max_tokens":"many"}`:                        "body.max_tokens",
		`{"prompt":"x","temperature":9}`:                            "body.temperature",
		`{"prompt":"x","model":"` + strings.Repeat("m", 300) + `"}`: "body.model",
	} {
		for _, path := range []string{"/background/generate_text", "/generate_text"} {
			res, raw := b.do(t, http.MethodPost, path, body)
			require.Equal(t, http.StatusUnprocessableEntity, res.StatusCode, "%s -> %s", body, raw)
			p := requireProblem(t, res, raw, http.StatusUnprocessableEntity)
			require.NotEmpty(t, p.Errors, "%s", raw)
			require.Equal(t, location, p.Errors[0].Location, "%s -> %s", body, raw)
		}
	}
}

func TestMalformedJSONIs400(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res, raw := b.do(t, http.MethodPost, "/background/generate_text", `{"prompt":`)
	requireProblem(t, res, raw, http.StatusBadRequest)
}

func TestOversizedBodyIs413(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// generate_text's bound is MAX_BODY_BYTES and room for an inline image
	// of MAX_UPLOAD_BYTES (1 MiB here); embed's is MAX_BODY_BYTES alone.
	res, raw := b.do(t, http.MethodPost, "/background/generate_text", `{"prompt":"`+strings.Repeat("a", 3<<20)+`"}`)
	requireProblem(t, res, raw, http.StatusRequestEntityTooLarge)
	res, raw = b.do(t, http.MethodPost, "/background/embed", `{"input":["`+strings.Repeat("a", 2<<20)+`"]}`)
	requireProblem(t, res, raw, http.StatusRequestEntityTooLarge)
}

func TestPromptOverTheLimitIs422(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res, raw := b.do(t, http.MethodPost, "/background/generate_text", `{"prompt":"`+strings.Repeat("a", task.MaxPromptChars+1)+`"}`)
	p := requireProblem(t, res, raw, http.StatusUnprocessableEntity)
	require.Equal(t, "body.prompt", p.Errors[0].Location)
}

func TestStoreDownIs503WithRetryAfter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.tasks.submitErr = task.Unavailable("the task store is unavailable; nothing was queued", errors.New("dial tcp: connection refused"))
	res, raw := b.do(t, http.MethodPost, "/background/generate_text", `{"prompt":"x"}`)
	p := requireProblem(t, res, raw, http.StatusServiceUnavailable)
	require.NotEmpty(t, res.Header.Get("Retry-After"))
	require.NotContains(t, string(raw), "connection refused", "causes are logged, not shown")
	require.Contains(t, p.Detail, "nothing was queued")
}

func TestGetTask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	done := time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)
	b.tasks.records["abc"] = &task.Record{ID: "abc", Type: task.TypeGenerateText, Status: task.StatusSuccess, Attempts: 1,
		CompletedAt: &done, Result: json.RawMessage(`{"text":"hi","model":"m","provider":"fake","usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`)}
	res, raw := b.do(t, http.MethodGet, "/background/tasks/abc", "")
	require.Equal(t, http.StatusOK, res.StatusCode, "%s", raw)
	var rec struct {
		TaskID string          `json:"task_id"`
		Status string          `json:"status"`
		Result json.RawMessage `json:"result"`
	}
	require.NoError(t, json.Unmarshal(raw, &rec))
	require.Equal(t, "abc", rec.TaskID)
	require.Equal(t, "SUCCESS", rec.Status)
	require.JSONEq(t, string(b.tasks.records["abc"].Result), string(rec.Result))
}

func TestUnknownTaskIs404(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res, raw := b.do(t, http.MethodGet, "/background/tasks/does-not-exist", "")
	requireProblem(t, res, raw, http.StatusNotFound)
}

func TestSyncErrorsMapToStatuses(t *testing.T) {
	t.Parallel()
	for code, status := range map[task.ErrorCode]int{
		task.EUNAVAILABLE: http.StatusServiceUnavailable,
		task.ETIMEOUT:     http.StatusGatewayTimeout,
		task.EREJECTED:    http.StatusUnprocessableEntity,
		task.EPROVIDER:    http.StatusBadGateway,
		task.EINTERNAL:    http.StatusInternalServerError,
	} {
		b := setup(t)
		b.tasks.syncErr = &task.Error{Code: code, Message: "openai: something"}
		res, raw := b.do(t, http.MethodPost, "/generate_text", `{"prompt":"x"}`)
		requireProblem(t, res, raw, status)
	}
}

func TestSyncSuccess(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res, raw := b.do(t, http.MethodPost, "/generate_text", `{"prompt":"x"}`)
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.JSONEq(t, `{"text":"hi","model":"m","provider":"fake","usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}`, string(raw))
}

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res, _ := b.do(t, http.MethodGet, "/healthz", "")
	require.Equal(t, http.StatusOK, res.StatusCode)
	res, _ = b.do(t, http.MethodGet, "/readyz", "")
	require.Equal(t, http.StatusOK, res.StatusCode)
	b.ready = errors.New("redis: connection refused")
	res, raw := b.do(t, http.MethodGet, "/readyz", "")
	requireProblem(t, res, raw, http.StatusServiceUnavailable)
}

func TestDocsAndOpenAPI(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res, raw := b.do(t, http.MethodGet, "/docs", "") // redirected to /docs/
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Contains(t, string(raw), "swagger-ui-bundle.js")
	require.NotRegexp(t, `(src|href)="(https?:)?//`, string(raw), "every asset comes from the binary")
	require.Regexp(t, `src="/docs/swagger-ui-bundle.js"`, string(raw))
	require.Contains(t, res.Header.Get("Content-Security-Policy"), "script-src 'self'")
	res, raw = b.do(t, http.MethodGet, "/docs/swagger-ui-bundle.js", "")
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Greater(t, len(raw), 100_000, "Swagger UI itself")
	res, raw = b.do(t, http.MethodGet, "/openapi.json", "")
	require.Equal(t, http.StatusOK, res.StatusCode)
	var doc struct {
		OpenAPI string                     `json:"openapi"`
		Paths   map[string]json.RawMessage `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(raw, &doc))
	require.Equal(t, "3.1.0", doc.OpenAPI)
	for _, p := range []string{"/background/generate_text", "/background/text_to_speech", "/background/describe_image", "/describe_image", "/background/embed", "/embed", "/background/speech_to_text", "/speech_to_text", "/background/tasks/{task_id}/cancel", "/background/tasks/{task_id}",
		"/background/tasks/{task_id}/artifact", "/generate_text", "/text_to_speech", "/healthz", "/readyz"} {
		require.Contains(t, doc.Paths, p)
	}
	offline, err := httpapi.OpenAPI("test", 1<<20)
	require.NoError(t, err)
	require.JSONEq(t, string(raw), string(offline), "siganteng openapi prints what the server serves")
}

func TestSubmitTextToSpeech(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res, raw := b.do(t, http.MethodPost, "/background/text_to_speech", `{"text":"Halo","voice":"id","format":"wav","speed":1.25}`)
	require.Equal(t, http.StatusAccepted, res.StatusCode, "%s", raw)
	require.Equal(t, "/background/tasks/5d1f6a3e-0000-4000-8000-000000000001", res.Header.Get("Location"))
	require.Equal(t, "id", b.tasks.gotSpeech.Voice)
	require.InDelta(t, 1.25, *b.tasks.gotSpeech.Speed, 1e-9)

	for body, location := range map[string]string{
		`{}`:                          "body",
		`{"text":" "}`:                "body.text",
		`{"text":"x","format":"ogg"}`: "body.format",
		`{"text":"x","speed":9}`:      "body.speed",
		`{"text":"` + strings.Repeat("a", task.MaxSpeechChars+1) + `"}`: "body.text",
	} {
		res, raw := b.do(t, http.MethodPost, "/background/text_to_speech", body)
		p := requireProblem(t, res, raw, http.StatusUnprocessableEntity)
		require.Equal(t, location, p.Errors[0].Location, "%s", body)
	}
}

func TestTextToSpeechNowStreamsAudio(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res, raw := b.do(t, http.MethodPost, "/text_to_speech", `{"text":"Halo"}`)
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "audio/wav", res.Header.Get("Content-Type"))
	require.Equal(t, "RIFF....WAVE", string(raw))

	b.tasks.syncErr = &task.Error{Code: task.EREJECTED, Message: "espeak: rejected: espeak-ng makes wav only, not mp3"}
	res, raw = b.do(t, http.MethodPost, "/text_to_speech", `{"text":"Halo","format":"mp3"}`)
	requireProblem(t, res, raw, http.StatusUnprocessableEntity)
}

func TestArtifactDownload(t *testing.T) {
	t.Parallel()
	b := setup(t)
	audio := bytes.Repeat([]byte("0123456789"), 1000)
	b.tasks.artifacts["done"] = audio
	b.tasks.records["done"] = &task.Record{ID: "done", Type: task.TypeTextToSpeech, Status: task.StatusSuccess,
		Result: json.RawMessage(`{"artifact":{"url":"/background/tasks/done/artifact","content_type":"audio/wav","size":10000},"provider":"espeak","format":"wav"}`)}
	b.tasks.records["running"] = &task.Record{ID: "running", Type: task.TypeTextToSpeech, Status: task.StatusStarted}
	b.tasks.records["text"] = &task.Record{ID: "text", Type: task.TypeGenerateText, Status: task.StatusSuccess, Result: json.RawMessage(`{"text":"hi"}`)}

	res, raw := b.do(t, http.MethodGet, "/background/tasks/done/artifact", "")
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "audio/wav", res.Header.Get("Content-Type"))
	require.Equal(t, "10000", res.Header.Get("Content-Length"))
	require.Equal(t, "bytes", res.Header.Get("Accept-Ranges"))
	require.Equal(t, audio, raw)

	req, err := http.NewRequest(http.MethodGet, b.srv.URL+"/background/tasks/done/artifact", nil)
	require.NoError(t, err)
	req.Header.Set("Range", "bytes=10-19")
	rres, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	part, _ := io.ReadAll(rres.Body)
	rres.Body.Close()
	require.Equal(t, http.StatusPartialContent, rres.StatusCode)
	require.Equal(t, "bytes 10-19/10000", rres.Header.Get("Content-Range"))
	require.Equal(t, "0123456789", string(part))

	res, raw = b.do(t, http.MethodGet, "/background/tasks/running/artifact", "")
	requireProblem(t, res, raw, http.StatusConflict)
	res, raw = b.do(t, http.MethodGet, "/background/tasks/text/artifact", "")
	requireProblem(t, res, raw, http.StatusNotFound)
	res, raw = b.do(t, http.MethodGet, "/background/tasks/nope/artifact", "")
	requireProblem(t, res, raw, http.StatusNotFound)
}

func TestDescribeImageRequests(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res, raw := b.do(t, http.MethodPost, "/background/describe_image", `{"image_url":"https://example.com/cat.jpg","prompt":"What animal?"}`)
	require.Equal(t, http.StatusAccepted, res.StatusCode, "%s", raw)
	for body, location := range map[string]string{
		`{}`:                                       "body",
		`{"image_url":"file:///etc/passwd"}`:       "body.image_url",
		`{"image_url":"ftp://example.com/a"}`:      "body.image_url",
		`{"image_url":"https://x","max_tokens":0}`: "body.max_tokens",
	} {
		res, raw := b.do(t, http.MethodPost, "/background/describe_image", body)
		p := requireProblem(t, res, raw, http.StatusUnprocessableEntity)
		require.Equal(t, location, p.Errors[0].Location, "%s", body)
	}
	// The body limit follows MAX_UPLOAD_BYTES (1 MiB here), base64 included.
	res, raw = b.do(t, http.MethodPost, "/background/describe_image", `{"image_url":"data:image/png;base64,`+strings.Repeat("A", 2<<20)+`"}`)
	requireProblem(t, res, raw, http.StatusRequestEntityTooLarge)
}

func TestTooLargeAndUnsupportedMapTo413And415(t *testing.T) {
	t.Parallel()
	for code, status := range map[task.ErrorCode]int{task.ETOOLARGE: http.StatusRequestEntityTooLarge, task.EUNSUPPORTED: http.StatusUnsupportedMediaType} {
		b := setup(t)
		b.tasks.syncErr = &task.Error{Code: code, Field: "image_url", Message: "the image is text/html; accepted: image/png"}
		res, raw := b.do(t, http.MethodPost, "/describe_image", `{"image_url":"https://x/y.png"}`)
		p := requireProblem(t, res, raw, status)
		require.Equal(t, "body.image_url", p.Errors[0].Location)
	}
}

func TestEmbedRequests(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res, raw := b.do(t, http.MethodPost, "/background/embed", `{"input":["kucing","cat"],"dimensions":256}`)
	require.Equal(t, http.StatusAccepted, res.StatusCode, "%s", raw)
	res, raw = b.do(t, http.MethodPost, "/embed", `{"input":["kucing"]}`)
	require.Equal(t, http.StatusOK, res.StatusCode, "%s", raw)
	require.JSONEq(t, `{"vectors":[[0.5,0.25]],"dimensions":2,"model":"","provider":"fake","usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}`, string(raw))
	many := `["` + strings.Repeat(`x","`, 256) + `x"]`
	for body, location := range map[string]string{
		`{}`:                             "body",
		`{"input":[]}`:                   "body.input",
		`{"input":"one string"}`:         "body.input",
		`{"input":["ok"," "]}`:           "body.input",
		`{"input":` + many + `}`:         "body.input",
		`{"input":["x"],"dimensions":0}`: "body.dimensions",
	} {
		res, raw := b.do(t, http.MethodPost, "/background/embed", body)
		p := requireProblem(t, res, raw, http.StatusUnprocessableEntity)
		require.Equal(t, location, p.Errors[0].Location, "%s", body)
	}
}

func multipartBody(t *testing.T, fields map[string]string, file []byte) (string, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for k, v := range fields {
		require.NoError(t, w.WriteField(k, v))
	}
	if file != nil {
		fw, err := w.CreateFormFile("file", "rapat.wav")
		require.NoError(t, err)
		_, _ = fw.Write(file)
	}
	require.NoError(t, w.Close())
	return w.FormDataContentType(), &buf
}

func TestSpeechToTextUploads(t *testing.T) {
	t.Parallel()
	b := setup(t)
	post := func(path, contentType string, body io.Reader) (*http.Response, []byte) {
		res, err := http.Post(b.srv.URL+path, contentType, body)
		require.NoError(t, err)
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		return res, raw
	}
	audio := bytes.Repeat([]byte("a"), 3000)
	ct, body := multipartBody(t, map[string]string{"language": "id", "model": "whisper-1"}, audio)
	res, raw := post("/background/speech_to_text", ct, body)
	require.Equal(t, http.StatusAccepted, res.StatusCode, "%s", raw)
	require.Equal(t, audio, b.tasks.gotAudio)

	ct, body = multipartBody(t, map[string]string{"language": "id"}, audio)
	res, raw = post("/speech_to_text", ct, body)
	require.Equal(t, http.StatusOK, res.StatusCode, "%s", raw)
	require.Contains(t, string(raw), `"text":"3000 bytes in id"`)

	ct, body = multipartBody(t, map[string]string{"language": "Indonesian"}, audio)
	res, raw = post("/background/speech_to_text", ct, body)
	p := requireProblem(t, res, raw, http.StatusUnprocessableEntity)
	require.Equal(t, "body.language", p.Errors[0].Location)

	ct, body = multipartBody(t, nil, nil)
	res, raw = post("/background/speech_to_text", ct, body)
	requireProblem(t, res, raw, http.StatusUnprocessableEntity)

	ct, body = multipartBody(t, nil, bytes.Repeat([]byte("a"), 2<<20)) // MAX_UPLOAD_BYTES is 1 MiB here
	res, raw = post("/background/speech_to_text", ct, body)
	requireProblem(t, res, raw, http.StatusRequestEntityTooLarge)
}

func TestPreferWait(t *testing.T) {
	t.Parallel()
	b := setup(t)
	submitWith := func(prefer string) *http.Response {
		req, err := http.NewRequest(http.MethodPost, b.srv.URL+"/background/generate_text", strings.NewReader(`{"prompt":"x"}`))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		if prefer != "" {
			req.Header.Set("Prefer", prefer)
		}
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		return res
	}
	// Not finished within the wait: 202, and the preference was honoured.
	res := submitWith("respond-async, wait=5")
	require.Equal(t, http.StatusAccepted, res.StatusCode)
	require.Equal(t, "wait=5", res.Header.Get("Preference-Applied"))

	// Finished: 200 with the final record.
	b.tasks.records["0b6e3a4e-1d5f-4a54-9a3c-6a0d3f2b9c11"] = &task.Record{ID: "0b6e3a4e-1d5f-4a54-9a3c-6a0d3f2b9c11", Status: task.StatusSuccess}
	res = submitWith("wait=600")
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "wait=60", res.Header.Get("Preference-Applied"), "capped at 60 seconds")

	for _, ignored := range []string{"", "wait=soon", "wait=-3", "handling=strict"} {
		res = submitWith(ignored)
		require.Equal(t, http.StatusAccepted, res.StatusCode, ignored)
		require.Empty(t, res.Header.Get("Preference-Applied"), ignored)
	}
}

func TestIdempotentReplayHeader(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for key, want := range map[string]string{"replay-me": "true", "fresh": ""} {
		req, err := http.NewRequest(http.MethodPost, b.srv.URL+"/background/embed", strings.NewReader(`{"input":["x"]}`))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		require.Equal(t, http.StatusAccepted, res.StatusCode)
		require.Equal(t, want, res.Header.Get("Idempotent-Replayed"), key)
	}
}
