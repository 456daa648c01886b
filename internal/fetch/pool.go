package fetch

import (
	"context"
	"sync"
)

// Pool bounds the downloads under way at once, in all and for each owner
// (an API key), so that URLs that answer slowly or never cannot take the
// slots other work needs: a queued task that finds no room goes back to
// wait (TryTake), a synchronous call waits for room (Take).
type Pool struct {
	mu       sync.Mutex
	max      int
	perOwner int
	inUse    int
	byOwner  map[string]int
	freed    chan struct{} // closed and replaced whenever a download ends
}

// NewPool returns a pool of size downloads, of which one owner may hold
// perOwner; both at least 1.
func NewPool(size, perOwner int) *Pool {
	size = max(size, 1)
	return &Pool{max: size, perOwner: max(min(perOwner, size), 1), byOwner: map[string]int{}, freed: make(chan struct{})}
}

// TryTake takes a place for owner's download, or reports false at once
// when the pool, or owner's part of it, is full. release gives it back.
func (p *Pool) TryTake(owner string) (release func(), ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inUse >= p.max || p.byOwner[owner] >= p.perOwner {
		return nil, false
	}
	p.inUse++
	p.byOwner[owner]++
	var once sync.Once
	return func() { once.Do(func() { p.give(owner) }) }, true
}

// Take waits for a place for owner's download until ctx ends.
func (p *Pool) Take(ctx context.Context, owner string) (release func(), err error) {
	for {
		p.mu.Lock()
		freed := p.freed
		p.mu.Unlock()
		if release, ok := p.TryTake(owner); ok {
			return release, nil
		}
		select {
		case <-freed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// InUse is the number of downloads under way, and owner's.
func (p *Pool) InUse(owner string) (all, owners int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inUse, p.byOwner[owner]
}

func (p *Pool) give(owner string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inUse--
	if p.byOwner[owner]--; p.byOwner[owner] <= 0 {
		delete(p.byOwner, owner)
	}
	close(p.freed)
	p.freed = make(chan struct{})
}
