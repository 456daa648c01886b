package service_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/service"
	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
)

// Advances of one pipeline at once (two workers woken by two of a
// for_each step's ends, or a recheck beside a push) submit each step's
// task once, and move the pipeline once; the record names them.
func TestConcurrentAdvancesSubmitEachStepOnce(t *testing.T) {
	t.Parallel()
	_, _, rdb := redisService(t)
	records := store.New(rdb, time.Hour)
	queued := &idQueue{ids: map[string]int{}}
	svc := service.New(service.Deps{Records: records, Keys: records, Pipelines: records, Queue: queued,
		Providers: service.Providers{LLM: &fakeLLM{}}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, service.Config{SyncTimeout: time.Second})
	ctx := asSystem()
	var in task.PipelineInput
	require.NoError(t, json.Unmarshal([]byte(`{"steps":[
	  {"name":"each","kind":"generate_text","for_each":["a","b","c"],"input":{"prompt":"{{item}}"}},
	  {"kind":"generate_text","input":{"prompt":"{{steps.each.text}}"}}]}`), &in))
	p, err := svc.CreatePipeline(ctx, in)
	require.NoError(t, err)

	advanceAll := func() {
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() { require.NoError(t, svc.AdvancePipeline(ctx, p.ID)) })
		}
		wg.Wait()
	}
	advanceAll()
	got, err := svc.GetPipeline(ctx, p.ID)
	require.NoError(t, err)
	require.Equal(t, task.StatusStarted, got.Status)
	ids := got.Steps[0].TaskIDs
	require.Len(t, ids, 3)
	require.Equal(t, 3, queued.count(), "eight advances, three tasks")

	for i, id := range ids {
		require.NoError(t, records.Succeeded(ctx, id, store.Success{Result: json.RawMessage(`{"text":"` + string(rune('A'+i)) + `"}`)}, time.Now()))
	}
	advanceAll()
	got, err = svc.GetPipeline(ctx, p.ID)
	require.NoError(t, err)
	require.Equal(t, []task.Status{task.StatusSuccess, task.StatusStarted}, []task.Status{got.Steps[0].Status, got.Steps[1].Status})
	require.Equal(t, 4, queued.count(), "one more: the second step's")
	last, err := svc.Get(ctx, got.Steps[1].TaskID)
	require.NoError(t, err)
	require.Equal(t, p.ID, last.PipelineID)
	require.JSONEq(t, `{"prompt":"A\n\nB\n\nC"}`, string(last.Payload), "the items' outputs in order")
}

// idQueue records the ids queued; the queue itself keeps one message per
// id, so an id queued twice is one task.
type idQueue struct {
	mu  sync.Mutex
	ids map[string]int
}

func (q *idQueue) Enqueue(_ context.Context, _ task.Type, _ task.Priority, id, _ string, _ int, _ time.Time, _ []byte) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.ids[id]++
	return nil
}

func (q *idQueue) count() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.ids)
}

// What moving a pipeline from one step to the next costs in Redis round
// trips, counted: the figure the README gives.
func TestRoundTripsOfAStepsMove(t *testing.T) {
	t.Parallel()
	_, trips, rdb := redisService(t)
	records := store.New(rdb, time.Hour)
	svc := service.New(service.Deps{Records: records, Keys: records, Pipelines: records, Queue: &idQueue{ids: map[string]int{}},
		Providers: service.Providers{LLM: &fakeLLM{}}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, service.Config{SyncTimeout: time.Second})
	ctx := asSystem()
	var in task.PipelineInput
	require.NoError(t, json.Unmarshal([]byte(`{"steps":[{"kind":"generate_text","input":{"prompt":"a"}},
	  {"kind":"generate_text","input":{"prompt":"{{steps.0.text}}"}}]}`), &in))
	p, err := svc.CreatePipeline(ctx, in)
	require.NoError(t, err)
	require.NoError(t, svc.AdvancePipeline(ctx, p.ID))
	first := service.StepTaskID(p.ID, 0, 0)
	require.NoError(t, records.Succeeded(ctx, first, store.Success{Result: json.RawMessage(`{"text":"A"}`)}, time.Now()))

	trips.Reset()
	require.NoError(t, svc.AdvancePipeline(ctx, p.ID))
	// read the pipeline, the step's statuses, move it, read the earlier
	// step's result, create the next task (its enqueue is the fake
	// queue's), read the pipeline again (a cancel meanwhile revokes it)
	require.EqualValues(t, 6, trips.Count(), "an advance that moves a pipeline on, besides the next task's enqueue")
	got, err := svc.GetPipeline(ctx, p.ID)
	require.NoError(t, err)
	require.Equal(t, task.StatusStarted, got.Steps[1].Status)
}

// announcer records the deliveries queued.
type announcer struct {
	mu  sync.Mutex
	ids []string
	err error
}

func (a *announcer) Announce(_ context.Context, id, _, _, _ string, _ []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return a.err
	}
	a.ids = append(a.ids, id)
	return nil
}

// A pipeline whose end could not be announced (the queue away, or its
// worker dead in between) stays due, and the next look queues its webhook.
func TestAnEndedPipelinesWebhookIsQueuedOnTheNextLookIfNotAtOnce(t *testing.T) {
	t.Parallel()
	_, _, rdb := redisService(t)
	records := store.New(rdb, time.Hour)
	hooks := &announcer{err: context.DeadlineExceeded}
	svc := service.New(service.Deps{Records: records, Keys: records, Pipelines: records, Queue: &idQueue{ids: map[string]int{}}, Announcer: hooks,
		Providers: service.Providers{LLM: &fakeLLM{}}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))},
		service.Config{SyncTimeout: time.Second, WebhooksEnabled: true})
	ctx := asSystem()
	var in task.PipelineInput
	require.NoError(t, json.Unmarshal([]byte(`{"webhook":"https://example.com/hook","steps":[{"kind":"generate_text","input":{"prompt":"a"}}]}`), &in))
	p, err := svc.CreatePipeline(ctx, in)
	require.NoError(t, err)
	require.NoError(t, svc.AdvancePipeline(ctx, p.ID))
	require.NoError(t, records.Succeeded(ctx, service.StepTaskID(p.ID, 0, 0), store.Success{Result: json.RawMessage(`{"text":"A"}`)}, time.Now()))
	require.NoError(t, svc.AdvancePipeline(ctx, p.ID))
	got, err := svc.GetPipeline(ctx, p.ID)
	require.NoError(t, err)
	require.Equal(t, task.StatusSuccess, got.Status)
	require.Empty(t, hooks.ids, "the queue was away")

	due, err := records.DuePipelines(ctx, time.Now(), time.Now().Add(time.Minute), 10)
	require.NoError(t, err)
	require.Equal(t, []string{p.ID}, due, "still due: its webhook is owed")
	hooks.mu.Lock()
	hooks.err = nil
	hooks.mu.Unlock()
	require.NoError(t, svc.AdvancePipeline(ctx, p.ID))
	require.Equal(t, []string{p.ID + "-completed"}, hooks.ids)
	due, err = records.DuePipelines(ctx, time.Now().Add(time.Hour), time.Now().Add(2*time.Hour), 10)
	require.NoError(t, err)
	require.Empty(t, due, "looked at no more once its webhook is queued")
}
