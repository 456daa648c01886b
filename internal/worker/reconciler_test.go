package worker_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/queue"
	"github.com/siganteng/siganteng/internal/redistest"
	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
	"github.com/siganteng/siganteng/internal/worker"
)

// reconcilerParts are a real Redis, the store and the queue on it.
func reconcilerParts(t *testing.T) (*redis.Client, *store.Store, *queue.Client) {
	t.Helper()
	rdb := redistest.Client(t, redistest.URL(t))
	return rdb, store.New(rdb, time.Hour), queue.New(rdb, queue.Options{MaxRetry: 0, Timeout: time.Minute})
}

func TestReconcilerEndsTasksTheQueueGaveUpOn(t *testing.T) {
	t.Parallel()
	rdb, s, q := reconcilerParts(t)
	inspector := asynq.NewInspectorFromRedisClient(rdb)
	ctx := context.Background()
	created := time.Now().Add(-time.Hour)
	newTask := func(id string, enqueue bool) {
		require.NoError(t, s.Create(ctx, &task.Record{ID: id, Type: task.TypeGenerateText, Status: task.StatusPending, CreatedAt: created}, store.Limits{}))
		if enqueue {
			require.NoError(t, q.Enqueue(ctx, task.TypeGenerateText, "", id, "", 1, time.Time{}, []byte(`{"prompt":"p"}`)))
		}
	}

	newTask("archived", true) // as asynq's recoverer leaves a task whose worker died with no retries left
	require.NoError(t, s.Started(ctx, "archived", 1, created))
	require.NoError(t, inspector.ArchiveTask(queue.Name(task.TypeGenerateText, ""), "archived"))
	newTask("orphan", false) // its enqueue never happened
	newTask("waiting", true) // pending in the queue: in hand
	newTask("moved", false)  // moved to the waiting queue for budget: in hand
	require.NoError(t, q.Defer(ctx, asynq.NewTaskWithHeaders(string(task.TypeGenerateText), []byte(`{"prompt":"p"}`), map[string]string{}),
		"moved", 0, time.Now().Add(time.Hour)))
	require.NoError(t, s.Create(ctx, &task.Record{ID: "fresh", Type: task.TypeGenerateText, Status: task.StatusPending, CreatedAt: time.Now()}, store.Limits{}))
	deadline := created.Add(time.Minute) // long past, and no worker reached it
	require.NoError(t, s.Create(ctx, &task.Record{ID: "overdue", Type: task.TypeGenerateText, Status: task.StatusPending, CreatedAt: created, CancelAt: &deadline}, store.Limits{}))
	require.NoError(t, q.Enqueue(ctx, task.TypeGenerateText, "", "overdue", "", 1, time.Time{}, []byte(`{"prompt":"p"}`)))

	r := worker.NewReconciler(rdb, s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	r.Grace = time.Minute
	ended, err := r.Round(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, ended)

	for id, want := range map[string]task.Status{"archived": task.StatusFailure, "orphan": task.StatusFailure,
		"waiting": task.StatusPending, "moved": task.StatusPending, "fresh": task.StatusPending, "overdue": task.StatusRevoked} {
		rec, err := s.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, want, rec.Status, id)
		if want == task.StatusFailure {
			require.Equal(t, task.FailureLost, rec.Error.Code, id)
		}
	}
	rec, _ := s.Get(ctx, "archived")
	require.Contains(t, rec.Error.Message, "the worker running it stopped")

	ended, err = r.Round(ctx)
	require.NoError(t, err)
	require.Zero(t, ended, "a second round finds nothing more")
}

// queueAgain queues a task from its record, as service.Requeue does.
type queueAgain struct{ q *queue.Client }

func (a queueAgain) Requeue(ctx context.Context, rec *task.Record) error {
	return a.q.Enqueue(ctx, rec.Type, rec.Priority, rec.ID, rec.Owner, 1, time.Time{}, rec.Payload)
}

// A pipeline's step recorded but never queued (its advance died between
// the two) is queued again rather than ended lost; a client's own task in
// the same state still ends lost.
func TestReconcilerQueuesAgainAStepThatWasNeverQueued(t *testing.T) {
	t.Parallel()
	rdb, s, q := reconcilerParts(t)
	ctx := context.Background()
	created := time.Now().Add(-time.Hour)
	require.NoError(t, s.Create(ctx, &task.Record{ID: "step", Type: task.TypeGenerateText, Status: task.StatusPending, CreatedAt: created,
		PipelineID: "p", PipelineStep: "0", Payload: []byte(`{"prompt":"p"}`)}, store.Limits{}))
	require.NoError(t, s.Create(ctx, &task.Record{ID: "client", Type: task.TypeGenerateText, Status: task.StatusPending, CreatedAt: created,
		Payload: []byte(`{"prompt":"p"}`)}, store.Limits{}))

	r := worker.NewReconciler(rdb, s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	r.Requeue = queueAgain{q}
	ended, err := r.Round(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, ended, "the client's orphan only")
	info, err := asynq.NewInspectorFromRedisClient(rdb).GetTaskInfo(queue.Name(task.TypeGenerateText, ""), "step")
	require.NoError(t, err, "the step is in the queue")
	require.Equal(t, asynq.TaskStatePending, info.State)
	rec, _ := s.Get(ctx, "step")
	require.Equal(t, task.StatusPending, rec.Status)
	rec, _ = s.Get(ctx, "client")
	require.Equal(t, task.StatusFailure, rec.Status)
}

// A task in its key's line was never queued, and is in hand; one let out
// of it whose admitter died before queuing it is queued again.
func TestReconcilerLeavesATaskInLineAndQueuesOneLetOutButNotQueued(t *testing.T) {
	t.Parallel()
	rdb, s, q := reconcilerParts(t)
	ctx := context.Background()
	created := time.Now().Add(-time.Hour)
	_, err := s.AdmitFromLines(ctx, store.Admission{Process: "w", Slots: 1, Lapse: time.Minute, Most: 1}, created) // window 2
	require.NoError(t, err)
	for _, id := range []string{"a0", "a1", "a2", "a3"} {
		rec := &task.Record{ID: id, Type: task.TypeGenerateText, Status: task.StatusPending, Owner: "k", CreatedAt: created, Payload: []byte(`{"prompt":"p"}`)}
		require.NoError(t, s.Create(ctx, rec, store.Limits{MayWait: true}))
		if rec.Waiting == nil {
			require.NoError(t, q.Enqueue(ctx, rec.Type, "", id, "k", 1, time.Time{}, rec.Payload))
		}
	}
	require.NoError(t, s.Failed(ctx, "a0", task.Failure{Code: "x", Message: "y"}, created))
	admitted, err := s.AdmitFromLines(ctx, store.Admission{Process: "w", Slots: 1, Lapse: time.Minute, Most: 1}, created) // a2, not queued: its admitter died
	require.NoError(t, err)
	require.Len(t, admitted, 1)
	require.Equal(t, "a2", admitted[0].ID)

	r := worker.NewReconciler(rdb, s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	r.Requeue = queueAgain{q}
	ended, err := r.Round(ctx)
	require.NoError(t, err)
	require.Zero(t, ended, "neither is lost")
	inspector := asynq.NewInspectorFromRedisClient(rdb)
	_, err = inspector.GetTaskInfo(queue.Name(task.TypeGenerateText, ""), "a2")
	require.NoError(t, err, "the task let out is queued")
	_, err = inspector.GetTaskInfo(queue.Name(task.TypeGenerateText, ""), "a3")
	require.ErrorIs(t, err, asynq.ErrTaskNotFound, "the task in line stays there")
	rec, err := s.Get(ctx, "a3")
	require.NoError(t, err)
	require.Equal(t, task.StatusPending, rec.Status)
	require.Equal(t, task.WaitKeyShare, rec.Waiting.Reason)
}
