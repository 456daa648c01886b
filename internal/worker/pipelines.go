package worker

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// PipelineQueue is where pipelines to advance come from (see store.Store):
// pushes, as their steps' tasks end, and the ones due a look.
type PipelineQueue interface {
	NextPipeline(ctx context.Context, wait time.Duration) (id string, ok bool, err error)
	DuePipelines(ctx context.Context, now, next time.Time, n int64) ([]string, error)
}

// PipelineAdvancer moves a pipeline on (service.Service).
type PipelineAdvancer interface {
	AdvancePipeline(ctx context.Context, id string) error
}

// Pipelines advances pipelines as their steps end: it takes each push the
// moment it comes (a step's overhead is a few Redis calls, not a poll),
// and every interval looks at the pipelines due a look, which finds any
// whose push was lost with a worker that died holding it.
type Pipelines struct {
	queue    PipelineQueue
	advancer PipelineAdvancer
	interval time.Duration
	recheck  time.Duration
	log      *slog.Logger
	now      func() time.Time

	slots   chan struct{}
	mu      sync.Mutex
	running map[string]bool // pipelines being advanced here; true: advance again after
	wg      sync.WaitGroup
}

// advanceTimeout bounds one advance: a few Redis calls, and the
// submits of a for_each step's items.
const advanceTimeout = time.Minute

// pipelineSlots bounds the pipelines advanced at once by one process.
const pipelineSlots = 16

// NewPipelines returns the advancer's loop: due pipelines are looked at
// every interval, and a pipeline looked at is due again recheck later.
func NewPipelines(queue PipelineQueue, advancer PipelineAdvancer, interval, recheck time.Duration, log *slog.Logger, now func() time.Time) *Pipelines {
	if now == nil {
		now = time.Now
	}
	return &Pipelines{queue: queue, advancer: advancer, interval: interval, recheck: recheck, log: log, now: now,
		slots: make(chan struct{}, pipelineSlots), running: map[string]bool{}}
}

// Run advances pipelines until ctx ends, then waits for the advances under
// way.
func (p *Pipelines) Run(ctx context.Context) {
	defer p.wg.Wait()
	p.wg.Go(func() { p.sweep(ctx) })
	for ctx.Err() == nil {
		id, ok, err := p.queue.NextPipeline(ctx, time.Second)
		if err != nil {
			if ctx.Err() == nil {
				p.log.Warn("pipeline pushes cannot be read; trying again", "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		if ok {
			p.advance(ctx, id)
		}
	}
}

// sweep looks at the pipelines due a look every interval.
func (p *Pipelines) sweep(ctx context.Context) {
	every(ctx, p.interval, func() {
		now := p.now()
		ids, err := p.queue.DuePipelines(ctx, now, now.Add(p.recheck), 100)
		if err != nil {
			p.log.Warn("pipelines due a look cannot be read", "err", err)
			return
		}
		for _, id := range ids {
			p.advance(ctx, id)
		}
	})
}

// advance runs an advance of id in a slot of its own; one already running
// here runs once more after, so no push is lost to it.
func (p *Pipelines) advance(ctx context.Context, id string) {
	p.mu.Lock()
	if _, busy := p.running[id]; busy {
		p.running[id] = true
		p.mu.Unlock()
		return
	}
	p.running[id] = false
	p.mu.Unlock()
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		p.mu.Lock()
		delete(p.running, id)
		p.mu.Unlock()
		return
	}
	p.wg.Go(func() {
		defer func() { <-p.slots }()
		for {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), advanceTimeout)
			err := p.advancer.AdvancePipeline(actx, id)
			cancel()
			if err != nil {
				p.log.Warn("a pipeline could not be advanced; it is looked at again later", "pipeline_id", id, "err", err)
			}
			p.mu.Lock()
			again := p.running[id]
			if !again {
				delete(p.running, id)
			} else {
				p.running[id] = false
			}
			p.mu.Unlock()
			if !again {
				return
			}
		}
	})
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
