package worker

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
)

// Reporter is the record store as the progress of an attempt uses it.
type Reporter interface {
	Report(ctx context.Context, id string, attempt int, text string, progress *task.Progress, webhook bool) error
}

// How often an attempt's text is written, and how often its progress may
// go to a webhook: text reaches event streams within flushEvery, at a cost
// of one Redis call per flush however fast the provider writes.
const (
	flushEvery = 100 * time.Millisecond
	hookEvery  = 2 * time.Second
)

// attemptProgress collects what an attempt produces and writes it in
// batches, in the background, so the provider is read at full speed.
type attemptProgress struct {
	records Reporter
	id      string
	attempt int
	log     *taskLogger

	mu       sync.Mutex
	pending  strings.Builder
	chars    int64
	lastHook time.Time
	stopped  bool // the attempt is no longer the running one

	tick *time.Ticker // nil until the first text
	done chan struct{}
	wg   sync.WaitGroup
}

func newAttemptProgress(records Reporter, id string, attempt int, log *taskLogger) *attemptProgress {
	return &attemptProgress{records: records, id: id, attempt: attempt, log: log, done: make(chan struct{})}
}

// start begins the background writes; most attempts report nothing and
// never start them.
func (p *attemptProgress) start() {
	p.tick = time.NewTicker(flushEvery)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			select {
			case <-p.done:
				return
			case <-p.tick.C:
				p.flush()
			}
		}
	}()
}

// Text implements service.Progress.
func (p *attemptProgress) Text(piece string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tick == nil {
		p.start()
	}
	p.pending.WriteString(piece)
	p.chars += int64(utf8.RuneCountInString(piece))
}

// flush writes the text gathered since the last flush, with the progress.
func (p *attemptProgress) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped || p.pending.Len() == 0 {
		return
	}
	text := p.pending.String()
	p.pending.Reset()
	now := time.Now()
	hook := now.Sub(p.lastHook) >= hookEvery
	progress := &task.Progress{Done: p.chars, Unit: "characters"}
	err := record(context.Background(), func(c context.Context) error {
		return p.records.Report(c, p.id, p.attempt, text, progress, hook)
	})
	switch {
	case errors.Is(err, store.ErrNotRunning):
		p.stopped = true
	case err != nil:
		// The result still holds the whole text; only the live view lags.
		p.log.Warn("could not write the text produced so far", "err", err)
	case hook:
		p.lastHook = now
	}
}

// Close stops the background writes and writes what is left, so that every
// piece of text is in the event stream before the task's end is.
func (p *attemptProgress) Close() {
	p.mu.Lock()
	started := p.tick != nil
	p.mu.Unlock()
	if !started {
		return
	}
	p.tick.Stop()
	close(p.done)
	p.wg.Wait()
	p.flush()
}
