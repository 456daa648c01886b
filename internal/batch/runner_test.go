package batch_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/artifact"
	"github.com/siganteng/siganteng/internal/batch"
	"github.com/siganteng/siganteng/internal/openaiapi"
	"github.com/siganteng/siganteng/internal/redistest"
	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
)

// lineTasks is the service as the runner uses it, over a real store: a
// submitted line is a PENDING record that the test ends by hand.
type lineTasks struct {
	store *store.Store
	mu    sync.Mutex
	ids   []string
}

func (l *lineTasks) submit(ctx context.Context, typ task.Type) (*task.Record, error) {
	rec := &task.Record{ID: uuid.NewString(), Type: typ, Status: task.StatusPending, CreatedAt: time.Now()}
	if err := l.store.Create(ctx, rec, store.Limits{}); err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.ids = append(l.ids, rec.ID)
	l.mu.Unlock()
	return rec, nil
}

func (l *lineTasks) SubmitGenerateText(ctx context.Context, _ task.GenerateTextInput) (*task.Record, error) {
	return l.submit(ctx, task.TypeGenerateText)
}

func (l *lineTasks) SubmitEmbed(ctx context.Context, _ task.EmbedInput) (*task.Record, error) {
	return l.submit(ctx, task.TypeEmbed)
}

func (l *lineTasks) Cancel(ctx context.Context, id string) (*task.Record, error) {
	_ = l.store.Revoked(ctx, id, "cancelled", time.Now())
	return l.store.Get(ctx, id)
}

func (l *lineTasks) Delete(ctx context.Context, id string) error { return l.store.Delete(ctx, id) }

// succeedAll ends every line submitted so far with an answer.
func (l *lineTasks) succeedAll(t *testing.T) int {
	l.mu.Lock()
	ids := append([]string(nil), l.ids...)
	l.mu.Unlock()
	n := 0
	for _, id := range ids {
		err := l.store.Succeeded(context.Background(), id, store.Success{Provider: "fake", Result: json.RawMessage(`{"text":"ok","model":"m"}`),
			Usage: &task.Metered{InputTokens: 2, OutputTokens: 1}}, time.Now())
		if err == nil {
			n++
		}
	}
	return n
}

type noSteps struct{}

func (noSteps) EnqueueBatchStep(context.Context, string, int, time.Duration) error { return nil }

type bundle struct {
	store     *store.Store
	artifacts *artifact.Dir
	tasks     *lineTasks
	runner    *batch.Runner
	now       time.Time
	mu        sync.Mutex
}

func (b *bundle) clock() time.Time { b.mu.Lock(); defer b.mu.Unlock(); return b.now }

func (b *bundle) advance(d time.Duration) { b.mu.Lock(); b.now = b.now.Add(d); b.mu.Unlock() }

func setup(t *testing.T, window int) *bundle {
	t.Helper()
	rdb := redistest.Client(t, redistest.URL(t))
	st := store.New(rdb, time.Hour)
	dir, err := artifact.NewDir(t.TempDir())
	require.NoError(t, err)
	b := &bundle{store: st, artifacts: dir, tasks: &lineTasks{store: st}, now: time.Now()}
	b.runner = batch.New(batch.Config{Window: window, StepTime: time.Nanosecond}, st, b.tasks, dir, noSteps{}, openaiapi.Lines{},
		slog.New(slog.DiscardHandler), b.clock)
	return b
}

// create stores an input file of n chat lines and a batch reading it.
func (b *bundle) create(t *testing.T, n int) task.Batch {
	t.Helper()
	ctx := context.Background()
	var in bytes.Buffer
	for i := range n {
		fmt.Fprintf(&in, `{"custom_id":"c%d","method":"POST","url":"/v1/chat/completions","body":{"messages":[{"role":"user","content":"p%d"}]}}`+"\n", i, i)
	}
	fileID := "file-" + uuid.NewString()[:8]
	_, err := b.artifacts.Put(ctx, fileID, &in)
	require.NoError(t, err)
	require.NoError(t, b.store.CreateFile(ctx, task.File{ID: fileID, Owner: "k", CreatedAt: b.clock(), Filename: "in.jsonl", Purpose: task.PurposeBatch}))
	bt := task.Batch{ID: "batch_" + uuid.NewString()[:8], Owner: "k", InputFileID: fileID, Endpoint: "/v1/chat/completions", CompletionWindow: "24h",
		Status: task.BatchValidating, CreatedAt: b.clock(), ExpiresAt: b.clock().Add(24 * time.Hour), OutputExpiresAfter: time.Hour, Caller: json.RawMessage(`{"KeyID":"k"}`)}
	require.NoError(t, b.store.CreateBatch(ctx, bt))
	return bt
}

// step runs one pass of the runner.
func (b *bundle) step(t *testing.T, id string) *task.Batch {
	t.Helper()
	payload, _ := json.Marshal(batch.StepPayload{BatchID: id})
	require.NoError(t, b.runner.Step(context.Background(), payload))
	got, _, err := b.store.GetBatch(context.Background(), id)
	require.NoError(t, err)
	return got
}

func (b *bundle) lines(t *testing.T, fileID string) map[string]map[string]any {
	t.Helper()
	obj, err := b.artifacts.Open(context.Background(), fileID)
	require.NoError(t, err)
	defer obj.Close()
	out := map[string]map[string]any{}
	sc := bufio.NewScanner(obj)
	for sc.Scan() {
		var l map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l))
		id := l["custom_id"].(string)
		_, dup := out[id]
		require.False(t, dup, "%s written twice", id)
		out[id] = l
	}
	return out
}

func TestABatchRunsAWindowAtATimeAndWritesEachLineOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, 4)
	bt := b.create(t, 10)
	got := b.step(t, bt.ID)
	require.Equal(t, task.BatchInProgress, got.Status)
	require.Equal(t, 10, got.Total)
	for round := 0; got.Status == task.BatchInProgress && round < 20; round++ {
		got = b.step(t, bt.ID)
		inflight, err := b.store.InFlight(context.Background(), bt.ID)
		require.NoError(t, err)
		require.LessOrEqual(t, len(inflight), 4, "at most the window is in flight")
		b.tasks.succeedAll(t)
	}
	require.Equal(t, task.BatchCompleted, got.Status)
	require.Equal(t, 10, got.Completed)
	require.EqualValues(t, 20, got.InputTokens)
	out := b.lines(t, got.OutputFileID)
	require.Len(t, out, 10)
	// Written lines' records are gone: Redis holds the window, not the batch.
	recs, err := b.store.GetMany(context.Background(), b.tasks.ids)
	require.NoError(t, err)
	for _, r := range recs {
		require.Nil(t, r)
	}
}

// A chunk written again after a runner died before its commit, and a
// commit made twice, count once.
func TestAChunkCommittedTwiceCountsOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, 4)
	bt := b.create(t, 4)
	b.step(t, bt.ID) // validates
	b.step(t, bt.ID) // admits 4
	inflight, err := b.store.InFlight(context.Background(), bt.ID)
	require.NoError(t, err)
	require.Len(t, inflight, 4)
	var entries []string
	for id := range inflight {
		entries = append(entries, id)
	}
	ok, err := b.store.CommitChunk(context.Background(), bt.ID, store.Chunk{Seq: 0, Completed: 4, Entries: entries})
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = b.store.CommitChunk(context.Background(), bt.ID, store.Chunk{Seq: 0, Completed: 4, Entries: entries})
	require.NoError(t, err)
	require.False(t, ok, "the same chunk again is not counted")
	got, p, err := b.store.GetBatch(context.Background(), bt.ID)
	require.NoError(t, err)
	require.Equal(t, 4, got.Completed)
	require.Equal(t, 1, p.Chunks)
}

// A batch not done within its window ends expired: its lines not started
// are revoked, those never admitted are written too, all as batch_expired.
func TestABatchPastItsWindowExpires(t *testing.T) {
	t.Parallel()
	b := setup(t, 3)
	bt := b.create(t, 8)
	b.step(t, bt.ID) // validates
	got := b.step(t, bt.ID)
	require.Equal(t, task.BatchInProgress, got.Status)
	b.tasks.succeedAll(t) // the first window answers
	got = b.step(t, bt.ID)
	require.Equal(t, 3, got.Completed)
	b.advance(25 * time.Hour) // a second window is in flight, not started
	for round := 0; !got.Status.Ended() && round < 10; round++ {
		got = b.step(t, bt.ID)
	}
	require.Equal(t, task.BatchExpired, got.Status)
	require.NotNil(t, got.ExpiredAt)
	require.Equal(t, 3, got.Completed)
	require.Equal(t, 5, got.Failed)
	errs := b.lines(t, got.ErrorFileID)
	require.Len(t, errs, 5)
	for id, l := range errs {
		require.Equal(t, "batch_expired", l["error"].(map[string]any)["code"], id)
	}
	require.Len(t, b.lines(t, got.OutputFileID), 3)
	_, err := b.artifacts.Open(context.Background(), fmt.Sprintf("batch-%s-out-0", bt.ID[len("batch_"):]))
	require.ErrorIs(t, err, artifact.ErrNotFound, "chunks are deleted once joined")
}

// An input file deleted while its batch runs fails the batch, naming why,
// instead of a step that fails forever.
func TestABatchWhoseInputIsDeletedFails(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	bt := b.create(t, 6)
	b.step(t, bt.ID) // validates
	got := b.step(t, bt.ID)
	require.Equal(t, task.BatchInProgress, got.Status)
	require.NoError(t, b.artifacts.Delete(context.Background(), bt.InputFileID))
	b.tasks.succeedAll(t)
	for round := 0; !got.Status.Ended() && round < 10; round++ {
		got = b.step(t, bt.ID)
	}
	require.Equal(t, task.BatchFailed, got.Status)
	require.Equal(t, "invalid_file", got.Errors[0].Code)
}
