// Package queue puts tasks on asynq queues. Each task type has a queue named
// after it; the asynq task id is the SIGANTENG task id, so a task is enqueued
// at most once and can be found by the id clients hold.
package queue

import (
	"context"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/siganteng/siganteng/internal/task"
)

// Name returns the asynq queue that holds tasks of typ.
func Name(typ task.Type) string { return string(typ) }

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
// more the first time a process uses a queue, to register its name).
func (c *Client) Enqueue(ctx context.Context, typ task.Type, id string, payload []byte) error {
	// The id also travels in a header so that retry delays, computed by asynq
	// without the task id, can be jittered per task yet agree between the
	// worker and asynq.
	_, err := c.ac.EnqueueContext(ctx, asynq.NewTaskWithHeaders(string(typ), payload, map[string]string{HeaderTaskID: id}),
		asynq.TaskID(id),
		asynq.Queue(Name(typ)),
		asynq.MaxRetry(c.opts.MaxRetry),
		asynq.Timeout(c.opts.Timeout),
	)
	if err != nil {
		return fmt.Errorf("queue: enqueue %s %s: %w", typ, id, err)
	}
	return nil
}

// Close releases the client; the Redis connection it was given stays open.
func (c *Client) Close() error { return c.ac.Close() }

// HeaderTaskID is the asynq task header that carries the task id.
const HeaderTaskID = "task_id"
