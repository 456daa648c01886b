package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/notify"
	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/queue"
	"github.com/siganteng/siganteng/internal/redistest"
	"github.com/siganteng/siganteng/internal/service"
	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
	"github.com/siganteng/siganteng/internal/worker"
)

// executor runs fn for every attempt and counts attempts.
type executor struct {
	calls atomic.Int32
	fn    func(ctx context.Context, attempt int) (service.Outcome, error)

	mu     sync.Mutex
	starts []time.Time
}

func (e *executor) Execute(ctx context.Context, _ string, _ task.Type, _ []byte, _ service.Progress) (service.Outcome, error) {
	n := int(e.calls.Add(1))
	e.mu.Lock()
	e.starts = append(e.starts, time.Now())
	e.mu.Unlock()
	return e.fn(ctx, n)
}

func succeed(context.Context, int) (service.Outcome, error) {
	return service.Outcome{Provider: "fake", Result: json.RawMessage(`{"text":"done"}`)}, nil
}

type testBundle struct {
	store     *store.Store
	queue     *queue.Client
	worker    *worker.Worker
	exec      *executor
	inspector *asynq.Inspector
}

// handled waits until the worker has taken task id and the queue is done
// with it (asynq keeps no copy of a task that ended): the positive sign that
// makes "it did not run" mean something.
func (b *testBundle) handled(t *testing.T, id string) {
	t.Helper()
	require.Eventually(t, func() bool {
		_, err := b.inspector.GetTaskInfo(queue.Name(task.TypeGenerateText, ""), id)
		return errors.Is(err, asynq.ErrTaskNotFound)
	}, 10*time.Second, 5*time.Millisecond, "the worker never took task %s", id)
}

type options struct {
	maxRetry int
	timeout  time.Duration
	grace    time.Duration
	waits    bool // tasks that wait for budget move to the waiting queue
	slots    int  // tasks at once; 4 when zero
}

func setup(t *testing.T, fn func(ctx context.Context, attempt int) (service.Outcome, error), opts options) *testBundle {
	t.Helper()
	rdb := redistest.Client(t, redistest.URL(t))
	if opts.timeout == 0 {
		opts.timeout = 10 * time.Second
	}
	if opts.grace == 0 {
		opts.grace = 5 * time.Second
	}
	if opts.slots == 0 {
		opts.slots = 4
	}
	exec := &executor{fn: fn}
	s := store.New(rdb, time.Hour)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hub := notify.New(rdb, log)
	hubCtx, stopHub := context.WithCancel(context.Background())
	t.Cleanup(stopHub)
	go hub.Run(hubCtx)
	<-hub.Ready()
	q := queue.New(rdb, queue.Options{MaxRetry: opts.maxRetry, Timeout: opts.timeout})
	var waits worker.Deferrer
	if opts.waits {
		waits = q
	}
	w := worker.New(rdb, worker.Config{
		Concurrency:         opts.slots,
		Queues:              queue.DefaultWeights([]task.Type{task.TypeGenerateText}),
		PollInterval:        5 * time.Millisecond,
		DelayedPollInterval: 50 * time.Millisecond,
		ShutdownTimeout:     opts.grace,
		Backoff:             worker.Backoff{Base: 100 * time.Millisecond, Max: 2 * time.Second},
		Waits:               waits,
	}, exec, s, hub, log, nil)
	require.NoError(t, w.Start())
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			w.Stop()
		}
	})
	return &testBundle{store: s, queue: q, worker: w, exec: exec, inspector: asynq.NewInspectorFromRedisClient(rdb)}
}

func (b *testBundle) submit(t *testing.T) string {
	t.Helper()
	id := uuid.NewString()
	ctx := context.Background()
	require.NoError(t, b.store.Create(ctx, &task.Record{ID: id, Type: task.TypeGenerateText, Status: task.StatusPending, CreatedAt: time.Now()}, store.Limits{}))
	require.NoError(t, b.queue.Enqueue(ctx, task.TypeGenerateText, "", id, "", 1, time.Time{}, []byte(`{"prompt":"p"}`)))
	return id
}

// await polls the record until it is terminal and returns every status seen.
func (b *testBundle) await(t *testing.T, id string, within time.Duration) (*task.Record, []task.Status) {
	t.Helper()
	var seen []task.Status
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		rec, err := b.store.Get(context.Background(), id)
		require.NoError(t, err)
		if len(seen) == 0 || seen[len(seen)-1] != rec.Status {
			seen = append(seen, rec.Status)
		}
		if rec.Status.Terminal() {
			return rec, seen
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("task %s not finished within %s; statuses seen: %v", id, within, seen)
	return nil, nil
}

func TestSuccess(t *testing.T) {
	t.Parallel()
	b := setup(t, succeed, options{maxRetry: 3})
	id := b.submit(t)
	rec, _ := b.await(t, id, 5*time.Second)
	require.Equal(t, task.StatusSuccess, rec.Status)
	require.Equal(t, 1, rec.Attempts)
	require.Equal(t, "fake", rec.Provider)
	require.JSONEq(t, `{"text":"done"}`, string(rec.Result))
	require.NotNil(t, rec.StartedAt)
	require.NotNil(t, rec.CompletedAt)
	require.Nil(t, rec.Error)
}

// The key and its share weight travel with the task to flow control.
func TestTheOwnersKeyAndWeightReachFlowControl(t *testing.T) {
	t.Parallel()
	type seen struct {
		key    string
		weight int
	}
	got := make(chan seen, 2)
	b := setup(t, func(ctx context.Context, _ int) (service.Outcome, error) {
		got <- seen{provider.FlowKeyOf(ctx), provider.FlowWeightOf(ctx)}
		return succeed(ctx, 1)
	}, options{})
	ctx := context.Background()
	for _, weight := range []int{3, 1} {
		id := uuid.NewString()
		require.NoError(t, b.store.Create(ctx, &task.Record{ID: id, Type: task.TypeGenerateText, Status: task.StatusPending, CreatedAt: time.Now()}, store.Limits{}))
		require.NoError(t, b.queue.Enqueue(ctx, task.TypeGenerateText, "", id, "sgk_heavy0000000", weight, time.Time{}, []byte(`{"prompt":"p"}`)))
		b.await(t, id, 5*time.Second)
		require.Equal(t, seen{"sgk_heavy0000000", weight}, <-got)
	}
}

func TestTransientFailuresRetryHonouringRetryAfter(t *testing.T) {
	t.Parallel()
	b := setup(t, func(ctx context.Context, n int) (service.Outcome, error) {
		if n < 3 {
			return service.Outcome{Provider: "fake"}, &provider.Error{Provider: "fake", Kind: provider.KindRateLimited,
				StatusCode: 429, RetryAfter: 400 * time.Millisecond, Message: "slow down"}
		}
		return succeed(ctx, n)
	}, options{maxRetry: 3})
	id := b.submit(t)
	rec, seen := b.await(t, id, 10*time.Second)
	require.Equal(t, task.StatusSuccess, rec.Status)
	require.Equal(t, 3, rec.Attempts)
	require.Contains(t, seen, task.StatusRetry)
	require.EqualValues(t, 3, b.exec.calls.Load())
	b.exec.mu.Lock()
	defer b.exec.mu.Unlock()
	for i := 1; i < len(b.exec.starts); i++ {
		require.GreaterOrEqual(t, b.exec.starts[i].Sub(b.exec.starts[i-1]), 400*time.Millisecond, "Retry-After was not honoured")
	}
}

func TestRetryShowsTheFailureAndNextAttempt(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	b := setup(t, func(ctx context.Context, n int) (service.Outcome, error) {
		if n == 1 {
			return service.Outcome{Provider: "fake"}, &provider.Error{Provider: "fake", Kind: provider.KindUnavailable, StatusCode: 503, RetryAfter: time.Second, Message: "overloaded"}
		}
		<-release
		return succeed(ctx, n)
	}, options{maxRetry: 1})
	id := b.submit(t)
	deadline := time.Now().Add(5 * time.Second)
	for {
		rec, err := b.store.Get(context.Background(), id)
		require.NoError(t, err)
		if rec.Status == task.StatusRetry {
			require.Equal(t, task.FailureProviderUnavailable, rec.Error.Code)
			require.Contains(t, rec.Error.Message, "overloaded")
			require.Equal(t, "fake", rec.Error.Provider)
			require.NotNil(t, rec.NextAttemptAt)
			require.WithinDuration(t, time.Now().Add(time.Second), *rec.NextAttemptAt, time.Second)
			break
		}
		require.True(t, time.Now().Before(deadline), "never saw RETRY")
		time.Sleep(2 * time.Millisecond)
	}
	close(release)
	rec, _ := b.await(t, id, 5*time.Second)
	require.Equal(t, task.StatusSuccess, rec.Status)
}

// A task longer than the deadline of one record write still records its
// result, once.
func TestLongTaskRecordsItsResult(t *testing.T) {
	t.Parallel()
	b := setup(t, func(ctx context.Context, n int) (service.Outcome, error) {
		time.Sleep(6 * time.Second)
		return succeed(ctx, n)
	}, options{maxRetry: 3})
	id := b.submit(t)
	rec, _ := b.await(t, id, 20*time.Second)
	require.Equal(t, task.StatusSuccess, rec.Status)
	require.Equal(t, 1, rec.Attempts)
	require.EqualValues(t, 1, b.exec.calls.Load())
}

func TestPermanentFailureFailsAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, func(context.Context, int) (service.Outcome, error) {
		return service.Outcome{Provider: "fake"}, &provider.Error{Provider: "fake", Kind: provider.KindRejected, StatusCode: 400, Message: "bad model"}
	}, options{maxRetry: 3})
	id := b.submit(t)
	rec, seen := b.await(t, id, 5*time.Second)
	require.Equal(t, task.StatusFailure, rec.Status)
	require.Equal(t, 1, rec.Attempts)
	require.NotContains(t, seen, task.StatusRetry)
	require.Equal(t, task.FailureProviderRejected, rec.Error.Code)
	require.Equal(t, "fake", rec.Error.Provider)
	require.Contains(t, rec.Error.Message, "bad model")
	time.Sleep(200 * time.Millisecond)
	require.EqualValues(t, 1, b.exec.calls.Load(), "a permanent failure must not be retried")
}

func TestRetriesRunOut(t *testing.T) {
	t.Parallel()
	b := setup(t, func(context.Context, int) (service.Outcome, error) {
		return service.Outcome{Provider: "fake"}, &provider.Error{Provider: "fake", Kind: provider.KindUnavailable, StatusCode: 500, Message: "boom"}
	}, options{maxRetry: 2})
	id := b.submit(t)
	rec, _ := b.await(t, id, 10*time.Second)
	require.Equal(t, task.StatusFailure, rec.Status)
	require.Equal(t, 3, rec.Attempts)
	require.Equal(t, task.FailureProviderUnavailable, rec.Error.Code)
	require.EqualValues(t, 3, b.exec.calls.Load())
}

func TestTaskTimeoutEndsTheAttempt(t *testing.T) {
	t.Parallel()
	b := setup(t, func(ctx context.Context, _ int) (service.Outcome, error) {
		<-ctx.Done()
		return service.Outcome{Provider: "fake"}, provider.ErrorFromTransport(ctx, "fake", ctx.Err())
	}, options{maxRetry: 1, timeout: time.Second}) // asynq counts timeouts in whole seconds
	id := b.submit(t)
	rec, _ := b.await(t, id, 10*time.Second)
	require.Equal(t, task.StatusFailure, rec.Status)
	require.Equal(t, task.FailureTimeout, rec.Error.Code)
	require.Equal(t, 2, rec.Attempts)
}

func TestFinishedTaskIsNotRunAgain(t *testing.T) {
	t.Parallel()
	b := setup(t, succeed, options{})
	id := uuid.NewString()
	ctx := context.Background()
	require.NoError(t, b.store.Create(ctx, &task.Record{ID: id, Type: task.TypeGenerateText, Status: task.StatusPending, CreatedAt: time.Now()}, store.Limits{}))
	require.NoError(t, b.store.Failed(ctx, id, task.Failure{Code: task.FailureInternal, Message: "ended elsewhere"}, time.Now()))
	require.NoError(t, b.queue.Enqueue(ctx, task.TypeGenerateText, "", id, "", 1, time.Time{}, []byte(`{"prompt":"p"}`)))
	b.handled(t, id)
	require.EqualValues(t, 0, b.exec.calls.Load())
	rec, err := b.store.Get(ctx, id)
	require.NoError(t, err)
	require.Equal(t, task.StatusFailure, rec.Status)
}

func TestTaskWithoutRecordIsNotRun(t *testing.T) {
	t.Parallel()
	b := setup(t, succeed, options{})
	id := uuid.NewString()
	require.NoError(t, b.queue.Enqueue(context.Background(), task.TypeGenerateText, "", id, "", 1, time.Time{}, []byte(`{"prompt":"p"}`)))
	b.handled(t, id)
	require.EqualValues(t, 0, b.exec.calls.Load())
	_, err := b.store.Get(context.Background(), id)
	require.Equal(t, task.ENOTFOUND, task.CodeOf(err), "no record is invented")
}

func TestRevokedWhileRunningIsCancelledNotRetried(t *testing.T) {
	t.Parallel()
	running := make(chan struct{})
	cause := make(chan error, 1)
	b := setup(t, func(ctx context.Context, _ int) (service.Outcome, error) {
		close(running)
		<-ctx.Done()
		cause <- ctx.Err()
		return service.Outcome{Provider: "fake"}, provider.ErrorFromTransport(ctx, "fake", ctx.Err())
	}, options{maxRetry: 3})
	id := b.submit(t)
	<-running
	require.NoError(t, b.store.Revoked(context.Background(), id, "cancelled by the client", time.Now()))
	select {
	case err := <-cause:
		require.ErrorIs(t, err, context.Canceled, "the provider call's context was cancelled")
	case <-time.After(5 * time.Second):
		t.Fatal("the running attempt was not cancelled")
	}
	b.handled(t, id) // done with, not scheduled for a retry
	require.EqualValues(t, 1, b.exec.calls.Load(), "a revoked task is not retried")
	rec, err := b.store.Get(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, task.StatusRevoked, rec.Status)
	require.Equal(t, task.FailureRevoked, rec.Error.Code)
}

func TestRevokedBeforeStartNeverRuns(t *testing.T) {
	t.Parallel()
	b := setup(t, succeed, options{})
	id := uuid.NewString()
	ctx := context.Background()
	require.NoError(t, b.store.Create(ctx, &task.Record{ID: id, Type: task.TypeGenerateText, Status: task.StatusPending, CreatedAt: time.Now()}, store.Limits{}))
	require.NoError(t, b.store.Revoked(ctx, id, "cancelled by the client", time.Now()))
	require.NoError(t, b.queue.Enqueue(ctx, task.TypeGenerateText, "", id, "", 1, time.Time{}, []byte(`{"prompt":"p"}`)))
	b.handled(t, id)
	require.EqualValues(t, 0, b.exec.calls.Load())
}

func TestStopLetsRunningTasksFinish(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	b := setup(t, func(ctx context.Context, n int) (service.Outcome, error) {
		close(started)
		time.Sleep(500 * time.Millisecond)
		return succeed(ctx, n)
	}, options{grace: 5 * time.Second})
	id := b.submit(t)
	<-started
	b.worker.Stop()
	rec, err := b.store.Get(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, task.StatusSuccess, rec.Status, "a task shorter than the grace period finishes during stop")
	require.EqualValues(t, 1, b.exec.calls.Load())
}

// A task that waits for budget moves to the waiting queue, and its
// failures before and after count against one allowance of retries: the
// wait is no failure, and the move does not start the count afresh.
func TestAWaitMovesTheTaskToTheWaitingQueueWithItsRetries(t *testing.T) {
	t.Parallel()
	var (
		mu     sync.Mutex
		queues []string
	)
	b := setup(t, func(ctx context.Context, n int) (service.Outcome, error) {
		q, _ := asynq.GetQueueName(ctx)
		mu.Lock()
		queues = append(queues, q)
		mu.Unlock()
		if n == 2 {
			return service.Outcome{}, &provider.WaitError{Deployment: "chat/1", Reason: "requests", Until: time.Now().Add(300 * time.Millisecond)}
		}
		return service.Outcome{Provider: "fake"}, &provider.Error{Provider: "fake", Kind: provider.KindUnavailable, StatusCode: 500, Message: "boom"}
	}, options{maxRetry: 2, waits: true})
	id := b.submit(t)
	rec, _ := b.await(t, id, 15*time.Second)
	require.Equal(t, task.StatusFailure, rec.Status)
	require.Equal(t, 3, rec.Attempts, "three failed attempts: the first and the two retries allowed")
	require.EqualValues(t, 4, b.exec.calls.Load(), "three failures and one wait")
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"generate_text", "generate_text", queue.QueueWaiting, queue.QueueWaiting}, queues)
	for _, q := range []string{"generate_text", queue.QueueWaiting} {
		_, err := b.inspector.GetTaskInfo(q, id)
		require.ErrorIs(t, err, asynq.ErrTaskNotFound, "nothing left of it in %s", q)
	}
}

// Tasks back from a wait run in a pool of their own: with one slot, a
// task back from its wait and still running holds no slot a new task
// needs (in one shared pool, the new task would wait for it).
func TestATaskBackFromAWaitHoldsNoSlotOfNewTasks(t *testing.T) {
	t.Parallel()
	var (
		first           atomic.Value
		back, release   = make(chan struct{}), make(chan struct{})
		waited, hasBack atomic.Bool
	)
	b := setup(t, func(ctx context.Context, n int) (service.Outcome, error) {
		id, _ := asynq.GetTaskID(ctx)
		first.CompareAndSwap(nil, id)
		if id != first.Load() {
			return succeed(ctx, n)
		}
		if waited.CompareAndSwap(false, true) {
			return service.Outcome{}, &provider.WaitError{Deployment: "chat/1", Reason: "requests", Until: time.Now().Add(200 * time.Millisecond)}
		}
		if hasBack.CompareAndSwap(false, true) {
			close(back)
		}
		<-release
		return succeed(ctx, n)
	}, options{waits: true, slots: 1})
	waiting := b.submit(t)
	select {
	case <-back:
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting task never came back")
	}
	fresh := b.submit(t)
	rec, _ := b.await(t, fresh, 5*time.Second)
	require.Equal(t, task.StatusSuccess, rec.Status, "a new task runs while one back from its wait holds its slot")
	close(release)
	rec, _ = b.await(t, waiting, 5*time.Second)
	require.Equal(t, task.StatusSuccess, rec.Status)
}
