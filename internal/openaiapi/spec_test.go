package openaiapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pb33f/libopenapi"
	liberrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	"github.com/pb33f/libopenapi/datamodel/high/base"
	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/artifact"
	"github.com/siganteng/siganteng/internal/openaiapi"
	"github.com/siganteng/siganteng/internal/service"
	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
)

// fakeTasks is the service as a canned one: every call succeeds with a
// fixed answer, and records are kept in memory.
type fakeTasks struct {
	mu    sync.Mutex
	recs  map[string]*task.Record
	kept  map[string][]byte
	n     int
	stt   task.SpeechToTextInput
	audio []byte
	// holdErr refuses every waiting connection, as a key at its bound is.
	holdErr error
}

func (f *fakeTasks) result(in task.GenerateTextInput) *task.TextResult {
	out := &task.TextResult{Text: "hello there", Model: "gpt-test", Provider: "openai", FinishReason: "stop",
		Usage: task.Usage{PromptTokens: 3, CompletionTokens: 2, TotalTokens: 5}}
	if len(in.Tools) > 0 {
		out.Text, out.FinishReason = "", "tool_calls"
		out.ToolCalls = []task.ToolCall{{ID: "call_1", Type: "function", Function: task.FunctionCall{Name: in.Tools[0].Function.Name, Arguments: `{"q":"x"}`}}}
	}
	return out
}

func (f *fakeTasks) GenerateText(_ context.Context, in task.GenerateTextInput) (*task.TextResult, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	return f.result(in), nil
}

func (f *fakeTasks) StreamText(ctx context.Context, in task.GenerateTextInput, onText func(string)) (*task.TextResult, error) {
	out, err := f.GenerateText(ctx, in)
	if err == nil && out.Text != "" {
		onText("hello ")
		onText("there")
	}
	return out, err
}

func (f *fakeTasks) KeptRequest(_ context.Context, rec *task.Record) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if b, ok := f.kept[rec.ID]; ok {
		return b, nil
	}
	return nil, task.NotFound(rec.ID)
}

func (f *fakeTasks) SubmitGenerateTextKeeping(_ context.Context, in task.GenerateTextInput, request []byte) (*task.Record, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	summary, _ := json.Marshal(in.Summary())
	result, _ := json.Marshal(f.result(in))
	id := "00000000-0000-4000-8000-00000000000" + string(rune('0'+f.n%10))
	if f.recs == nil {
		f.recs, f.kept = map[string]*task.Record{}, map[string][]byte{}
	}
	f.kept[id] = request
	done := time.Unix(1741570300, 0)
	f.recs[id] = &task.Record{ID: id, Type: task.TypeGenerateText, Status: task.StatusSuccess, Input: summary, Result: result,
		CreatedAt: time.Unix(1741570283, 0), CompletedAt: &done}
	return &task.Record{ID: id, Type: task.TypeGenerateText, Status: task.StatusPending, Input: summary, CreatedAt: time.Unix(1741570283, 0)}, nil
}

func (f *fakeTasks) Get(_ context.Context, id string) (*task.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if rec, ok := f.recs[id]; ok {
		c := *rec
		return &c, nil
	}
	return nil, task.NotFound(id)
}

func (f *fakeTasks) Cancel(ctx context.Context, id string) (*task.Record, error) {
	return f.Get(ctx, id)
}

func (f *fakeTasks) Delete(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.recs, id)
	return nil
}

func (f *fakeTasks) Embed(_ context.Context, in task.EmbedInput) (*task.EmbedResult, error) {
	out := &task.EmbedResult{Model: "text-embedding-3-small", Usage: task.Usage{PromptTokens: 2, TotalTokens: 2}}
	for range in.Input {
		out.Vectors = append(out.Vectors, []float64{0.25, -0.5, 1})
	}
	return out, nil
}

func (f *fakeTasks) TextToSpeech(context.Context, task.TextToSpeechInput) (*service.Audio, error) {
	return &service.Audio{Body: io.NopCloser(strings.NewReader("ID3 audio")), ContentType: "audio/mpeg"}, nil
}

func (f *fakeTasks) SpeechToText(_ context.Context, in task.SpeechToTextInput, audio io.Reader) (*task.TranscriptResult, error) {
	b, _ := io.ReadAll(audio)
	f.mu.Lock()
	f.stt, f.audio = in, b
	f.mu.Unlock()
	return &task.TranscriptResult{Text: "selamat pagi", Language: "id", Duration: 1.5}, nil
}

func (f *fakeTasks) Models(context.Context) []task.ModelInfo {
	return []task.ModelInfo{{Name: "gpt-test", Capability: task.TypeGenerateText, Default: true, Provider: "openai"}}
}

var (
	cannedFile  = task.File{ID: "file-abc", Bytes: 120, CreatedAt: time.Unix(1700000000, 0), Filename: "in.jsonl", Purpose: task.PurposeBatch}
	cannedBatch = task.Batch{ID: "batch_abc", InputFileID: "file-abc", Endpoint: "/v1/chat/completions", CompletionWindow: "24h",
		Status: task.BatchInProgress, CreatedAt: time.Unix(1700000000, 0), ExpiresAt: time.Unix(1700086400, 0), Total: 3, Completed: 1,
		Metadata: map[string]string{"job": "nightly"}}
)

func (f *fakeTasks) CreateFile(_ context.Context, in service.FileInput, body io.Reader) (*task.File, error) {
	n, _ := io.Copy(io.Discard, body)
	out := cannedFile
	out.Bytes, out.Filename, out.Purpose = n, in.Filename, in.Purpose
	return &out, nil
}

func (f *fakeTasks) GetFile(_ context.Context, id string) (*task.File, error) {
	if id != cannedFile.ID {
		return nil, &task.Error{Code: task.ENOTFOUND, Message: "no such file"}
	}
	return &cannedFile, nil
}

func (f *fakeTasks) OpenFile(context.Context, string) (*task.File, artifact.Object, error) {
	return nil, nil, &task.Error{Code: task.ENOTFOUND, Message: "no such file"}
}

func (f *fakeTasks) ListFiles(context.Context, string, string, int, string) ([]task.File, bool, error) {
	return []task.File{cannedFile}, false, nil
}

func (f *fakeTasks) DeleteFile(context.Context, string) error { return nil }

func (f *fakeTasks) CreateBatch(context.Context, service.BatchInput) (*task.Batch, error) {
	b := cannedBatch
	b.Status = task.BatchValidating
	return &b, nil
}

func (f *fakeTasks) GetBatch(context.Context, string) (*task.Batch, error) { return &cannedBatch, nil }

func (f *fakeTasks) ListBatches(context.Context, string, int) ([]task.Batch, bool, error) {
	ended := cannedBatch
	at := time.Unix(1700000500, 0)
	ended.Status, ended.CompletedAt, ended.OutputFileID = task.BatchCompleted, &at, "file-out"
	ended.InProgressAt, ended.FinalizingAt = &at, &at
	return []task.Batch{cannedBatch, ended}, true, nil
}

func (f *fakeTasks) CancelBatch(context.Context, string) (*task.Batch, error) {
	b := cannedBatch
	at := time.Unix(1700000100, 0)
	b.Status, b.CancellingAt = task.BatchCancelling, &at
	return &b, nil
}

func (f *fakeTasks) HoldStream(context.Context) (func(), error) {
	if f.holdErr != nil {
		return nil, f.holdErr
	}
	return func() {}, nil
}

func (f *fakeTasks) FollowEvents(ctx context.Context, id, _ string, _ time.Duration, send func(service.Event) error, _ func() error) error {
	rec, err := f.Get(ctx, id)
	if err != nil {
		return err
	}
	for _, piece := range []string{"hello ", "there"} {
		data, _ := json.Marshal(store.DeltaEvent{TaskID: id, Attempt: 1, Text: piece})
		if err := send(service.Event{Kind: store.EventDelta, Data: data}); err != nil {
			return err
		}
	}
	data, _ := json.Marshal(rec)
	return send(service.Event{Kind: store.EventStatus, Data: data})
}

const specPath = "../../../shared/specs/openai.openapi.yaml"

// spec loads OpenAI's document without 3.0's nullable lines (as the
// adapter's tests do), or skips where it is absent or under -race.
func spec(t *testing.T) func(name string) *base.Schema {
	t.Helper()
	if raceEnabled {
		t.Skip("OpenAI's document takes minutes to load under the race detector; .ci/run runs this test without it")
	}
	raw, err := os.ReadFile(specPath)
	if os.IsNotExist(err) {
		t.Skipf("OpenAI's OpenAPI document is not at %s", specPath)
	}
	require.NoError(t, err)
	// The document as published, with 3.0's nullable honoured: a null
	// finish_reason or usage is what OpenAI itself sends.
	whole, err := libopenapi.NewDocument(raw)
	require.NoError(t, err)
	model, err := whole.BuildV3Model()
	require.NoError(t, err)
	return func(name string) *base.Schema {
		proxy, ok := model.Model.Components.Schemas.Get(name)
		require.True(t, ok, name)
		return proxy.Schema()
	}
}

func describe(errs []*liberrors.ValidationError) string {
	var b strings.Builder
	for _, e := range errs {
		b.WriteString(e.Message + ": " + e.Reason + "\n")
		for _, se := range e.SchemaValidationErrors {
			b.WriteString("  " + se.FieldPath + " " + se.Reason + "\n")
		}
	}
	return b.String()
}

// Every answer of /v1 validates against OpenAI's own document: the JSON
// ones as the operation's response, each streamed event as its schema.
func TestAnswersValidateAgainstOpenAIsDocument(t *testing.T) {
	schema := spec(t)
	srv := httptest.NewServer(openaiapi.New(openaiapi.Deps{Tasks: &fakeTasks{}}))
	t.Cleanup(srv.Close)
	events := schema_validation.NewSchemaValidator()

	call := func(method, path, body string) (*http.Request, *http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		require.NoError(t, err)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		raw, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		res.Body.Close()
		res.Body = io.NopCloser(bytes.NewReader(raw))
		// The validator reads the request's body again.
		req.Body = io.NopCloser(strings.NewReader(body))
		return req, res, raw
	}
	// JSON answers are checked against the operation's response in the
	// document as published (3.0, nullable honoured), named here.
	checkJSON := func(method, path, body string, status int, schemaName string) []byte {
		t.Helper()
		_, res, raw := call(method, path, body)
		require.Equal(t, status, res.StatusCode, "%s %s: %s", method, path, raw)
		require.Equal(t, "application/json", res.Header.Get("Content-Type"))
		if schemaName == "" {
			return raw
		}
		ok, errs := events.ValidateSchemaStringWithVersion(schema(schemaName), string(raw), 3.0)
		require.True(t, ok, "%s %s answered %s\n%s", method, path, raw, describe(errs))
		return raw
	}
	checkStream := func(path, body, schemaName string) []map[string]any {
		t.Helper()
		_, res, raw := call(http.MethodPost, path, body)
		require.Equal(t, http.StatusOK, res.StatusCode, "%s", raw)
		require.Equal(t, "text/event-stream", res.Header.Get("Content-Type"))
		var seen []map[string]any
		sc := bufio.NewScanner(bytes.NewReader(raw))
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok || data == "[DONE]" {
				continue
			}
			ok, errs := events.ValidateSchemaStringWithVersion(schema(schemaName), data, 3.0)
			require.True(t, ok, "%s event %s\n%s", path, data, describe(errs))
			var ev map[string]any
			require.NoError(t, json.Unmarshal([]byte(data), &ev))
			_, hasError := ev["error"]
			require.False(t, hasError, "an event that is not an error carries no error key: %s", data)
			seen = append(seen, ev)
		}
		require.NotEmpty(t, seen)
		return seen
	}

	chat := `{"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}`
	checkJSON(http.MethodPost, "/v1/chat/completions", chat, http.StatusOK, "CreateChatCompletionResponse")
	checkJSON(http.MethodPost, "/v1/chat/completions", `{"model":"gpt-test","messages":[{"role":"user","content":"hi"}],
		"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]}`, http.StatusOK, "CreateChatCompletionResponse")
	checkStream("/v1/chat/completions", `{"model":"gpt-test","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`,
		"CreateChatCompletionStreamResponse")
	checkStream("/v1/chat/completions", `{"model":"gpt-test","stream":true,"messages":[{"role":"user","content":"hi"}],
		"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]}`, "CreateChatCompletionStreamResponse")

	created := checkJSON(http.MethodPost, "/v1/responses", `{"model":"gpt-test","input":"hi","background":true}`, http.StatusOK, "Response")
	var resp struct {
		ID string `json:"id"`
	}
	require.NoError(t, json.Unmarshal(created, &resp))
	checkJSON(http.MethodGet, "/v1/responses/"+resp.ID, "", http.StatusOK, "Response")
	checkJSON(http.MethodGet, "/v1/responses/"+resp.ID+"/input_items", "", http.StatusOK, "ResponseItemList")
	withItems := checkJSON(http.MethodPost, "/v1/responses", `{"model":"gpt-test","instructions":"Be brief.","metadata":{"customer":"acme"},
		"input":[{"role":"user","content":"hi"},{"type":"function_call","call_id":"c1","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"c1","output":"ok"}],
		"tools":[{"type":"function","name":"f","parameters":{"type":"object"}}],"tool_choice":"auto"}`, http.StatusOK, "Response")
	require.Contains(t, string(withItems), `"instructions":"Be brief."`)
	require.Contains(t, string(withItems), `"customer":"acme"`)
	require.NoError(t, json.Unmarshal(withItems, &resp))
	items := checkJSON(http.MethodGet, "/v1/responses/"+resp.ID+"/input_items?order=asc", "", http.StatusOK, "ResponseItemList")
	require.Contains(t, string(items), `"type":"function_call_output"`)
	checkJSON(http.MethodGet, "/v1/responses/"+resp.ID+"/input_items?limit=0", "", http.StatusBadRequest, "ErrorResponse")
	checkJSON(http.MethodPost, "/v1/responses/"+resp.ID+"/cancel", "", http.StatusOK, "Response")
	checkJSON(http.MethodPost, "/v1/responses", `{"model":"gpt-test","input":"hi","tools":[{"type":"function","name":"get_weather","parameters":{"type":"object"}}]}`, http.StatusOK, "Response")
	streamed := checkStream("/v1/responses", `{"model":"gpt-test","input":"hi","stream":true}`, "ResponseStreamEvent")
	require.Equal(t, "response.completed", streamed[len(streamed)-1]["type"])
	checkStream("/v1/responses", `{"model":"gpt-test","input":"hi","stream":true,"tools":[{"type":"function","name":"f","parameters":{"type":"object"}}]}`, "ResponseStreamEvent")
	checkJSON(http.MethodDelete, "/v1/responses/"+resp.ID, "", http.StatusOK, "DeleteModelResponse")

	checkJSON(http.MethodPost, "/v1/embeddings", `{"model":"text-embedding-3-small","input":["a","b"]}`, http.StatusOK, "CreateEmbeddingResponse")
	checkJSON(http.MethodPost, "/v1/embeddings", `{"model":"text-embedding-3-small","input":"a","encoding_format":"base64"}`, http.StatusOK, "") // a string, as OpenAI sends; the document types only floats
	checkJSON(http.MethodGet, "/v1/models", "", http.StatusOK, "ListModelsResponse")
	checkJSON(http.MethodGet, "/v1/models/gpt-test", "", http.StatusOK, "Model")

	checkJSON(http.MethodGet, "/v1/files/file-abc", "", http.StatusOK, "OpenAIFile")
	checkJSON(http.MethodGet, "/v1/files?purpose=batch", "", http.StatusOK, "ListFilesResponse")
	checkJSON(http.MethodDelete, "/v1/files/file-abc", "", http.StatusOK, "DeleteFileResponse")
	checkJSON(http.MethodGet, "/v1/files/file-nope", "", http.StatusNotFound, "ErrorResponse")
	checkJSON(http.MethodPost, "/v1/batches", `{"input_file_id":"file-abc","endpoint":"/v1/chat/completions","completion_window":"24h"}`, http.StatusOK, "Batch")
	checkJSON(http.MethodGet, "/v1/batches/batch_abc", "", http.StatusOK, "Batch")
	checkJSON(http.MethodGet, "/v1/batches?limit=2", "", http.StatusOK, "ListBatchesResponse")
	checkJSON(http.MethodPost, "/v1/batches/batch_abc/cancel", "", http.StatusOK, "Batch")
	checkJSON(http.MethodGet, "/v1/batches?limit=0", "", http.StatusBadRequest, "ErrorResponse")

	// Errors are OpenAI's error object, with OpenAI's statuses.
	for body, param := range map[string]string{
		`{"model":"gpt-test","messages":[]}`:                                                           "messages",
		`{"model":"gpt-test","messages":[{"role":"wizard","content":"x"}]}`:                            "messages[0].role",
		`{"model":"gpt-test","messages":[{"role":"tool","tool_call_id":"c","content":"x"}]}`:           "messages[0].tool_call_id",
		`{"model":"gpt-test","messages":[{"role":"user","content":"x"}],"n":3}`:                        "n",
		`{"model":"gpt-test","messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e"]}`: "stop",
		`{"model":"gpt-test","messages":"hi"}`:                                                         "messages",
	} {
		raw := checkJSON(http.MethodPost, "/v1/chat/completions", body, http.StatusBadRequest, "ErrorResponse")
		var e struct {
			Error struct {
				Param string `json:"param"`
				Type  string `json:"type"`
			} `json:"error"`
		}
		require.NoError(t, json.Unmarshal(raw, &e))
		require.Equal(t, param, e.Error.Param, "%s -> %s", body, raw)
		require.Equal(t, "invalid_request_error", e.Error.Type)
	}
	checkJSON(http.MethodGet, "/v1/responses/resp_unknown", "", http.StatusNotFound, "ErrorResponse")
	bad := checkJSON(http.MethodPost, "/v1/responses", `{"model":"gpt-test","input":[{"role":"tool","content":"x"}]}`, http.StatusBadRequest, "ErrorResponse")
	require.Contains(t, string(bad), `"param":"input"`, "the Responses API's own field name")
	checkJSON(http.MethodGet, "/v1/models/nope", "", http.StatusNotFound, "ErrorResponse")
}

// A transcription's fields count wherever the form puts them, before the
// file or after it.
func TestTranscriptionFieldsAfterTheFile(t *testing.T) {
	t.Parallel()
	tasks := &fakeTasks{}
	srv := httptest.NewServer(openaiapi.New(openaiapi.Deps{Tasks: tasks, MaxUploadBytes: 1 << 20}))
	t.Cleanup(srv.Close)
	var body bytes.Buffer
	form := multipart.NewWriter(&body)
	part, err := form.CreateFormFile("file", "rapat.wav")
	require.NoError(t, err)
	_, _ = part.Write([]byte("RIFF audio bytes"))
	require.NoError(t, form.WriteField("language", "id"))
	require.NoError(t, form.WriteField("response_format", "text"))
	require.NoError(t, form.Close())
	res, err := http.Post(srv.URL+"/v1/audio/transcriptions", form.FormDataContentType(), &body)
	require.NoError(t, err)
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	require.Equal(t, http.StatusOK, res.StatusCode, "%s", raw)
	require.Equal(t, "selamat pagi\n", string(raw), "response_format text, sent after the file")
	require.Equal(t, "id", tasks.stt.Language)
	require.Equal(t, "rapat.wav", tasks.stt.Filename)
	require.Equal(t, "RIFF audio bytes", string(tasks.audio))
}

// A streamed or foreground response whose key is at its bound of waiting
// connections is a 429, and nothing was queued: a retry makes one task.
func TestAResponseRefusedAtTheWaitingBoundQueuesNothing(t *testing.T) {
	t.Parallel()
	tasks := &fakeTasks{holdErr: &task.Error{Code: task.ELIMITED, RetryAfter: time.Second, Message: "too many waiting connections"}}
	srv := httptest.NewServer(openaiapi.New(openaiapi.Deps{Tasks: tasks}))
	t.Cleanup(srv.Close)
	for _, body := range []string{`{"model":"m","input":"hi","stream":true}`, `{"model":"m","input":"hi"}`} {
		res, err := http.Post(srv.URL+"/v1/responses", "application/json", strings.NewReader(body))
		require.NoError(t, err)
		res.Body.Close()
		require.Equal(t, http.StatusTooManyRequests, res.StatusCode, body)
		require.NotEmpty(t, res.Header.Get("Retry-After"))
	}
	require.Zero(t, tasks.n, "no task was queued")
	res, err := http.Post(srv.URL+"/v1/responses", "application/json", strings.NewReader(`{"model":"m","input":"hi","background":true}`))
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode, "a background response holds no connection")
	require.Equal(t, 1, tasks.n)
}
