package service

import (
	"fmt"
	"sync"
	"time"

	"github.com/siganteng/siganteng/internal/auth"
	"github.com/siganteng/siganteng/internal/task"
)

// holds counts what each API key has open at once in this process:
// synchronous calls, and connections that wait (event streams, Prefer:
// wait), so that one key cannot take every connection and provider slot
// an API instance has.
type holds struct {
	mu sync.Mutex
	n  map[holdKey]int
}

type holdKey struct{ kind, owner string }

// The kinds of hold, as their 429s name them.
const (
	holdSync    = "synchronous calls"
	holdWaiting = "waiting connections (event streams and Prefer: wait)"
)

// take holds one more of kind for caller, within limit (0: none); release
// gives it back. A caller with no key (an open API) is not bounded.
func (h *holds) take(kind string, caller auth.Caller, limit int) (release func(), err error) {
	if limit <= 0 || caller.KeyID == "" {
		return func() {}, nil
	}
	k := holdKey{kind, caller.KeyID}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == nil {
		h.n = map[holdKey]int{}
	}
	if h.n[k] >= limit {
		return nil, &task.Error{Code: task.ELIMITED, RetryAfter: time.Second,
			Message: fmt.Sprintf("this API key has %d %s open on this server, its limit; try again as they end", limit, kind)}
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
