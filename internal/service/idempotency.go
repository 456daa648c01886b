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
	if key == "" {
		rec, err := submit()
		return rec, false, err
	}
	body, err := json.Marshal(input)
	if err != nil {
		return nil, false, fmt.Errorf("service: hash %s input: %w", typ, err)
	}
	sum := sha256.Sum256(append([]byte(string(typ)+"\n"), body...))
	hash := hex.EncodeToString(sum[:])
	// Keys belong to their caller: two callers may pick the same one.
	key = auth.FromContext(ctx).Owner() + ":" + key

	claimed, heldHash, heldID, err := s.deps.Keys.Claim(ctx, key, hash, idempotencyTTL)
	if err != nil {
		return nil, false, task.Unavailable("the task store is unavailable; nothing was queued", err)
	}
	if claimed {
		rec, err := submit()
		cleanup := context.WithoutCancel(ctx)
		if err != nil {
			_ = s.deps.Keys.Release(cleanup, key)
			return nil, false, err
		}
		if err := s.deps.Keys.Settle(cleanup, key, hash, rec.ID); err != nil {
			s.deps.Log.Warn("could not remember the task of an Idempotency-Key; a retry with it may wait and then conflict", "task_id", rec.ID, "err", err)
		}
		return rec, false, nil
	}
	deadline := s.deps.Now().Add(pendingWait)
	for {
		switch {
		case heldID == "": // the first request failed and let the key go: take it
			return s.Idempotent(ctx, key, typ, input, submit)
		case heldHash != hash:
			return nil, false, task.Invalid("header.Idempotency-Key", "this Idempotency-Key was used with a different request body")
		case !store.IsPending(heldID):
			rec, err := s.Get(ctx, heldID)
			return rec, true, err
		case !s.deps.Now().Before(deadline):
			return nil, false, &task.Error{Code: task.ECONFLICT, Message: "a request with this Idempotency-Key is still being submitted; retry shortly"}
		}
		select {
		case <-ctx.Done():
			return nil, false, task.Unavailable("the request was cancelled", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
		if heldHash, heldID, err = s.deps.Keys.Held(ctx, key); err != nil {
			return nil, false, task.Unavailable("the task store is unavailable", err)
		}
	}
}
