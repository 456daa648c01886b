package worker

import (
	"context"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
)

// Lines are the API keys' lines of tasks waiting to be admitted to the
// queues (see store.Admission).
type Lines interface {
	AdmitFromLines(ctx context.Context, a store.Admission, now time.Time) ([]store.Admitted, error)
	NextAdmission(ctx context.Context, wait time.Duration) (string, error)
}

// AdmittedQueue queues a task let out of its key's line (queue.Client).
type AdmittedQueue interface {
	EnqueueAdmitted(ctx context.Context, typ task.Type, priority task.Priority, id, owner string, weight int, since time.Time, payload []byte) error
}

// Admitter lets tasks out of their keys' lines onto the queues: at once
// for a key whose admitted task has just ended (the store signals it), and
// for every key each admitLook, which also renews this process's slots in
// the window and catches up on signals lost with a process that died. A
// task let out but not queued (this process died in between) is queued
// again by the reconciler.
type Admitter struct {
	lines  Lines
	queue  AdmittedQueue
	round  store.Admission
	log    *slog.Logger
	now    func() time.Time
	looked time.Time // the last look at every key
}

// admitLook is how often every key's line is looked at, and admitLapse how
// long a worker's slots count in the window unless renewed.
const (
	admitLook  = time.Second
	admitLapse = 5 * time.Second
	admitMost  = 256 // tasks let out in one round trip
	// enqueueGrace bounds the queuing of one round's tasks.
	enqueueGrace = 10 * time.Second
)

// NewAdmitter returns the admitter of a worker process with slots task
// slots; window fixes every key's window (MAX_QUEUED_PER_KEY), 0 sizes it
// from the running workers' slots.
func NewAdmitter(lines Lines, q AdmittedQueue, slots, window int, log *slog.Logger, now func() time.Time) *Admitter {
	if now == nil {
		now = time.Now
	}
	return &Admitter{lines: lines, queue: q, log: log, now: now, round: store.Admission{
		Process: uuid.NewString(), Slots: slots, Lapse: admitLapse, Window: window, Most: admitMost}}
}

// Run admits until ctx ends.
func (a *Admitter) Run(ctx context.Context) {
	for ctx.Err() == nil {
		var owners []string
		if a.now().Sub(a.looked) < admitLook {
			owner, err := a.lines.NextAdmission(ctx, admitLook)
			if err != nil {
				a.fail(ctx, err)
				continue
			}
			if owner != "" {
				owners = []string{owner}
			}
		}
		if err := a.Admit(ctx, owners); err != nil {
			a.fail(ctx, err)
		}
	}
}

// Admit lets out of the lines of owners (of every key when none) what
// their windows have room for, and queues it.
func (a *Admitter) Admit(ctx context.Context, owners []string) error {
	if len(owners) == 0 {
		a.looked = a.now()
	}
	r := a.round
	r.Owners = owners
	for {
		admitted, err := a.lines.AdmitFromLines(ctx, r, a.now())
		if err != nil {
			return err
		}
		// Tasks let out are queued even as the process stops: a shutdown
		// would otherwise leave them to the reconciler's next round.
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), enqueueGrace)
		for _, t := range admitted {
			if err := a.queue.EnqueueAdmitted(qctx, t.Type, t.Priority, t.ID, t.Owner, t.Weight, t.Created, t.Payload); err != nil {
				// The reconciler queues it: it is marked admitted.
				a.log.Warn("could not queue a task let out of its key's line; the reconciler will", "task_id", t.ID, "err", err)
			}
		}
		cancel()
		if len(admitted) < r.Most {
			return nil
		}
		// A full round may have left keys signalled with it unlooked at:
		// the next looks at every key.
		r.Owners = nil
	}
}

// fail logs a failed round and waits a look before the next, so that a
// Redis outage is not met with a loop of calls.
func (a *Admitter) fail(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	a.log.Warn("admitting tasks from the keys' lines failed", "err", err)
	select {
	case <-ctx.Done():
	case <-time.After(admitLook):
	}
}
