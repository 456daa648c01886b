// Package worker runs queued tasks: an asynq server with one handler for all
// task types, which keeps the task record in step with each attempt and
// decides, from the provider's error, whether to retry or fail.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/siganteng/siganteng/internal/metrics"
	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/queue"
	"github.com/siganteng/siganteng/internal/service"
	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
	"github.com/siganteng/siganteng/internal/tracing"
	"github.com/siganteng/siganteng/internal/webhook"
)

// Executor runs the work of one task.
type Executor interface {
	Execute(ctx context.Context, id string, typ task.Type, payload []byte, progress service.Progress) (service.Outcome, error)
}

// Records is the task record store as the worker uses it. Each method
// returns store.ErrFinished when the task has already ended, and a
// task.ENOTFOUND error when its record does not exist.
type Records interface {
	Started(ctx context.Context, id string, attempt int, at time.Time) error
	Retrying(ctx context.Context, id string, failure task.Failure, next time.Time, calls ...task.Call) error
	Succeeded(ctx context.Context, id string, out store.Success, at time.Time) error
	Failed(ctx context.Context, id string, failure task.Failure, at time.Time, calls ...task.Call) error
	// Waiting records a wait for budget; store.ErrWaitedTooLong past maxWait.
	Waiting(ctx context.Context, id string, w task.Waiting, maxWait time.Duration, at time.Time) error
	Reporter
}

// Inputs deletes what a task's submit stored for it (an upload).
type Inputs interface {
	DiscardInput(ctx context.Context, id string, typ task.Type) error
}

// Endings tells the worker when a task ends elsewhere (it was revoked).
type Endings interface {
	// Listen returns a channel that receives when task id ends, and the
	// function that stops listening.
	Listen(id string) (<-chan struct{}, func())
}

// errRevoked is the cause of an attempt's context ending because its task
// was revoked.
var errRevoked = errors.New("the task was revoked")

// Config configures a worker.
type Config struct {
	Concurrency int
	// Queues are the queues to serve, by name, with their weights: a queue
	// with twice the weight is looked at first twice as often.
	Queues map[string]int
	// PollInterval is how often an idle worker looks for new tasks; it bounds
	// the latency of a task submitted to an idle system.
	PollInterval time.Duration
	// DelayedPollInterval is how often retries whose delay has passed are
	// moved back onto their queue.
	DelayedPollInterval time.Duration
	ShutdownTimeout     time.Duration // grace for running tasks on stop
	Backoff             Backoff
	// Webhooks delivers webhook tasks; nil when WEBHOOK_SECRET is unset.
	Webhooks WebhookDeliverer
	// WebhookSchedule is the delay before each retry of a delivery;
	// webhook.Schedule when empty.
	WebhookSchedule []time.Duration
	// WebhookConcurrency is how many deliveries run at once, in a pool of
	// their own (the webhooks queue has a server of its own), so that slow
	// receivers hold no task's slot; 64 when zero.
	WebhookConcurrency int
	// Metrics records attempts and ends; nil for none.
	Metrics *metrics.Metrics
	// Tracer makes each attempt's span; nil for none.
	Tracer trace.Tracer
	// Inputs deletes the uploads of tasks that end without success; nil
	// leaves them to the artifact sweep.
	Inputs Inputs
	// Batches runs batch steps; nil for a worker that runs none.
	Batches BatchRunner
	// Types are the task types it runs; task.Types when empty.
	Types []task.Type
	// MaxWait is how long a task may wait for its deployment's budget in
	// all before it fails (FLOW_MAX_WAIT); an hour when zero.
	MaxWait time.Duration
	// Waits moves normal-priority tasks that wait for budget to the
	// waiting queue, which a pool of its own serves (Concurrency more
	// tasks at once); nil retries them in their own queue.
	Waits Deferrer
}

// Deferrer moves a task that waits for budget to the waiting queue (see
// queue.Client.Defer).
type Deferrer interface {
	Defer(ctx context.Context, t *asynq.Task, id string, retried int, at time.Time) error
}

// BatchRunner runs one step of a batch (see batch.Runner).
type BatchRunner interface {
	Step(ctx context.Context, payload []byte) error
}

// WebhookDeliverer posts one queued webhook delivery.
type WebhookDeliverer interface {
	Deliver(ctx context.Context, payload []byte) error
}

// Worker processes tasks until stopped.
type Worker struct {
	srv     *asynq.Server
	hookSrv *asynq.Server
	waitSrv *asynq.Server // the waiting queue's pool
	exec    Executor
	records Records
	endings Endings
	backoff Backoff
	hooks   WebhookDeliverer
	batches BatchRunner
	hookDue []time.Duration
	metrics *metrics.Metrics
	tracer  trace.Tracer
	inputs  Inputs
	types   []task.Type
	maxWait time.Duration
	waits   Deferrer
	log     *slog.Logger
	now     func() time.Time
}

// New returns a worker on rdb. now may be nil for time.Now.
func New(rdb redis.UniversalClient, cfg Config, exec Executor, records Records, endings Endings, log *slog.Logger, now func() time.Time) *Worker {
	if now == nil {
		now = time.Now
	}
	if len(cfg.WebhookSchedule) == 0 {
		cfg.WebhookSchedule = webhook.Schedule
	}
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider().Tracer("")
	}
	w := &Worker{exec: exec, records: records, endings: endings, backoff: cfg.Backoff, tracer: cfg.Tracer,
		hooks: cfg.Webhooks, batches: cfg.Batches, hookDue: cfg.WebhookSchedule, metrics: cfg.Metrics, inputs: cfg.Inputs, types: cfg.Types, maxWait: cfg.MaxWait, waits: cfg.Waits, log: log, now: now}
	if len(w.types) == 0 {
		w.types = task.Types
	}
	if w.maxWait <= 0 {
		w.maxWait = time.Hour
	}
	queues := maps.Clone(cfg.Queues)
	delete(queues, queue.QueueWebhooks) // served by hookSrv
	delete(queues, queue.QueueWaiting)  // served by waitSrv
	tasks := func(queues map[string]int, poll time.Duration, log *slog.Logger) *asynq.Server {
		return asynq.NewServerFromRedisClient(rdb, asynq.Config{
			Concurrency:              cfg.Concurrency,
			Queues:                   queues,
			TaskCheckInterval:        poll,
			DelayedTaskCheckInterval: cfg.DelayedPollInterval,
			ShutdownTimeout:          cfg.ShutdownTimeout,
			RetryDelayFunc:           w.retryDelay,
			// A wait for budget goes back to the queue without counting as
			// a failed attempt: it uses up no retry.
			IsFailure: func(err error) bool { return !isWait(err) },
			Logger:    asynqLogger{log},
			LogLevel:  asynq.InfoLevel,
		})
	}
	w.srv = tasks(queues, cfg.PollInterval, log.With("from", "asynq"))
	// Tasks back from a wait for budget have a pool of their own, with its
	// own look at the queue: asynq brings them back in whole-second
	// batches, which would otherwise be dequeued ahead of new tasks. It
	// looks less often when idle: they are due in whole seconds anyway.
	w.waitSrv = tasks(map[string]int{queue.QueueWaiting: 1}, max(cfg.PollInterval, sidePoolPoll), log.With("from", "asynq", "pool", "waiting"))
	if cfg.WebhookConcurrency <= 0 {
		cfg.WebhookConcurrency = 64
	}
	w.hookSrv = asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency: cfg.WebhookConcurrency,
		Queues:      map[string]int{queue.QueueWebhooks: 1},
		// A delivery may wait this much longer to start than a task: an
		// idle server looks once per interval, and one more server looking
		// every few milliseconds would double an idle worker's Redis calls.
		TaskCheckInterval:        max(cfg.PollInterval, sidePoolPoll),
		DelayedTaskCheckInterval: cfg.DelayedPollInterval,
		ShutdownTimeout:          cfg.ShutdownTimeout,
		RetryDelayFunc:           w.retryDelay,
		Logger:                   asynqLogger{log.With("from", "asynq", "pool", "webhooks")},
		LogLevel:                 asynq.InfoLevel,
	})
	return w
}

// sidePoolPoll is how often an idle side pool (webhook deliveries, tasks
// back from a wait) looks for work.
const sidePoolPoll = 50 * time.Millisecond

// Start begins processing in the background: each task type goes to the
// handler that runs tasks, webhook deliveries, in their own pool, to the
// one that posts them.
func (w *Worker) Start() error {
	mux := asynq.NewServeMux()
	for _, typ := range w.types {
		mux.HandleFunc(string(typ), w.handle)
	}
	if w.batches != nil {
		mux.HandleFunc(queue.TypeBatchStep, func(ctx context.Context, t *asynq.Task) error { return w.batches.Step(ctx, t.Payload()) })
	}
	hooks := asynq.NewServeMux()
	hooks.HandleFunc(queue.TypeWebhook, w.deliver)
	if err := w.hookSrv.Start(hooks); err != nil {
		return fmt.Errorf("worker: start the webhook pool: %w", err)
	}
	if err := w.waitSrv.Start(mux); err != nil {
		w.hookSrv.Shutdown()
		return fmt.Errorf("worker: start the waiting pool: %w", err)
	}
	if err := w.srv.Start(mux); err != nil {
		w.hookSrv.Shutdown()
		w.waitSrv.Shutdown()
		return fmt.Errorf("worker: start: %w", err)
	}
	return nil
}

// Stop stops taking tasks, waits up to the shutdown timeout for running ones,
// and puts back on the queue any that are still running; deliveries and
// tasks back from a wait alike.
func (w *Worker) Stop() {
	var wg sync.WaitGroup
	wg.Go(w.hookSrv.Shutdown)
	wg.Go(w.waitSrv.Shutdown)
	w.srv.Shutdown()
	wg.Wait()
}

// retryError carries the time the handler chose for the next attempt, so
// asynq waits exactly what the record announces.
type retryError struct {
	err error
	at  time.Time
}

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

func (w *Worker) retryDelay(retried int, err error, t *asynq.Task) time.Duration {
	now := w.now()
	switch t.Type() {
	case queue.TypeWebhook:
		return webhook.RetryDelay(w.hookDue, retried)
	case queue.TypeBatchStep:
		return min(time.Duration(retried+1)*time.Second, 30*time.Second)
	}
	var re *retryError
	if errors.As(err, &re) {
		return re.at.Sub(now)
	}
	return nextAttempt(now, w.backoff.Delay(t.Headers()[queue.HeaderTaskID], retried, 0)).Sub(now)
}

// nextAttempt rounds now+delay up to a whole second: asynq keeps retry times
// in whole seconds and would otherwise run the task up to a second early,
// before a provider's Retry-After has passed.
func nextAttempt(now time.Time, delay time.Duration) time.Time {
	at := now.Add(delay)
	if t := at.Truncate(time.Second); !t.Equal(at) {
		return t.Add(time.Second)
	}
	return at
}

// recordTimeout bounds each record write, which must happen even after the
// attempt's own context has expired.
const recordTimeout = 5 * time.Second

// record runs one record write with a deadline of its own, counted from now:
// neither the attempt's context (it may have expired) nor one made when the
// attempt began (a long task would outlive it) will do.
func record(ctx context.Context, write func(context.Context) error) error {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	return write(wctx)
}

// deliver posts one webhook delivery. One given up (refused, or out of
// retries) is logged and dropped: asynq's archive would keep it 90 days.
func (w *Worker) deliver(ctx context.Context, t *asynq.Task) error {
	if w.hooks == nil {
		w.log.Warn("webhook delivery dropped: WEBHOOK_SECRET is not set on this worker")
		return nil
	}
	err := w.hooks.Deliver(ctx, t.Payload())
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	if err != nil && (errors.Is(err, asynq.SkipRetry) || retried >= maxRetry) {
		w.log.Warn("webhook delivery given up", "err", err, "attempts", retried+1)
		return nil
	}
	return err
}

// isWait reports whether err is a wait for budget, not a failure.
func isWait(err error) bool {
	var wait *provider.WaitError
	return errors.As(err, &wait)
}

// maxRetryOf is the task's own retries: its header's, since asynq's count
// has one more for waits (see queue.Client.Enqueue).
func maxRetryOf(ctx context.Context, t *asynq.Task) int {
	if n, err := strconv.Atoi(t.Headers()[queue.HeaderMaxRetry]); err == nil {
		return n
	}
	n, _ := asynq.GetMaxRetry(ctx) // queued before the header existed
	return n
}

func (w *Worker) handle(ctx context.Context, t *asynq.Task) error {
	id, _ := asynq.GetTaskID(ctx)
	retried, _ := asynq.GetRetryCount(ctx)
	if before, err := strconv.Atoi(t.Headers()[queue.HeaderRetried]); err == nil {
		retried += before // moved to the waiting queue, where asynq counts afresh
	}
	maxRetry := maxRetryOf(ctx, t)
	typ := task.Type(t.Type())
	log := newTaskLogger(w.log, "task_id", id, "type", typ, "attempt", retried+1)

	// The attempt's span continues the trace of the request that queued it;
	// the provider's HTTP calls are its children.
	ctx, span := w.tracer.Start(tracing.Extract(ctx, t.Headers()), "task "+string(typ), trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("siganteng.task_id", id), attribute.String("siganteng.task_type", string(typ)),
			attribute.Int("siganteng.attempt", retried+1)))
	defer span.End()

	// Listen before starting, so a revocation that comes after the start
	// cannot be missed; one that came before makes Started say ErrFinished.
	actx, stopAttempt := context.WithCancelCause(ctx)
	defer stopAttempt(nil)
	ended, stopListening := w.endings.Listen(id)
	defer stopListening()
	go func() {
		select {
		case <-ended:
			stopAttempt(errRevoked)
		case <-actx.Done():
		}
	}()

	if retried > maxRetry {
		// Only an attempt that never reported back gets here: asynq's
		// headroom of one (queue.Client.Enqueue) ran it again after its
		// worker died on the last attempt allowed.
		return w.lost(ctx, attempt{id: id, typ: typ, log: log}, retried)
	}
	if retried == 0 {
		// asynq keeps a scheduled task's time in whole seconds and may hand
		// it over up to a second early: wait the rest here, so it starts
		// at its scheduled_at, not before.
		if ms, err := strconv.ParseInt(t.Headers()[queue.HeaderScheduledAt], 10, 64); err == nil {
			if early := time.UnixMilli(ms).Sub(w.now()); early > 0 && early <= 2*time.Second {
				select {
				case <-actx.Done():
				case <-time.After(early):
				}
			}
		}
	}
	started := func(c context.Context) error { return w.records.Started(c, id, retried+1, w.now()) }
	switch err := record(ctx, started); {
	case errors.Is(err, store.ErrFinished):
		log.Info("task already finished; not running it again")
		w.discardInput(ctx, id, typ, log) // a success removed it already; a revocation did not
		return nil
	case errors.Is(err, store.ErrDeadlinePassed):
		log.Info("task not started before its cancel_after; revoked")
		w.discardInput(ctx, id, typ, log)
		return nil
	case task.CodeOf(err) == task.ENOTFOUND:
		// The submit that queued it answered 503 and removed the record (the
		// enqueue reached Redis, but its answer did not reach the API). The
		// client was told nothing was queued, so nothing runs.
		log.Warn("task has no record; its submit was rolled back, so it is not run")
		return nil
	case err != nil:
		log.Error("could not record the start; asynq will retry", "err", err)
		return err
	}

	start := w.now()
	if retried == 0 {
		if ms, err := strconv.ParseInt(t.Headers()[queue.HeaderEnqueuedAt], 10, 64); err == nil {
			w.metrics.Started(string(typ), start.Sub(time.UnixMilli(ms)))
		}
	}
	progress := newAttemptProgress(w.records, id, retried+1, log)
	// A wait for budget comes back at once: the task waits in the queue.
	// The budget of a saturated provider is shared between API keys, and
	// a key's high-priority work has a share of its own, so it goes first.
	key := t.Headers()[queue.HeaderOwner]
	if q, _ := asynq.GetQueueName(ctx); q == queue.QueueHigh {
		key += "#high"
	}
	weight, _ := strconv.Atoi(t.Headers()[queue.HeaderWeight])
	flowCtx := provider.WithFlowWeight(provider.WithFlowKey(provider.WithDeferredWaits(actx, id), key), weight)
	out, err := w.exec.Execute(flowCtx, id, typ, t.Payload(), progress)
	calls := make([]task.Call, len(out.Calls))
	for i, c := range out.Calls {
		c.Attempt = retried + 1
		calls[i] = c
	}
	progress.Close()
	stopListening() // from here on, the ending is this worker's own
	w.attempted(typ, out.Provider, err, w.now().Sub(start))
	span.SetAttributes(attribute.String("siganteng.provider", out.Provider))
	if err != nil {
		span.SetStatus(codes.Error, provider.Redact(err.Error()))
	}
	if errors.Is(context.Cause(actx), errRevoked) {
		log.Info("task revoked while running; its provider call was cancelled")
		w.metrics.Ended(string(typ), out.Provider, string(task.StatusRevoked))
		w.discardInput(ctx, id, typ, log)
		return fmt.Errorf("%w: %w", errRevoked, asynq.RevokeTask) // done: no retry, no archive
	}
	if err == nil {
		return w.succeeded(ctx, attempt{id: id, typ: typ, calls: calls, log: log}, out, start)
	}
	var wait *provider.WaitError
	if errors.As(err, &wait) {
		var move func(at time.Time) error
		if q, _ := asynq.GetQueueName(ctx); w.waits != nil && queue.Deferrable(q) {
			move = func(at time.Time) error { return w.waits.Defer(ctx, t, id, retried, at) }
		}
		return w.waiting(ctx, attempt{id: id, typ: typ, calls: calls, log: log}, wait, move)
	}
	if errors.Is(err, context.Canceled) && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		// Shutdown: asynq puts the task back on its queue.
		log.Warn("attempt interrupted; the task goes back on the queue", "err", err)
		return err
	}
	return w.failed(ctx, attempt{id: id, typ: typ, calls: calls, log: log}, out, err, retried < maxRetry)
}

// attempt is one run of a task, as its outcome is reported.
type attempt struct {
	id    string
	typ   task.Type
	calls []task.Call
	log   *taskLogger
}

// succeeded records a result; a record that cannot be written makes asynq
// run the task again.
func (w *Worker) succeeded(ctx context.Context, a attempt, out service.Outcome, start time.Time) error {
	success := store.Success{Provider: out.Provider, Deployment: out.Deployment, Result: out.Result, ResultKey: out.ResultKey, Usage: out.Usage, Calls: a.calls}
	write := func(c context.Context) error { return w.records.Succeeded(c, a.id, success, w.now()) }
	if err := record(ctx, write); err != nil && !errors.Is(err, store.ErrFinished) {
		a.log.Error("could not record the result; the task will run again", "err", err)
		return err
	}
	a.log.Info("task succeeded", "provider", out.Provider, "duration", w.now().Sub(start))
	w.metrics.Ended(string(a.typ), out.Provider, string(task.StatusSuccess))
	if out.Discard {
		w.discardInput(ctx, a.id, a.typ, a.log) // the result is safe: nothing reads them again
	}
	return nil
}

// failed records a failed attempt: a retry at the time the backoff (or the
// provider's Retry-After) says, when the failure is transient and retries
// are left, else the task's end.
func (w *Worker) failed(ctx context.Context, a attempt, out service.Outcome, err error, retriesLeft bool) error {
	v := service.Classify(err, out.Provider)
	log := a.log.With("provider", v.Failure.Provider, "failure", v.Failure.Code)
	if v.Transient && retriesLeft {
		retried, _ := asynq.GetRetryCount(ctx)
		at := nextAttempt(w.now(), w.backoff.Delay(a.id, retried, v.RetryAfter))
		retrying := func(c context.Context) error { return w.records.Retrying(c, a.id, v.Failure, at, a.calls...) }
		if rerr := record(ctx, retrying); rerr != nil && !errors.Is(rerr, store.ErrFinished) {
			log.Error("could not record the retry", "err", rerr)
		}
		log.Warn("attempt failed; retrying", "err", err, "next_attempt_at", at)
		return &retryError{err: err, at: at}
	}
	write := func(c context.Context) error { return w.records.Failed(c, a.id, v.Failure, w.now(), a.calls...) }
	if ferr := record(ctx, write); ferr != nil && !errors.Is(ferr, store.ErrFinished) {
		log.Error("could not record the failure; asynq will retry", "err", ferr)
		return ferr
	}
	log.Warn("task failed", "err", err, "transient", v.Transient)
	w.metrics.Ended(string(a.typ), v.Failure.Provider, string(task.StatusFailure))
	w.discardInput(ctx, a.id, a.typ, log)
	// Done, as far as the queue goes: the record says FAILURE and why, so
	// asynq keeps nothing (its archive would hold the whole payload, a
	// prompt or an image, for 90 days).
	return nil
}

// lost ends a task whose last allowed attempt was cut short (its worker
// was killed), as the reconciler does when asynq archives one.
func (w *Worker) lost(ctx context.Context, a attempt, attempts int) error {
	failure := task.Failure{Code: task.FailureLost,
		Message: fmt.Sprintf("the worker running it stopped and no retries are left (after %d)", attempts)}
	write := func(c context.Context) error { return w.records.Failed(c, a.id, failure, w.now()) }
	if err := record(ctx, write); err != nil && !errors.Is(err, store.ErrFinished) && task.CodeOf(err) != task.ENOTFOUND {
		a.log.Error("could not record the failure; asynq will retry", "err", err)
		return err
	}
	a.log.Warn("task failed: its last attempt was cut short")
	w.metrics.Ended(string(a.typ), "", string(task.StatusFailure))
	w.discardInput(ctx, a.id, a.typ, a.log)
	return nil
}

// waiting puts a task that waits for budget back on the queue, due when its
// slot comes (a moment early: the worker sleeps the rest, so slots are
// kept to the millisecond though asynq counts in seconds), or ends it once
// it has waited MaxWait in all. With move, it goes to the waiting queue,
// and this attempt's message is let go.
func (w *Worker) waiting(ctx context.Context, a attempt, wait *provider.WaitError, move func(at time.Time) error) error {
	now := w.now()
	waiting := task.Waiting{Reason: wait.Reason, Deployment: wait.Deployment, Until: wait.Until.UTC()}
	err := record(ctx, func(c context.Context) error { return w.records.Waiting(c, a.id, waiting, w.maxWait, now) })
	switch {
	case errors.Is(err, store.ErrWaitedTooLong):
		failure := task.Failure{Code: task.FailureFlowLimited, Provider: wait.Deployment,
			Message: fmt.Sprintf("waited FLOW_MAX_WAIT (%s) for deployment %s's %s budget and got none", w.maxWait, wait.Deployment, wait.Reason)}
		write := func(c context.Context) error { return w.records.Failed(c, a.id, failure, w.now(), a.calls...) }
		if ferr := record(ctx, write); ferr != nil && !errors.Is(ferr, store.ErrFinished) {
			a.log.Error("could not record the failure; asynq will retry", "err", ferr)
			return ferr
		}
		a.log.Warn("task failed: it waited too long for budget", "deployment", wait.Deployment, "reason", wait.Reason)
		w.metrics.Ended(string(a.typ), wait.Deployment, string(task.StatusFailure))
		w.discardInput(ctx, a.id, a.typ, a.log)
		return nil
	case errors.Is(err, store.ErrFinished):
		return nil // revoked while it ran
	case err != nil:
		a.log.Error("could not record the wait", "err", err)
	}
	at := wait.Until
	if wait.Reserved {
		at = at.Add(-time.Second)
	}
	a.log.Debug("waiting for budget", "deployment", wait.Deployment, "reason", wait.Reason, "until", wait.Until)
	if move != nil {
		err := move(at)
		if err == nil {
			return nil
		}
		a.log.Warn("could not move the task to the waiting queue; it waits in its own", "err", err)
	}
	return &retryError{err: wait, at: at}
}

// discardInput deletes the upload of a task that ended without success:
// nothing will read it again.
func (w *Worker) discardInput(ctx context.Context, id string, typ task.Type, log *taskLogger) {
	if w.inputs == nil {
		return
	}
	if err := record(ctx, func(c context.Context) error { return w.inputs.DiscardInput(c, id, typ) }); err != nil {
		log.Warn("could not delete the task's upload; the artifact sweep will", "err", err)
	}
}

// attempted records an attempt's provider call in the metrics.
func (w *Worker) attempted(typ task.Type, providerName string, err error, d time.Duration) {
	if w.metrics == nil || isWait(err) { // a wait made no call; flow control's metrics count it
		return
	}
	outcome, status := "success", 0
	if err != nil {
		v := service.Classify(err, providerName)
		outcome = string(v.Failure.Code)
		var perr *provider.Error
		if errors.As(err, &perr) {
			status = perr.StatusCode
		}
	}
	if providerName == "" {
		providerName = "none"
	}
	w.metrics.Attempt(providerName, string(typ), outcome, status, d)
}

// asynqLogger sends asynq's own log lines to slog.
type asynqLogger struct{ log *slog.Logger }

func (l asynqLogger) Debug(args ...any) { l.log.Debug(fmt.Sprint(args...)) }
func (l asynqLogger) Info(args ...any)  { l.log.Info(fmt.Sprint(args...)) }
func (l asynqLogger) Warn(args ...any)  { l.log.Warn(fmt.Sprint(args...)) }
func (l asynqLogger) Error(args ...any) { l.log.Error(fmt.Sprint(args...)) }
func (l asynqLogger) Fatal(args ...any) { l.log.Error(fmt.Sprint(args...)) }

var _ Records = (*store.Store)(nil)
