package routing

import (
	"context"
	"sync"

	"github.com/siganteng/siganteng/internal/task"
)

// Trail collects the calls a router makes for one attempt, and which
// deployment served it, for the task's record.
type Trail struct {
	attempt int

	mu     sync.Mutex
	calls  []task.Call
	served *Deployment
}

type trailKey struct{}

// WithTrail returns a context whose routed calls are written on the trail
// it returns, as calls of attempt.
func WithTrail(ctx context.Context, attempt int) (context.Context, *Trail) {
	t := &Trail{attempt: attempt}
	return context.WithValue(ctx, trailKey{}, t), t
}

func trailFrom(ctx context.Context) *Trail {
	t, _ := ctx.Value(trailKey{}).(*Trail)
	return t
}

// Served returns the deployment that served the call made with ctx, if a
// router served it.
func Served(ctx context.Context) (Deployment, bool) {
	t := trailFrom(ctx)
	if t == nil {
		return Deployment{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.served == nil {
		return Deployment{}, false
	}
	return *t.served, true
}

// Calls returns the calls so far, in order.
func (t *Trail) Calls() []task.Call {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]task.Call(nil), t.calls...)
}

func (t *Trail) add(c task.Call, served *Deployment) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	c.Attempt = t.attempt
	t.calls = append(t.calls, c)
	if served != nil {
		t.served = served
	}
}
