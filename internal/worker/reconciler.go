package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/siganteng/siganteng/internal/queue"
	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
)

// UnfinishedRecords is what the reconciler needs of the record store.
type UnfinishedRecords interface {
	Unfinished(ctx context.Context, before time.Time, after int64, limit int64) ([]string, int64, error)
	Get(ctx context.Context, id string) (*task.Record, error)
	Failed(ctx context.Context, id string, failure task.Failure, at time.Time, calls ...task.Call) error
	Revoked(ctx context.Context, id, reason string, at time.Time) error
	Forget(ctx context.Context, id string) error
	Indexes(ctx context.Context) ([]string, error)
	PruneIndex(ctx context.Context, index string, now time.Time, after int64, limit int64) (int64, int, error)
}

// Reconciler ends the records of tasks the queue has given up on without
// telling the worker: asynq archives a task whose worker died (its lease
// expired) once its retries are used up, and no handler runs then. Without
// this, such a record would say STARTED forever.
type Reconciler struct {
	records   UnfinishedRecords
	inspector *asynq.Inspector
	// Grace is how old an unfinished task must be before it is looked at,
	// longer than a submit takes between writing the record and enqueuing.
	Grace time.Duration
	// Interval is the time between rounds.
	Interval time.Duration
	// Inputs deletes the uploads of the tasks it ends; nil for none.
	Inputs Inputs
	// Requeue queues again a task SIGANTENG submitted itself (a pipeline's
	// step, a retry) that its submitter recorded but did not queue before
	// it died; nil ends such a task lost.
	Requeue Requeuer
	log     *slog.Logger
	now     func() time.Time
	cursor  int64
	pruned  map[string]int64 // where pruning each list index resumes
}

// Requeuer queues a recorded task again from its record (service.Service).
type Requeuer interface {
	Requeue(ctx context.Context, rec *task.Record) error
}

// pageSize and pagesPerRound bound the work of one round; a backlog of older
// unfinished tasks is worked through over several rounds.
const (
	pageSize      = 200
	pagesPerRound = 10
)

// NewReconciler returns a reconciler on rdb.
func NewReconciler(rdb redis.UniversalClient, records UnfinishedRecords, log *slog.Logger) *Reconciler {
	return &Reconciler{records: records, inspector: asynq.NewInspectorFromRedisClient(rdb),
		Grace: time.Minute, Interval: 30 * time.Second, log: log, now: time.Now}
}

// Run reconciles every Interval until ctx ends.
func (r *Reconciler) Run(ctx context.Context) {
	every(ctx, r.Interval, func() {
		if n, err := r.Round(ctx); err != nil {
			r.log.Warn("reconciling unfinished tasks failed", "err", err)
		} else if n > 0 {
			r.log.Warn("ended tasks the queue had given up on", "count", n)
		}
	})
}

// Round looks at a bounded number of unfinished tasks older than Grace and
// returns how many it ended; it also drops the list index's entries of
// expired records, a bounded number at a time.
func (r *Reconciler) Round(ctx context.Context) (ended int, err error) {
	if err := r.prune(ctx); err != nil {
		return 0, err
	}
	before := r.now().Add(-r.Grace)
	for range pagesPerRound {
		ids, next, err := r.records.Unfinished(ctx, before, r.cursor, pageSize)
		if err != nil {
			return ended, err
		}
		r.cursor = next
		for _, id := range ids {
			done, err := r.check(ctx, id)
			if err != nil {
				return ended, err
			}
			if done {
				ended++
			}
		}
		if len(ids) < pageSize {
			r.cursor = 0 // the end: start again from the oldest next time
			break
		}
	}
	return ended, nil
}

// prune drops entries of expired records from every list index, a bounded
// number per index and round.
func (r *Reconciler) prune(ctx context.Context) error {
	indexes, err := r.records.Indexes(ctx)
	if err != nil {
		return err
	}
	if r.pruned == nil {
		r.pruned = map[string]int64{}
	}
	for _, index := range indexes {
		next, _, err := r.records.PruneIndex(ctx, index, r.now(), r.pruned[index], pageSize)
		if err != nil {
			return err
		}
		r.pruned[index] = next
	}
	return nil
}

// check ends one task if the queue no longer holds it or has archived it.
func (r *Reconciler) check(ctx context.Context, id string) (bool, error) {
	rec, err := r.records.Get(ctx, id)
	if task.CodeOf(err) == task.ENOTFOUND {
		return false, r.records.Forget(ctx, id)
	}
	if err != nil {
		return false, err
	}
	if rec.Status.Terminal() {
		return false, r.records.Forget(ctx, id)
	}
	if rec.Status == task.StatusPending && rec.CancelAt != nil && r.now().After(*rec.CancelAt) {
		// Waiting behind a backlog past its deadline: end it now rather than
		// when a worker reaches it.
		err := r.records.Revoked(ctx, id, "not started before its cancel_after", r.now())
		if errors.Is(err, store.ErrFinished) {
			return false, nil
		}
		if err == nil {
			r.discardInput(ctx, id, rec.Type)
		}
		return err == nil, err
	}
	info, err := r.inspector.GetTaskInfo(queue.Name(rec.Type, rec.Priority), id)
	if notQueued(err) {
		info, err = r.inspector.GetTaskInfo(queue.QueueWaiting, id) // moved there to wait for budget
	}
	var reason string
	switch {
	case notQueued(err) && rec.Admission == task.AdmissionWaiting && rec.Status == task.StatusPending:
		return false, nil // in its key's line (store.Admission), never queued yet
	case notQueued(err) && r.requeueable(rec):
		// Recorded by a pipeline's advance or a retry that died before
		// queuing it: no client was told it failed, so it runs.
		if err := r.Requeue.Requeue(ctx, rec); err != nil {
			return false, fmt.Errorf("reconcile %s: queue it again: %w", id, err)
		}
		r.log.Warn("queued again a task recorded but never queued", "task_id", id, "pipeline_id", rec.PipelineID, "retry_of", rec.RetryOf)
		return false, nil
	case notQueued(err):
		reason = "the task was lost by the queue (was Redis restarted without persistence?)"
	case err != nil:
		return false, fmt.Errorf("reconcile %s: %w", id, err)
	case info.State == asynq.TaskStateArchived:
		reason = fmt.Sprintf("the worker running it stopped and no retries are left (after %d); last error: %s", rec.Attempts, info.LastErr)
	default:
		return false, nil // pending, active, scheduled or retrying: in hand
	}
	failure := task.Failure{Code: task.FailureLost, Message: reason, Provider: rec.Provider}
	switch err := r.records.Failed(ctx, id, failure, r.now()); {
	case errors.Is(err, store.ErrFinished):
		return false, nil // it ended meanwhile, on its own
	case err != nil && task.CodeOf(err) != task.ENOTFOUND:
		return false, err
	}
	r.log.Warn("task ended by the reconciler", "task_id", id, "type", rec.Type, "reason", reason)
	if info != nil {
		// The record says it all now; the archived copy holds the payload.
		if err := r.inspector.DeleteTask(info.Queue, id); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
			r.log.Warn("could not delete the archived task", "task_id", id, "err", err)
		}
	}
	r.discardInput(ctx, id, rec.Type)
	return true, nil
}

// notQueued reports whether asynq's answer err says it does not hold the
// task in the queue asked.
func notQueued(err error) bool {
	return errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound)
}

// requeueable reports whether rec, unknown to the queue, is a task
// SIGANTENG queues itself (a pipeline's step, a retry, one let out of its
// key's line) and never started, whose input it kept.
func (r *Reconciler) requeueable(rec *task.Record) bool {
	return r.Requeue != nil && rec.Status == task.StatusPending && rec.Attempts == 0 && len(rec.Payload) > 0 &&
		(rec.PipelineID != "" || rec.RetryOf != "" || rec.Admission == task.AdmissionAdmitted)
}

// discardInput deletes the upload of a task the reconciler ended.
func (r *Reconciler) discardInput(ctx context.Context, id string, typ task.Type) {
	if r.Inputs == nil {
		return
	}
	if err := r.Inputs.DiscardInput(ctx, id, typ); err != nil {
		r.log.Warn("could not delete the task's upload; the artifact sweep will", "task_id", id, "err", err)
	}
}
