package service

import (
	"context"
	"time"

	"github.com/siganteng/siganteng/internal/auth"
	"github.com/siganteng/siganteng/internal/task"
)

// Endings tells the service when a task ends, and when it has new events.
type Endings interface {
	Listen(id string) (<-chan struct{}, func())
	ListenEvents(id string) (<-chan struct{}, func())
}

// MaxWait bounds how long a submit may wait for its task (Prefer: wait=N).
const MaxWait = 60 * time.Second

// Wait returns the task's record once it has ended, or after d, whichever is
// first; at once when the caller's key has MaxWaitingPerKey connections
// waiting already. It listens for the ending rather than polling Redis: one read
// before waiting (the task may have ended already) and one after.
func (s *Service) Wait(ctx context.Context, id string, d time.Duration) (*task.Record, error) {
	caller := auth.FromContext(ctx)
	release, err := s.takeHold(ctx, holdWaiting, caller, s.waitLimit(caller), MaxWait+holdRenewal)
	if err != nil {
		// The key has its share of waiting connections open: a preference
		// may go unmet (RFC 7240), so the answer is the record as it is,
		// not a refusal of a submit that was accepted.
		return s.Get(ctx, id)
	}
	defer release()
	ended, stop := s.deps.Endings.Listen(id)
	defer stop()
	rec, err := s.Get(ctx, id)
	if err != nil || rec.Status.Terminal() {
		return rec, err
	}
	timer := time.NewTimer(min(d, MaxWait))
	defer timer.Stop()
	select {
	case <-ended:
	case <-timer.C:
		// The wait ran out: the record as it is now (RETRY, attempts), not
		// as it was when the wait began.
		return s.Get(context.WithoutCancel(ctx), id)
	case <-ctx.Done():
		return rec, nil
	}
	return s.Get(context.WithoutCancel(ctx), id)
}
