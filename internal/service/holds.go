package service

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/siganteng/siganteng/internal/auth"
	"github.com/siganteng/siganteng/internal/task"
)

// HoldStore counts each API key's holds in Redis, shared by every API
// process (see store.Store).
type HoldStore interface {
	// TakeHold takes a hold within limit for lease; false at the limit.
	TakeHold(ctx context.Context, kind, owner, id string, limit int, lease time.Duration, now time.Time) (bool, error)
	RenewHold(ctx context.Context, kind, owner, id string, lease time.Duration, now time.Time) error
	ReleaseHold(ctx context.Context, kind, owner, id string) error
}

// holds counts what each API key has open at once: synchronous calls, and
// connections that wait (event streams, Prefer: wait), so that one key
// cannot take every connection and provider slot. With a HoldStore the
// count is shared by every API process; without one (tests) it is this
// process's.
type holds struct {
	mu sync.Mutex
	n  map[holdKey]int
}

type holdKey struct{ kind, owner string }

// The kinds of hold, as their 429s name them, and as their Redis keys do.
const (
	holdSync    = "synchronous calls"
	holdWaiting = "waiting connections (event streams and Prefer: wait)"
)

var holdNames = map[string]string{holdSync: "sync", holdWaiting: "waiting"}

// holdRenewal is how long a hold lives past its last renewal: a process
// that dies holding one gives it back this much later.
const holdRenewal = 30 * time.Second

// takeHold holds one more of kind for caller, within limit (0: none), for
// as long as lease; release gives it back. A hold that may outlast
// holdRenewal (lease 0: an event stream, as long as it is open) is renewed
// until released. A caller with no key (an open API) is not bounded.
func (s *Service) takeHold(ctx context.Context, kind string, caller auth.Caller, limit int, lease time.Duration) (release func(), err error) {
	if limit <= 0 || caller.KeyID == "" {
		return func() {}, nil
	}
	if s.deps.Holds == nil {
		return s.holds.take(kind, caller, limit)
	}
	id, name := uuid.NewString(), holdNames[kind]
	renew := lease <= 0
	if renew {
		lease = holdRenewal
	}
	hctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	ok, err := s.deps.Holds.TakeHold(hctx, name, caller.KeyID, id, limit, lease, s.deps.Now())
	switch {
	case err != nil:
		return nil, task.Unavailable("the task store is unavailable", err)
	case !ok:
		return nil, heldError(kind, limit)
	}
	stop := make(chan struct{})
	var done sync.WaitGroup
	if renew {
		done.Go(func() {
			t := time.NewTicker(holdRenewal / 3)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					rctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
					if err := s.deps.Holds.RenewHold(rctx, name, caller.KeyID, id, holdRenewal, s.deps.Now()); err != nil {
						s.deps.Log.Warn("a hold was not renewed; it lapses unless the next renewal lands", "err", err)
					}
					cancel()
				}
			}
		})
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			close(stop)
			done.Wait()
			rctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
			defer cancel()
			if err := s.deps.Holds.ReleaseHold(rctx, name, caller.KeyID, id); err != nil {
				s.deps.Log.Warn("a hold was not given back; it lapses with its lease", "err", err)
			}
		})
	}, nil
}

func heldError(kind string, limit int) error {
	return &task.Error{Code: task.ELIMITED, RetryAfter: time.Second,
		Message: fmt.Sprintf("this API key has %d %s open, its limit; try again as they end", limit, kind)}
}

// take is takeHold counted in this process only.
func (h *holds) take(kind string, caller auth.Caller, limit int) (release func(), err error) {
	k := holdKey{kind, caller.KeyID}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == nil {
		h.n = map[holdKey]int{}
	}
	if h.n[k] >= limit {
		return nil, heldError(kind, limit)
	}
	h.n[k]++
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.n[k]--; h.n[k] <= 0 {
				delete(h.n, k)
			}
		})
	}, nil
}

// syncLimit and waitLimit are caller's bounds: its key's own, else the
// server's.
func (s *Service) syncLimit(c auth.Caller) int {
	if c.MaxSync > 0 {
		return c.MaxSync
	}
	return s.cfg.MaxSyncPerKey
}

func (s *Service) waitLimit(c auth.Caller) int {
	if c.MaxWaiting > 0 {
		return c.MaxWaiting
	}
	return s.cfg.MaxWaitingPerKey
}
