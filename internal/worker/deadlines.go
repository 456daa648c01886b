package worker

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/siganteng/siganteng/internal/store"
)

// DeadlineRecords is what the deadline sweeper needs of the record store.
type DeadlineRecords interface {
	Overdue(ctx context.Context, now time.Time, limit int64) ([]string, error)
	DeadlinePassed(ctx context.Context, id string, at time.Time) error
}

// Deadlines ends tasks whose deadline has passed, whatever they are doing:
// one that waits (queued, scheduled, between retries, for budget) never
// runs, and one that runs has its provider call cut, as a cancel cuts it
// (the ending reaches its worker through the same notification). Every
// worker process runs one; ending a task twice is harmless.
type Deadlines struct {
	records  DeadlineRecords
	interval time.Duration
	log      *slog.Logger
	now      func() time.Time
}

// NewDeadlines returns a sweeper that looks every interval; now may be nil
// for time.Now.
func NewDeadlines(records DeadlineRecords, interval time.Duration, log *slog.Logger, now func() time.Time) *Deadlines {
	if now == nil {
		now = time.Now
	}
	return &Deadlines{records: records, interval: interval, log: log, now: now}
}

// Run sweeps until ctx ends.
func (d *Deadlines) Run(ctx context.Context) {
	every(ctx, d.interval, func() {
		if _, err := d.Sweep(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("ending tasks past their deadline failed", "err", err)
		}
	})
}

// every calls f every interval until ctx ends.
func every(ctx context.Context, interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// Sweep ends the tasks whose deadline has passed and returns how many it
// ended.
func (d *Deadlines) Sweep(ctx context.Context) (int, error) {
	now := d.now()
	ids, err := d.records.Overdue(ctx, now, 500)
	if err != nil {
		return 0, err
	}
	ended := 0
	for _, id := range ids {
		switch err := d.records.DeadlinePassed(ctx, id, now); {
		case err == nil:
			ended++
			d.log.Info("task ended: its deadline passed", "task_id", id)
		case errors.Is(err, store.ErrFinished):
		default:
			return ended, err
		}
	}
	return ended, nil
}

var _ DeadlineRecords = (*store.Store)(nil)
