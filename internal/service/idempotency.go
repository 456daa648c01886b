package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/siganteng/siganteng/internal/auth"
	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
)

// IdempotencyKeys remembers Idempotency-Key headers (see store.Store).
type IdempotencyKeys interface {
	Claim(ctx context.Context, key, hash string, ttl time.Duration) (claimed bool, heldHash, heldID string, err error)
	Held(ctx context.Context, key string) (hash, id string, err error)
	Settle(ctx context.Context, key, hash, id string) error
	Release(ctx context.Context, key string) error
}

// Idempotency keys are kept a day, as Stripe and the IETF draft suggest.
const idempotencyTTL = 24 * time.Hour

// pendingWait bounds how long a request waits for a concurrent one with the
// same key to finish submitting.
const pendingWait = 3 * time.Second

// Idempotent runs submit once per key: the same key with the same body (of
// the same type) gives back the first request's task, replayed true; the
// same key with another body is EINVALID; a key whose first request is
// still submitting after a few seconds is ECONFLICT. An empty key submits.
func (s *Service) Idempotent(ctx context.Context, key string, typ task.Type, input any, submit func() (*task.Record, error)) (*task.Record, bool, error) {
	return idempotent(s, ctx, key, string(typ), input, func() (*task.Record, string, error) {
		rec, err := submit()
		if err != nil {
			return nil, "", err
		}
		return rec, rec.ID, nil
	}, s.Get)
}

// CreatePipelineIdempotent is CreatePipeline under an Idempotency-Key, as
// Idempotent is for tasks.
func (s *Service) CreatePipelineIdempotent(ctx context.Context, key string, in task.PipelineInput) (*task.PipelineRecord, bool, error) {
	return idempotent(s, ctx, key, "pipeline", in, func() (*task.PipelineRecord, string, error) {
		p, err := s.CreatePipeline(ctx, in)
		if err != nil {
			return nil, "", err
		}
		return p, p.ID, nil
	}, s.GetPipeline)
}

// idempotent runs submit once per key; get reads what the first request
// made, by the id submit returned.
func idempotent[T any](s *Service, ctx context.Context, key, kind string, input any, submit func() (T, string, error), get func(ctx context.Context, id string) (T, error)) (T, bool, error) {
	var zero T
	if key == "" {
		out, _, err := submit()
		return out, false, err
	}
	body, err := json.Marshal(input)
	if err != nil {
		return zero, false, fmt.Errorf("service: hash %s input: %w", kind, err)
	}
	sum := sha256.Sum256(append([]byte(kind+"\n"), body...))
	hash := hex.EncodeToString(sum[:])
	// Keys belong to their caller: two callers may pick the same one.
	owned := auth.FromContext(ctx).Owner() + ":" + key

	claimed, heldHash, heldID, err := s.deps.Keys.Claim(ctx, owned, hash, idempotencyTTL)
	if err != nil {
		return zero, false, task.Unavailable("the task store is unavailable; nothing was queued", err)
	}
	if claimed {
		out, id, err := submit()
		cleanup := context.WithoutCancel(ctx)
		if err != nil {
			_ = s.deps.Keys.Release(cleanup, owned)
			return zero, false, err
		}
		if err := s.deps.Keys.Settle(cleanup, owned, hash, id); err != nil {
			s.deps.Log.Warn("could not remember what an Idempotency-Key made; a retry with it may wait and then conflict", "id", id, "err", err)
		}
		return out, false, nil
	}
	deadline := s.deps.Now().Add(pendingWait)
	for {
		switch {
		case heldID == "": // the first request failed and let the key go: take it
			return idempotent(s, ctx, key, kind, input, submit, get)
		case heldHash != hash:
			return zero, false, task.Invalid("header.Idempotency-Key", "this Idempotency-Key was used with a different request body")
		case !store.IsPending(heldID):
			out, err := get(ctx, heldID)
			return out, true, err
		case !s.deps.Now().Before(deadline):
			return zero, false, &task.Error{Code: task.ECONFLICT, Message: "a request with this Idempotency-Key is still being submitted; retry shortly"}
		}
		select {
		case <-ctx.Done():
			return zero, false, task.Unavailable("the request was cancelled", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
		if heldHash, heldID, err = s.deps.Keys.Held(ctx, owned); err != nil {
			return zero, false, task.Unavailable("the task store is unavailable", err)
		}
	}
}
