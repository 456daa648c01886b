// Package queue puts tasks on asynq queues. Each task type has a queue named
// after it; the asynq task id is the SIGANTENG task id, so a task is enqueued
// at most once and can be found by the id clients hold.
package queue

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/siganteng/siganteng/internal/task"
	"github.com/siganteng/siganteng/internal/tracing"
)

// Name returns the asynq queue that holds tasks of typ at priority: each
// type has its own queue for normal work, so that a burst of one kind does
// not starve the others, and high and low work of every type share one
// queue each. A queue per type and priority would be finer, but every queue
// costs each idle worker one Redis call per poll.
func Name(typ task.Type, priority task.Priority) string {
	switch priority {
	case task.PriorityHigh:
		return QueueHigh
	case task.PriorityLow:
		return QueueLow
	}
	return string(typ)
}

// The queues shared across types.
const (
	QueueHigh     = "high"
	QueueLow      = "low"
	QueueWebhooks = "webhooks" // webhook deliveries
	// QueueWaiting holds normal-priority tasks waiting for a provider's
	// budget (see Client.Defer), served by a pool of its own, so that their
	// returns, which asynq brings back in whole-second batches, are not
	// dequeued in front of their type's new tasks for other deployments.
	QueueWaiting = "waiting"
)

// Names lists every queue for types, high, waiting and low included, and
// the webhook queue.
func Names(types []task.Type) []string {
	names := []string{QueueHigh}
	for _, t := range types {
		names = append(names, string(t))
	}
	return append(names, QueueWaiting, QueueWebhooks, QueueLow)
}

// DefaultWeights gives high work about four picks in five when every queue
// has work, splits normal work evenly between types, and leaves low work
// what the rest do not take. The webhooks and waiting queues are not among
// them: a pool of its own serves each.
func DefaultWeights(types []task.Type) map[string]int {
	w := map[string]int{QueueHigh: 50, QueueLow: 1}
	for _, t := range types {
		w[string(t)] = 2
	}
	return w
}

// Options apply to every task enqueued.
type Options struct {
	MaxRetry int           // retries after the first attempt
	Timeout  time.Duration // per attempt
}

// Client enqueues tasks.
type Client struct {
	ac   *asynq.Client
	opts Options
}

// New returns a client on rdb. Closing it leaves rdb open.
func New(rdb redis.UniversalClient, opts Options) *Client {
	return &Client{ac: asynq.NewClientFromRedisClient(rdb), opts: opts}
}

// Enqueue puts one task on its type's queue in one round trip (asynq adds one
// more the first time a process uses a queue, to register its name). owner
// is the id of the API key it belongs to ("" for none), which flow control
// shares a saturated provider's budget by, in proportion to its weight.
//
// A task given a time at runs then: asynq holds it in its scheduled set
// (in Redis, so it survives restarts) and moves it onto its queue once due.
func (c *Client) Enqueue(ctx context.Context, typ task.Type, priority task.Priority, id, owner string, weight int, at time.Time, payload []byte) error {
	return c.enqueue(ctx, typ, priority, id, owner, weight, at, time.Now(), payload)
}

// EnqueueAdmitted puts a task let out of its key's line (see
// store.Admission) on its queue, as Enqueue does; its time in the queue
// counts from since, its submit, so that the queue-wait figures include
// its time in line.
func (c *Client) EnqueueAdmitted(ctx context.Context, typ task.Type, priority task.Priority, id, owner string, weight int, since time.Time, payload []byte) error {
	return c.enqueue(ctx, typ, priority, id, owner, weight, time.Time{}, since, payload)
}

func (c *Client) enqueue(ctx context.Context, typ task.Type, priority task.Priority, id, owner string, weight int, at, due time.Time, payload []byte) error {
	var when []asynq.Option
	if at.After(time.Now()) {
		// to the next millisecond, as the header counts: never before at
		due, when = at.Truncate(time.Millisecond).Add(time.Millisecond), []asynq.Option{asynq.ProcessAt(at)}
	}
	// The id also travels in a header so that retry delays, computed by asynq
	// without the task id, can be jittered per task yet agree between the
	// worker and asynq.
	headers := map[string]string{HeaderTaskID: id, HeaderEnqueuedAt: strconv.FormatInt(due.UnixMilli(), 10),
		HeaderMaxRetry: strconv.Itoa(c.opts.MaxRetry), HeaderOwner: owner}
	if weight > 1 {
		headers[HeaderWeight] = strconv.Itoa(weight)
	}
	if when != nil {
		headers[HeaderScheduledAt] = headers[HeaderEnqueuedAt]
	}
	tracing.Inject(ctx, headers) // the worker's span continues the request's trace
	opts := append([]asynq.Option{
		asynq.TaskID(id),
		asynq.Queue(Name(typ, priority)),
		// One more than the task's own retries, which the header carries:
		// asynq archives a task that returns an error with its retries
		// spent, and a wait for budget on the last attempt is such an
		// error that must not end the task (waits use up no retry).
		asynq.MaxRetry(c.opts.MaxRetry + 1),
		asynq.Timeout(c.opts.Timeout),
	}, when...)
	_, err := c.ac.EnqueueContext(ctx, asynq.NewTaskWithHeaders(string(typ), payload, headers), opts...)
	// An id queued already is this task, queued again by a pipeline's
	// step or a retry that is itself being retried: once is enough.
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("queue: enqueue %s %s: %w", typ, id, err)
	}
	return nil
}

// Defer moves a normal-priority task that must wait for a provider's
// budget to the waiting queue, due at at: t queued again under its id,
// with its attempts so far (retried) in a header, since asynq counts a
// task's retries afresh in a new queue. A copy there already is this one
// (an earlier move whose worker died before the original was let go).
func (c *Client) Defer(ctx context.Context, t *asynq.Task, id string, retried int, at time.Time) error {
	headers := maps.Clone(t.Headers())
	headers[HeaderRetried] = strconv.Itoa(retried)
	maxRetry := c.opts.MaxRetry
	if n, err := strconv.Atoi(headers[HeaderMaxRetry]); err == nil {
		maxRetry = n
	}
	_, err := c.ac.EnqueueContext(ctx, asynq.NewTaskWithHeaders(t.Type(), t.Payload(), headers),
		asynq.TaskID(id), asynq.Queue(QueueWaiting), asynq.ProcessAt(at),
		asynq.MaxRetry(maxRetry+1), asynq.Timeout(c.opts.Timeout)) // as Enqueue
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("queue: defer %s %s: %w", t.Type(), id, err)
	}
	return nil
}

// Deferrable reports whether a task running from queue name waits in the
// waiting queue: normal-priority tasks do; high ones keep their queue's
// weight, low ones are behind everything anyway, and one in the waiting
// queue already comes back to it as asynq retries it.
func Deferrable(name string) bool {
	return name != QueueHigh && name != QueueLow && name != QueueWaiting && name != QueueWebhooks
}

// TypeWebhook is the asynq task type of a webhook delivery, which the
// worker routes to the deliverer.
const TypeWebhook = "webhook"

// TypeBatchStep is the asynq task type of a batch's runner step.
const TypeBatchStep = "batch"

// batchStepTimeout bounds one step (the runner stops by itself well
// before), and batchStepRetries are how often a step that fails runs again.
const (
	batchStepTimeout = 10 * time.Minute
	batchStepRetries = 1000
)

// EnqueueBatchStep queues step number step of batch batchID, after delay,
// on the low queue, under an id of its own: a step queued twice runs once.
func (c *Client) EnqueueBatchStep(ctx context.Context, batchID string, step int, delay time.Duration) error {
	payload := fmt.Appendf(nil, `{"batch_id":%q,"step":%d}`, batchID, step)
	_, err := c.ac.EnqueueContext(ctx, asynq.NewTask(TypeBatchStep, payload),
		asynq.TaskID(fmt.Sprintf("%s-step-%d", batchID, step)), asynq.Queue(QueueLow), asynq.ProcessIn(delay),
		asynq.MaxRetry(batchStepRetries), asynq.Timeout(batchStepTimeout))
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("queue: enqueue step %d of %s: %w", step, batchID, err)
	}
	return nil
}

// EnqueueWebhook puts a webhook delivery on the webhooks queue under its
// own id; one already queued under that id is left as it is.
func (c *Client) EnqueueWebhook(ctx context.Context, id string, payload []byte, maxRetry int, timeout time.Duration) error {
	_, err := c.ac.EnqueueContext(ctx, asynq.NewTask(TypeWebhook, payload),
		asynq.TaskID(id), asynq.Queue(QueueWebhooks), asynq.MaxRetry(maxRetry), asynq.Timeout(timeout))
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("queue: enqueue webhook %s: %w", id, err)
	}
	return nil
}

// Close releases the client; the Redis connection it was given stays open.
func (c *Client) Close() error { return c.ac.Close() }

// The asynq task headers: the task id, when it was enqueued (Unix
// milliseconds), from which workers measure the time it waited, and its
// retries.
const (
	HeaderTaskID     = "task_id"
	HeaderEnqueuedAt = "enqueued_at"
	HeaderMaxRetry   = "max_retry" // the task's retries after its first attempt
	HeaderOwner      = "owner"     // the API key's id; "" for none
	HeaderWeight     = "weight"    // the key's share weight; absent for 1
	HeaderRetried    = "retried"   // attempts before a move to the waiting queue; absent for none
	// HeaderScheduledAt is a scheduled task's start, in Unix ms (rounded
	// up); absent for a task that runs at once.
	HeaderScheduledAt = "scheduled_at"
)
