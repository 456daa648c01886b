package service_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/artifact"
	"github.com/siganteng/siganteng/internal/auth"
	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/provider/providertest"
	"github.com/siganteng/siganteng/internal/service"
	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
)

type fakeRecords struct {
	mu        sync.Mutex
	recs      map[string]*task.Record
	createErr error
	ops       []string
}

func (f *fakeRecords) Create(_ context.Context, rec *task.Record, _ store.Limits) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = append(f.ops, "create")
	if f.createErr != nil {
		return f.createErr
	}
	f.recs[rec.ID] = rec
	return nil
}

func (f *fakeRecords) Get(_ context.Context, id string) (*task.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r, ok := f.recs[id]; ok {
		return r, nil
	}
	return nil, task.NotFound(id)
}

func (f *fakeRecords) Revoked(_ context.Context, id, reason string, _ time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.recs[id]
	if !ok {
		return task.NotFound(id)
	}
	if r.Status.Terminal() {
		return store.ErrFinished
	}
	r.Status = task.StatusRevoked
	r.Error = &task.Failure{Code: task.FailureRevoked, Message: reason}
	return nil
}

func TestCancel(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rec, err := b.svc.SubmitGenerateText(asSystem(), task.GenerateTextInput{Prompt: "x"})
	require.NoError(t, err)
	got, err := b.svc.Cancel(asSystem(), rec.ID)
	require.NoError(t, err)
	require.Equal(t, task.StatusRevoked, got.Status)
	again, err := b.svc.Cancel(asSystem(), rec.ID)
	require.NoError(t, err, "cancel is idempotent")
	require.Equal(t, task.StatusRevoked, again.Status)
	_, err = b.svc.Cancel(asSystem(), "nope")
	require.Equal(t, task.ENOTFOUND, task.CodeOf(err))
}

func (f *fakeRecords) Delete(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = append(f.ops, "delete")
	delete(f.recs, id)
	return nil
}

// Events and List are exercised against a real Redis (redis_test.go).
func (f *fakeRecords) Events(context.Context, string, string, int64) ([]store.Event, error) {
	return nil, nil
}

func (f *fakeRecords) List(context.Context, store.ListQuery) (task.Page, error) {
	return task.Page{}, nil
}

type fakeQueue struct {
	err     error
	typ     task.Type
	id      string
	weight  int
	at      time.Time
	payload []byte
	records *fakeRecords
}

func (q *fakeQueue) Enqueue(_ context.Context, typ task.Type, _ task.Priority, id, _ string, weight int, at time.Time, payload []byte) error {
	q.records.mu.Lock()
	q.records.ops = append(q.records.ops, "enqueue")
	q.records.mu.Unlock()
	q.typ, q.id, q.weight, q.at, q.payload = typ, id, weight, at, payload
	return q.err
}

type fakeLLM struct {
	err  error
	got  provider.TextRequest
	wait time.Duration
}

func (f *fakeLLM) Name() string { return "fake" }

func (f *fakeLLM) GenerateText(ctx context.Context, req provider.TextRequest) (provider.TextResponse, error) {
	f.got = req
	if f.wait > 0 {
		select {
		case <-time.After(f.wait):
		case <-ctx.Done():
			return provider.TextResponse{}, provider.ErrorFromTransport(ctx, "fake", ctx.Err())
		}
	}
	if f.err != nil {
		return provider.TextResponse{}, f.err
	}
	return provider.TextResponse{Text: "out", Model: "m1", FinishReason: "stop", Usage: provider.Usage{PromptTokens: 2, CompletionTokens: 3, TotalTokens: 5}}, nil
}

type testBundle struct {
	svc     *service.Service
	records *fakeRecords
	queue   *fakeQueue
	llm     *fakeLLM
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	records := &fakeRecords{recs: map[string]*task.Record{}}
	q := &fakeQueue{records: records}
	llm := &fakeLLM{}
	now := func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
	svc := service.New(service.Deps{Records: records, Queue: q, Providers: service.Providers{LLM: llm},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: now}, service.Config{SyncTimeout: 200 * time.Millisecond})
	return &testBundle{svc: svc, records: records, queue: q, llm: llm}
}

func TestSubmitRecordsThenEnqueues(t *testing.T) {
	t.Parallel()
	b := setup(t)
	maxTokens := 9
	rec, err := b.svc.SubmitGenerateText(asSystem(), task.GenerateTextInput{Prompt: "héllo", Model: "m", MaxTokens: &maxTokens})
	require.NoError(t, err)
	require.Equal(t, task.StatusPending, rec.Status)
	require.Equal(t, task.TypeGenerateText, rec.Type)
	require.Len(t, rec.ID, 36, "a UUID")
	require.Equal(t, []string{"create", "enqueue"}, b.records.ops)
	require.Equal(t, rec.ID, b.queue.id)
	require.JSONEq(t, `{"prompt":"héllo","model":"m","max_tokens":9}`, string(b.queue.payload))
	require.JSONEq(t, `{"model":"m","prompt_chars":5,"max_tokens":9}`, string(rec.Input), "the record holds a summary, not the prompt")

	other, err := b.svc.SubmitGenerateText(asSystem(), task.GenerateTextInput{Prompt: "x"})
	require.NoError(t, err)
	require.NotEqual(t, rec.ID, other.ID)
}

func TestSubmitRejectsBadInputBeforeAnyWrite(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tooHot := 2.5
	for field, in := range map[string]task.GenerateTextInput{
		"prompt":      {Prompt: " \n\t"},
		"temperature": {Prompt: "x", Temperature: &tooHot},
	} {
		_, err := b.svc.SubmitGenerateText(asSystem(), in)
		var terr *task.Error
		require.ErrorAs(t, err, &terr)
		require.Equal(t, task.EINVALID, terr.Code)
		require.Equal(t, field, terr.Field)
	}
	require.Empty(t, b.records.ops)
}

func TestSubmitUndoesTheRecordWhenEnqueueFails(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.queue.err = errors.New("redis: connection refused")
	_, err := b.svc.SubmitGenerateText(asSystem(), task.GenerateTextInput{Prompt: "x"})
	require.Equal(t, task.EUNAVAILABLE, task.CodeOf(err))
	require.Equal(t, []string{"create", "enqueue", "delete"}, b.records.ops)
	require.Empty(t, b.records.recs)
}

func TestSubmitDoesNotEnqueueWithoutARecord(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.records.createErr = errors.New("redis: i/o timeout")
	_, err := b.svc.SubmitGenerateText(asSystem(), task.GenerateTextInput{Prompt: "x"})
	require.Equal(t, task.EUNAVAILABLE, task.CodeOf(err))
	require.Equal(t, []string{"create"}, b.records.ops)
}

func TestGetUnknownIsNotFound(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.svc.Get(asSystem(), "nope")
	require.Equal(t, task.ENOTFOUND, task.CodeOf(err))
}

func TestGenerateTextNow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	temp := 0.5
	out, err := b.svc.GenerateText(asSystem(), task.GenerateTextInput{Prompt: "p", System: "s", Temperature: &temp})
	require.NoError(t, err)
	require.Equal(t, &task.TextResult{Text: "out", Model: "m1", Provider: "fake", FinishReason: "stop",
		Usage: task.Usage{PromptTokens: 2, CompletionTokens: 3, TotalTokens: 5}}, out)
	require.Equal(t, provider.TextRequest{Prompt: "p", System: "s", Temperature: &temp}, b.llm.got)
}

func TestGenerateTextNowMapsProviderErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want task.ErrorCode
	}{
		// A rate limit is a wait for budget, told as 429 with Retry-After
		// (issue 16), never a 5xx.
		{&provider.Error{Provider: "fake", Kind: provider.KindRateLimited, RetryAfter: 3 * time.Second}, task.ELIMITED},
		{&provider.WaitError{Deployment: "openai", Reason: "requests", Until: time.Now().Add(3 * time.Second)}, task.ELIMITED},
		{&provider.Error{Provider: "fake", Kind: provider.KindUnavailable, StatusCode: 503}, task.EUNAVAILABLE},
		{&provider.Error{Provider: "fake", Kind: provider.KindRejected, StatusCode: 404}, task.EREJECTED},
		{&provider.Error{Provider: "fake", Kind: provider.KindAuth, StatusCode: 401}, task.EPROVIDER},
		{&provider.Error{Provider: "fake", Kind: provider.KindTimeout}, task.ETIMEOUT},
	} {
		b := setup(t)
		b.llm.err = tc.err
		_, err := b.svc.GenerateText(asSystem(), task.GenerateTextInput{Prompt: "p"})
		require.Equal(t, tc.want, task.CodeOf(err), "%v", tc.err)
	}
}

func TestGenerateTextNowIsBounded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.llm.wait = 5 * time.Second
	start := time.Now()
	_, err := b.svc.GenerateText(asSystem(), task.GenerateTextInput{Prompt: "p"})
	require.Equal(t, task.ETIMEOUT, task.CodeOf(err))
	require.Less(t, time.Since(start), 2*time.Second)
}

func TestExecute(t *testing.T) {
	t.Parallel()
	b := setup(t)
	out, err := b.svc.Execute(asSystem(), "id", task.TypeGenerateText, []byte(`{"prompt":"p","max_tokens":7}`), nil)
	require.NoError(t, err)
	require.Equal(t, "fake", out.Provider)
	var res task.TextResult
	require.NoError(t, json.Unmarshal(out.Result, &res))
	require.Equal(t, "out", res.Text)
	require.Equal(t, 7, b.llm.got.MaxTokens)

	_, err = b.svc.Execute(asSystem(), "id", task.TypeGenerateText, []byte(`{not json`), nil)
	require.Equal(t, task.EINVALID, task.CodeOf(err))
	_, err = b.svc.Execute(asSystem(), "id", "paint_picture", []byte(`{}`), nil)
	require.Equal(t, task.EINVALID, task.CodeOf(err))
}

type fakeTTS struct {
	body string
	err  error
	got  provider.SpeechRequest
}

func (f *fakeTTS) Name() string { return "faketts" }

func (f *fakeTTS) Synthesize(_ context.Context, req provider.SpeechRequest) (provider.Audio, error) {
	f.got = req
	if f.err != nil {
		return provider.Audio{}, f.err
	}
	return provider.Audio{Body: io.NopCloser(strings.NewReader(f.body)), ContentType: "audio/wav", Format: "wav", Voice: "v1", Model: "m"}, nil
}

// brokenStream fails halfway, like a provider hanging up mid-audio.
type brokenStream struct{ sent bool }

func (b *brokenStream) Read(p []byte) (int, error) {
	if b.sent {
		return 0, errors.New("unexpected EOF")
	}
	b.sent = true
	return copy(p, "RIFF"), nil
}

func speechSetup(t testing.TB, tts provider.TTS) (*service.Service, *fakeRecords, *artifact.Dir) {
	t.Helper()
	records := &fakeRecords{recs: map[string]*task.Record{}}
	dir, err := artifact.NewDir(t.TempDir())
	require.NoError(t, err)
	svc := service.New(service.Deps{Records: records, Queue: &fakeQueue{records: records},
		Providers: service.Providers{TTS: tts, STT: provider.Missing{Capability: "speech_to_text", Hint: "set a key"}},
		Artifacts: dir, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, service.Config{SyncTimeout: time.Second})
	return svc, records, dir
}

func TestExecuteTextToSpeechStoresTheArtifact(t *testing.T) {
	t.Parallel()
	tts := &fakeTTS{body: "RIFF-audio-bytes"}
	svc, records, _ := speechSetup(t, tts)
	out, err := svc.Execute(asSystem(), "t1", task.TypeTextToSpeech, []byte(`{"text":"halo","voice":"id","speed":2}`), nil)
	require.NoError(t, err)
	require.Equal(t, "faketts", out.Provider)
	require.Equal(t, provider.SpeechRequest{Text: "halo", Voice: "id", Speed: 2}, tts.got)
	var res task.AudioResult
	require.NoError(t, json.Unmarshal(out.Result, &res))
	require.Equal(t, task.Artifact{URL: "/background/tasks/t1/artifact", ContentType: "audio/wav", Size: 16}, res.Artifact)
	require.Equal(t, "wav", res.Format)

	records.recs["t1"] = &task.Record{ID: "t1", Status: task.StatusSuccess, Result: out.Result}
	art, obj, err := svc.OpenArtifact(asSystem(), "t1")
	require.NoError(t, err)
	defer obj.Close()
	b, err := io.ReadAll(obj)
	require.NoError(t, err)
	require.Equal(t, "RIFF-audio-bytes", string(b))
	require.Equal(t, "audio/wav", art.ContentType)
}

func TestExecuteTextToSpeechBrokenStreamIsTransient(t *testing.T) {
	t.Parallel()
	svc, _, dir := speechSetup(t, &streamTTS{r: &brokenStream{}})
	_, err := svc.Execute(asSystem(), "t2", task.TypeTextToSpeech, []byte(`{"text":"halo"}`), nil)
	var perr *provider.Error
	require.ErrorAs(t, err, &perr)
	require.True(t, perr.Transient())
	_, err = dir.Open(asSystem(), "t2")
	require.ErrorIs(t, err, artifact.ErrNotFound, "no half-written artifact")
}

type streamTTS struct{ r io.Reader }

func (s *streamTTS) Name() string { return "stream" }
func (s *streamTTS) Synthesize(context.Context, provider.SpeechRequest) (provider.Audio, error) {
	return provider.Audio{Body: io.NopCloser(s.r), ContentType: "audio/wav"}, nil
}

func TestOpenArtifactStates(t *testing.T) {
	t.Parallel()
	svc, records, _ := speechSetup(t, &fakeTTS{})
	records.recs["run"] = &task.Record{ID: "run", Status: task.StatusStarted}
	records.recs["gone"] = &task.Record{ID: "gone", Status: task.StatusSuccess,
		Result: json.RawMessage(`{"artifact":{"url":"/x","content_type":"audio/wav","size":3}}`)}
	for id, want := range map[string]task.ErrorCode{"run": task.ECONFLICT, "gone": task.ENOTFOUND, "unknown": task.ENOTFOUND} {
		_, _, err := svc.OpenArtifact(asSystem(), id)
		require.Equal(t, want, task.CodeOf(err), id)
	}
}

func TestTextToSpeechNowMapsErrors(t *testing.T) {
	t.Parallel()
	svc, _, _ := speechSetup(t, &fakeTTS{err: &provider.Error{Provider: "faketts", Kind: provider.KindRejected, Message: "wav only"}})
	_, err := svc.TextToSpeech(asSystem(), task.TextToSpeechInput{Text: "x", Format: "mp3"})
	require.Equal(t, task.EREJECTED, task.CodeOf(err))
	_, err = svc.TextToSpeech(asSystem(), task.TextToSpeechInput{Text: " "})
	require.Equal(t, task.EINVALID, task.CodeOf(err))
}

func TestSubmitSpeechToTextUndoesTheUploadWhenEnqueueFails(t *testing.T) {
	t.Parallel()
	records := &fakeRecords{recs: map[string]*task.Record{}}
	dir, err := artifact.NewDir(t.TempDir())
	require.NoError(t, err)
	q := &fakeQueue{records: records, err: errors.New("redis: connection refused")}
	svc := service.New(service.Deps{Records: records, Queue: q, Artifacts: dir, Log: slog.New(slog.NewTextHandler(io.Discard, nil))},
		service.Config{SyncTimeout: time.Second, MaxUploadBytes: 1 << 20})
	_, err = svc.SubmitSpeechToText(asSystem(), task.SpeechToTextInput{}, bytes.NewReader(providertest.WAV(1000)))
	require.Equal(t, task.EUNAVAILABLE, task.CodeOf(err))
	entries, err := os.ReadDir(dir.Root())
	require.NoError(t, err)
	require.Empty(t, entries, "the stored upload is removed with the record")
}

func TestSpeechToTextWithoutItsInputFailsForGood(t *testing.T) {
	t.Parallel()
	svc, _, _ := speechSetup(t, &fakeTTS{})
	_, err := svc.Execute(asSystem(), "lost", task.TypeSpeechToText, []byte(`{"media_type":"audio/wav","filename":"audio.wav"}`), nil)
	require.Equal(t, task.EINVALID, task.CodeOf(err))
}

func TestSniffAudio(t *testing.T) {
	t.Parallel()
	for head, want := range map[string]string{
		string(providertest.WAV(10)): "audio/wav",
		"ID3\x04\x00\x00":            "audio/mpeg",
		"\xff\xfb\x90\x64":           "audio/mpeg",
		"fLaC\x00\x00":               "audio/flac",
		"OggS\x00\x02":               "audio/ogg",
		"\x1a\x45\xdf\xa3\x9f":       "audio/webm",
		"\x00\x00\x00\x20ftypM4A ":   "audio/mp4",
		"<html>":                     "",
		"\x89PNG\r\n\x1a\n":          "",
	} {
		got, _ := task.SniffAudio([]byte(head))
		require.Equal(t, want, got, "%q", head)
	}
}

// asSystem is the context of work no request started: lower layers'
// tests act as the system caller, which sees every task.
func asSystem() context.Context { return auth.WithCaller(context.Background(), auth.System) }

// countingUsage remembers what synchronous calls add to a key's usage.
type countingUsage struct {
	mu    sync.Mutex
	added []task.Metered
}

func (u *countingUsage) UsageOwners(context.Context) ([]string, error) { return nil, nil }
func (u *countingUsage) Usage(context.Context, []string, time.Time, time.Time) ([]task.DayUsage, error) {
	return nil, nil
}
func (u *countingUsage) Reserve(context.Context, string, store.Limits, int64, time.Time) (store.Reservation, error) {
	return store.Reservation{}, nil
}
func (u *countingUsage) SettleUsage(_ context.Context, _ store.Reservation, m *task.Metered, _ time.Time) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if m != nil {
		u.added = append(u.added, *m)
	}
	return nil
}

type fakeVision struct{}

func (fakeVision) Name() string { return "fake" }
func (fakeVision) DescribeImage(context.Context, provider.VisionRequest) (provider.TextResponse, error) {
	return provider.TextResponse{Text: "a cat", Usage: provider.Usage{PromptTokens: 7, CompletionTokens: 2}}, nil
}

type fakeEmbedder struct{}

func (fakeEmbedder) Name() string { return "fake" }
func (fakeEmbedder) Embed(_ context.Context, req provider.EmbedRequest) (provider.EmbedResponse, error) {
	return provider.EmbedResponse{Vectors: [][]float64{{1, 2}}, Usage: provider.Usage{PromptTokens: 4, TotalTokens: 4}}, nil
}

// Every synchronous call adds what it used to the key's usage; a
// synchronous describe_image once checked the budget and never counted.
func TestEverySynchronousCallCountsItsUsage(t *testing.T) {
	t.Parallel()
	usage := &countingUsage{}
	svc := service.New(service.Deps{Providers: service.Providers{LLM: &fakeLLM{}, Vision: fakeVision{}, Embedder: fakeEmbedder{}},
		Usage: usage, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, service.Config{SyncTimeout: time.Second, MaxUploadBytes: 1 << 20})
	ctx := auth.WithCaller(context.Background(), auth.Caller{KeyID: "k1"})
	_, err := svc.GenerateText(ctx, task.GenerateTextInput{Prompt: "p"})
	require.NoError(t, err)
	_, err = svc.DescribeImage(ctx, task.DescribeImageInput{ImageURL: "data:image/png;base64," + base64.StdEncoding.EncodeToString(providertest.PNG1x1)})
	require.NoError(t, err)
	_, err = svc.Embed(ctx, task.EmbedInput{Input: []string{"kucing"}})
	require.NoError(t, err)
	require.Equal(t, []task.Metered{{InputTokens: 2, OutputTokens: 3}, {InputTokens: 7, OutputTokens: 2}, {InputTokens: 4}}, usage.added)
}

func TestPriorityHighIsARightAKeyIsGiven(t *testing.T) {
	t.Parallel()
	b := setup(t)
	high := task.GenerateTextInput{Prompt: "p", Options: task.Options{Priority: task.PriorityHigh}}
	plain := auth.WithCaller(context.Background(), auth.Caller{KeyID: "k1"})
	_, err := b.svc.SubmitGenerateText(plain, high)
	require.Equal(t, task.EINVALID, task.CodeOf(err), "%v", err)
	var terr *task.Error
	require.ErrorAs(t, err, &terr)
	require.Equal(t, "priority", terr.Field)
	require.Contains(t, terr.Message, "--high-priority")

	_, err = b.svc.SubmitGenerateText(plain, task.GenerateTextInput{Prompt: "p"})
	require.NoError(t, err, "normal priority needs no right")
	for _, c := range []auth.Caller{{KeyID: "k2", HighPriority: true}, {KeyID: "k3", Admin: true}, {}} {
		rec, err := b.svc.SubmitGenerateText(auth.WithCaller(context.Background(), c), high)
		require.NoError(t, err, "%+v", c)
		require.Equal(t, task.PriorityHigh, rec.Priority)
	}
}

func TestAScheduledTaskIsQueuedForItsTime(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	in := func(o task.Options) task.GenerateTextInput { return task.GenerateTextInput{Prompt: "p", Options: o} }
	delay, early := 60, 30
	rec, err := b.svc.SubmitGenerateText(asSystem(), in(task.Options{Delay: &delay}))
	require.NoError(t, err)
	require.Equal(t, now.Add(time.Minute), *rec.ScheduledAt)
	require.Equal(t, now.Add(time.Minute), b.queue.at, "queued for its time")
	runAt := now.Add(2 * time.Hour)
	rec, err = b.svc.SubmitGenerateText(asSystem(), in(task.Options{RunAt: &runAt}))
	require.NoError(t, err)
	require.Equal(t, runAt, *rec.ScheduledAt)
	past := now.Add(-time.Hour)
	rec, err = b.svc.SubmitGenerateText(asSystem(), in(task.Options{RunAt: &past}))
	require.NoError(t, err)
	require.Nil(t, rec.ScheduledAt, "a time already past runs now")
	require.True(t, b.queue.at.IsZero())

	for field, o := range map[string]task.Options{
		"delay":        {Delay: &delay, RunAt: &runAt},
		"cancel_after": {Delay: &delay, CancelAfter: &early},
	} {
		_, err := b.svc.SubmitGenerateText(asSystem(), in(o))
		var terr *task.Error
		require.ErrorAs(t, err, &terr, field)
		require.Equal(t, field, terr.Field)
	}
	bounded := service.New(service.Deps{Records: b.records, Queue: b.queue, Providers: service.Providers{LLM: b.llm},
		Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }}, service.Config{MaxScheduleAhead: time.Hour})
	far := 7200
	_, err = bounded.SubmitGenerateText(asSystem(), in(task.Options{Delay: &far}))
	require.Equal(t, task.EINVALID, task.CodeOf(err))
	require.Contains(t, err.Error(), "MAX_SCHEDULE_AHEAD")
}

func TestAKeysShareWeightIsQueuedWithItsTask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, c := range []auth.Caller{{KeyID: "k1", ShareWeight: 3}, {KeyID: "k2"}} {
		_, err := b.svc.SubmitGenerateText(auth.WithCaller(context.Background(), c), task.GenerateTextInput{Prompt: "p"})
		require.NoError(t, err)
		require.Equal(t, c.Weight(), b.queue.weight)
	}
	require.Equal(t, 1, auth.Caller{}.Weight(), "unset is 1")
}

// blockingLLM answers once release is closed, telling started of each call.
type blockingLLM struct {
	started chan struct{}
	release chan struct{}
}

func (blockingLLM) Name() string { return "blocking" }

func (b blockingLLM) GenerateText(ctx context.Context, _ provider.TextRequest) (provider.TextResponse, error) {
	b.started <- struct{}{}
	<-b.release
	return provider.TextResponse{Text: "ok"}, nil
}

func TestAKeysSynchronousCallsAreBounded(t *testing.T) {
	t.Parallel()
	llm := blockingLLM{started: make(chan struct{}, 10), release: make(chan struct{})}
	svc := service.New(service.Deps{Providers: service.Providers{LLM: llm}, Log: slog.New(slog.DiscardHandler)},
		service.Config{SyncTimeout: 10 * time.Second, MaxSyncPerKey: 2})
	as := func(key string) context.Context {
		return auth.WithCaller(context.Background(), auth.Caller{KeyID: key})
	}
	in := task.GenerateTextInput{Prompt: "p"}
	done := make(chan error, 3)
	for range 2 {
		go func() { _, err := svc.GenerateText(as("k1"), in); done <- err }()
		<-llm.started // both are running
	}
	_, err := svc.GenerateText(as("k1"), in)
	require.Equal(t, task.ELIMITED, task.CodeOf(err), "a third at once: %v", err)
	require.Contains(t, err.Error(), "2 synchronous calls")
	go func() { _, err := svc.GenerateText(as("k2"), in); done <- err }()
	<-llm.started // another key's call runs meanwhile
	close(llm.release)
	for range 3 {
		require.NoError(t, <-done)
	}
	_, err = svc.GenerateText(as("k1"), in)
	require.NoError(t, err, "the calls that ended gave their places back")
	// A key's own bound overrides the server's.
	_, err = svc.GenerateText(auth.WithCaller(context.Background(), auth.Caller{KeyID: "k3", MaxSync: 5}), in)
	require.NoError(t, err)
}
