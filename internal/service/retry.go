package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
)

// Retries names the task that runs another again (see store.Store).
type Retries interface {
	// ClaimRetry names newID as id's retry unless one is named, and returns
	// the one named; store.ErrNotRetriable, task.ENOTFOUND.
	ClaimRetry(ctx context.Context, id, newID string) (string, error)
	ReleaseRetry(ctx context.Context, id, newID string) error
}

// Retry runs a task that ended FAILURE or REVOKED again, as a new task:
// the same work, model, priority, labels and webhook, linked both ways
// (retry_of on the new record, retried_by on the old). A new task rather
// than a new attempt of the old one, because a finished record is never
// changed back: its error, calls, usage and events stay the story of what
// happened, its webhook's completed event is not sent twice, and a client
// holding its id sees it ended. Retrying a task twice gives the same new
// task (replayed true): concurrent retries make one new run.
func (s *Service) Retry(ctx context.Context, id string) (rec *task.Record, replayed bool, err error) {
	old, err := s.GetLinked(ctx, id)
	if err != nil {
		return nil, false, err
	}
	if old.Status != task.StatusFailure && old.Status != task.StatusRevoked {
		return nil, false, &task.Error{Code: task.ECONFLICT, Message: fmt.Sprintf("only a FAILURE or REVOKED task is retried; this one is %s", old.Status)}
	}
	if err := retriable(old); err != nil {
		return nil, false, err
	}
	if s.deps.Retries == nil {
		return nil, false, task.Unavailable("retries are not served here", nil)
	}
	newID := uuid.NewString()
	named, err := s.deps.Retries.ClaimRetry(ctx, id, newID)
	switch {
	case errors.Is(err, store.ErrNotRetriable):
		return nil, false, &task.Error{Code: task.ECONFLICT, Message: "only a FAILURE or REVOKED task is retried"}
	case err != nil:
		if task.CodeOf(err) == task.ENOTFOUND {
			return nil, false, err
		}
		return nil, false, task.Unavailable("the task store is unavailable", err)
	}
	if named != newID {
		// Another retry named its task first: answer with it, creating it
		// should that retry have stopped before it did.
		if rec, err := s.Get(ctx, named); err == nil {
			return rec, true, nil
		}
	}
	rec, err = s.resubmit(withPreset(ctx, preset{id: named, retryOf: id, webhookURL: old.WebhookURL, webhook: old.Webhook}), old)
	if err != nil && named == newID {
		if rerr := s.deps.Retries.ReleaseRetry(context.WithoutCancel(ctx), id, newID); rerr != nil {
			s.deps.Log.Warn("a retry that was not submitted still names its task", "task_id", id, "err", rerr)
		}
	}
	return rec, named != newID, err
}

// retriable says why old cannot be run again, if it cannot: its input is
// gone (an upload, deleted when it ended; or too large to keep).
func retriable(old *task.Record) error {
	switch {
	case old.Type == task.TypeSpeechToText:
		return &task.Error{Code: task.ECONFLICT, Message: "a transcription's audio is deleted when the task ends; submit it again"}
	case len(old.Payload) == 0:
		return &task.Error{Code: task.ECONFLICT, Message: "this task's input was not kept (larger than LARGE_RESULT_BYTES, or submitted before retries were served); submit it again"}
	case strings.Contains(string(old.Payload), `"stored_images":`) || strings.Contains(string(old.Payload), `"image_stored":true`):
		return &task.Error{Code: task.ECONFLICT, Message: "this task's image was an upload, deleted when the task ended; submit it again"}
	}
	return nil
}

// resubmit submits old's input again, under the preset in ctx: a time it
// was to run at, and a deadline that has passed, are dropped; times given
// from now count from the retry.
func (s *Service) resubmit(ctx context.Context, old *task.Record) (*task.Record, error) {
	kind, ok := stepKinds[old.Type]
	if !ok {
		return nil, &task.Error{Code: task.ECONFLICT, Message: fmt.Sprintf("a %s task is not retried", old.Type)}
	}
	now := s.deps.Now()
	return kind.submit(s, ctx, json.RawMessage(old.Payload), func(o *task.Options) {
		o.RunAt, o.Delay = nil, nil
		if o.Deadline != nil && !o.Deadline.After(now) {
			o.Deadline = nil
		}
	})
}

// Requeue queues a recorded task again from the input its record keeps:
// for a task SIGANTENG submitted itself (a pipeline's step, a retry) whose
// submitter died between recording and queuing it.
func (s *Service) Requeue(ctx context.Context, rec *task.Record) error {
	if len(rec.Payload) == 0 {
		return fmt.Errorf("service: task %s kept no input to queue", rec.ID)
	}
	return s.enqueueAgain(ctx, rec, 1, rec.Payload)
}
