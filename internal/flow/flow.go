package flow

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/siganteng/siganteng/internal/provider"
)

// KeyPrefix starts every key of the flow controller; the hash tag keeps a
// deployment's keys, and a task's reservation, in one Cluster slot.
const KeyPrefix = "{siganteng}:flow:"

// Config tunes the controller; zero values take the defaults.
type Config struct {
	// MaxWait is how long a queued task may wait for budget in all
	// (FLOW_MAX_WAIT); past it the task fails naming the limit. It is also
	// how far ahead a slot may be reserved. Default 1h.
	MaxWait time.Duration
	// SleepMax is the longest wait a queued task spends in place, holding
	// its worker; longer ones go back to the queue. Default 2s.
	SleepMax time.Duration
	// Burst is how far ahead of the even pace calls may start, so that an
	// idle deployment takes a burst of Burst's worth of calls at once.
	// Default 500ms: half the second most providers measure in.
	Burst time.Duration
	// Lease bounds a concurrent-call lease that is never returned (its
	// worker was killed): TASK_TIMEOUT and a margin. Default 10m.
	Lease time.Duration
	// Refresh is how often a deployment with no limits looks in Redis for
	// one another process learned. Default 1s.
	Refresh time.Duration
	// Share is how far ahead of now one API key may hold slots of a
	// saturated deployment: another key's task waits about this long behind
	// a burst. Default 1s.
	Share time.Duration
	// Observer is told of waits and of 429s; nil for none.
	Observer Observer
	Log      *slog.Logger
	// Now and Sleep are the clock, for tests; time's when nil.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

// Observer hears what the controller does, for the metrics.
type Observer interface {
	// Waited is one wait for budget: in place, or handed back to the queue.
	Waited(deployment, reason string, d time.Duration)
	// Refused is one 429 from the provider.
	Refused(deployment string)
}

// Controller holds every deployment's flow state in one process; the
// budgets themselves are in Redis, shared.
type Controller struct {
	rdb redis.UniversalClient
	cfg Config
	id  string // this process, for the estimates of a pace
	mu  sync.Mutex
	dep map[string]*Deployment
}

// New returns a controller on rdb.
func New(rdb redis.UniversalClient, cfg Config) *Controller {
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = time.Hour
	}
	if cfg.SleepMax <= 0 {
		cfg.SleepMax = 2 * time.Second
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 500 * time.Millisecond
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 10 * time.Minute
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = time.Second
	}
	if cfg.Share <= 0 {
		cfg.Share = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
	}
	return &Controller{rdb: rdb, cfg: cfg, id: uuid.NewString(), dep: map[string]*Deployment{}}
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Deployment returns the flow state of the deployment named, with limits
// as configured now (a reloaded routing file may change them).
func (c *Controller) Deployment(name string, limits Limits) *Deployment {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.dep[name]
	if !ok {
		d = &Deployment{name: name, c: c, key: KeyPrefix + name, leases: KeyPrefix + name + ":calls"}
		c.dep[name] = d
	}
	d.limits.Store(&limits)
	return d
}

// States lists every deployment's limits and state, by name.
func (c *Controller) States() []State {
	c.mu.Lock()
	deps := make([]*Deployment, 0, len(c.dep))
	for _, d := range c.dep {
		deps = append(deps, d)
	}
	c.mu.Unlock()
	now := c.cfg.Now()
	out := make([]State, 0, len(deps))
	for _, d := range deps { // outside the lock: refresh may read Redis
		d.refresh(now)
		out = append(out, d.state(now))
	}
	return out
}

// MaxWait is how long a queued task may wait for budget in all.
func (c *Controller) MaxWait() time.Duration { return c.cfg.MaxWait }

// State is one deployment's flow, as this process last saw it.
type State struct {
	Deployment  string
	Configured  Limits
	LearnedRPM  int64
	LearnedTPM  int64
	PacedRPM    int64     // learned from 429s alone (pacing.go); 0 for none
	PausedUntil time.Time // zero when not paused
	Waiting     int64     // calls waiting in place now, in this process
	Refused     int64     // 429s from the provider, in this process
}

// Deployment is one provider endpoint with one credential: the unit its
// provider limits.
type Deployment struct {
	name   string
	c      *Controller
	key    string // its state in Redis
	leases string // its concurrent calls
	limits atomic.Pointer[Limits]
	// What this process knows the provider said, so that a deployment
	// with no limits costs no round trip until one is learned.
	learnedRPM, learnedTPM atomic.Int64
	pacedRPM               atomic.Int64 // learned from 429s alone
	pacedAt                atomic.Int64 // Unix ms this process last told of such a 429
	traffic                traffic      // this process's calls, for a pace's first estimate
	pausedUntil            atomic.Int64 // Unix ms
	checkedAt              atomic.Int64 // Unix ms of the last look in Redis
	waiting, refused       atomic.Int64
	// usedShare is what calls have used of their estimate lately (an
	// exponential average, as float64 bits; 0 for none yet): estimates
	// count max_tokens, which most answers stop well short of, and a tokens
	// budget charged the whole of it would pace far below the limit until
	// each correction came in.
	usedShare atomic.Uint64
}

// charge is what a call estimated at tokens is charged before it runs.
func (d *Deployment) charge(tokens int64) int64 {
	share := math.Float64frombits(d.usedShare.Load())
	if share <= 0 || tokens <= 0 {
		return tokens
	}
	return max(int64(math.Ceil(float64(tokens)*share)), 1)
}

// learnShare folds one call's used/estimated tokens into usedShare.
func (d *Deployment) learnShare(estimated, used int64) {
	if estimated <= 0 || used <= 0 {
		return
	}
	share := min(max(float64(used)/float64(estimated), 0.05), 1)
	for {
		old := d.usedShare.Load()
		avg := share
		if prev := math.Float64frombits(old); prev > 0 {
			avg = 0.9*prev + 0.1*share
		}
		if d.usedShare.CompareAndSwap(old, math.Float64bits(avg)) {
			return
		}
	}
}

// Name is the deployment's name, as records and metrics show it.
func (d *Deployment) Name() string { return d.name }

func (d *Deployment) state(now time.Time) State {
	s := State{Deployment: d.name, Configured: *d.limits.Load(), LearnedRPM: d.learnedRPM.Load(), LearnedTPM: d.learnedTPM.Load(),
		PacedRPM: d.pacedRPM.Load(), Waiting: d.waiting.Load(), Refused: d.refused.Load()}
	if p := d.pausedUntil.Load(); p > now.UnixMilli() {
		s.PausedUntil = time.UnixMilli(p)
	}
	return s
}

// limited reports whether calls must ask Redis: a limit is configured, or
// one was learned (here, or by another process in the last Refresh).
func (d *Deployment) limited(now time.Time) bool {
	learned := func() bool {
		return d.learnedRPM.Load() > 0 || d.learnedTPM.Load() > 0 || d.pacedRPM.Load() > 0 || d.pausedUntil.Load() > now.UnixMilli()
	}
	if d.limits.Load().Set() || learned() {
		return true
	}
	d.refresh(now)
	return learned()
}

// refresh reads what other processes learned of the deployment, at most
// once per Refresh.
func (d *Deployment) refresh(now time.Time) {
	ms := now.UnixMilli()
	last := d.checkedAt.Load()
	if ms-last < d.c.cfg.Refresh.Milliseconds() || !d.checkedAt.CompareAndSwap(last, ms) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	// The look also says this process calls the deployment: a pace's
	// first estimate counts the processes that do (pacing.go).
	var get *redis.SliceCmd
	_, err := d.c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.HMGet(ctx, d.key, "rpm", "tpm", "paused_until", "paced_rpm")
		p.ZAdd(ctx, d.key+":callers", redis.Z{Score: float64(ms), Member: d.c.id})
		p.PExpire(ctx, d.key+":callers", time.Minute)
		return nil
	})
	if err != nil {
		return
	}
	v := get.Val()
	d.learnedRPM.Store(parseInt(v[0]))
	d.learnedTPM.Store(parseInt(v[1]))
	d.pausedUntil.Store(parseInt(v[2]))
	d.pacedRPM.Store(parseInt(v[3]))
}

func parseInt(v any) int64 {
	s, _ := v.(string)
	f, _ := strconv.ParseFloat(s, 64)
	return int64(f)
}

// lease is a granted call, to be settled when it ends.
type lease struct {
	id     string // its concurrent-call lease; "" for none
	tokens int64  // the estimate it was charged
	asked  bool   // Redis was asked: settle there
}

// acquire waits for budget for one call estimated at tokens. A queued
// task's attempt (provider.DeferredWaits) gets a *provider.WaitError for a
// wait longer than SleepMax; a synchronous call waits in place up to its
// deadline and gets a *provider.WaitError when the wait is longer.
func (d *Deployment) acquire(ctx context.Context, tokens int64) (lease, error) {
	cfg := d.c.cfg
	if !d.limited(cfg.Now()) {
		return lease{}, nil
	}
	taskID, deferred := provider.DeferredWaits(ctx)
	resv, ticket := d.key+":resv:"+taskID, d.key+":ticket:"+taskID
	if !deferred {
		// never written: a synchronous call sleeps on its slot
		resv, ticket = d.key+":resv:", d.key+":ticket:"
	}
	owner := provider.FlowKeyOf(ctx)
	l := lease{tokens: tokens, asked: true}
	limits := *d.limits.Load()
	if limits.Concurrent > 0 {
		l.id = uuid.NewString()
	}
	held := false
	var slept time.Duration // in place, this call
	for {
		now := cfg.Now()
		reserveUpTo, keepAbove := cfg.MaxWait, cfg.SleepMax
		if !deferred {
			keepAbove = -1
			reserveUpTo = 0
			if dl, ok := ctx.Deadline(); ok {
				reserveUpTo = dl.Sub(now)
			}
		}
		heldArg := "0"
		if held {
			heldArg = "1"
		}
		res, err := acquireScript.Run(ctx, d.c.rdb, []string{d.key, d.leases, resv, d.key + ":keys", d.key + ":active", ticket},
			now.UnixMilli(), limits.RPM, limits.TPM, limits.Concurrent, tokens, reserveUpTo.Milliseconds(),
			keepAboveMs(keepAbove), l.id, cfg.Lease.Milliseconds(), cfg.Burst.Milliseconds(), heldArg,
			owner, cfg.Share.Milliseconds(), provider.FlowWeightOf(ctx), growShare).Slice()
		if err != nil {
			if ctx.Err() != nil {
				return lease{}, ctx.Err()
			}
			// The budget cannot be read: calls go on unpaced rather than
			// stop, and the provider's own 429s still pause them.
			cfg.Log.Warn("flow control could not reach Redis; the call goes ahead unpaced", "deployment", d.name, "err", err)
			return lease{}, nil
		}
		granted, _ := res[0].(int64)
		waitMs, _ := res[1].(int64)
		reason, _ := res[2].(string)
		reserved, _ := res[3].(int64)
		wait := time.Duration(waitMs) * time.Millisecond
		if granted == 1 {
			if err := d.sleep(ctx, "requests", wait); err != nil {
				d.settle(ctx, l, 0)
				return lease{}, err
			}
			return l, nil
		}
		switch {
		case reserved == 1 && (!deferred || wait <= cfg.SleepMax):
			// A slot is held: sleep to it, then only a lease is needed.
			if err := d.sleep(ctx, reason, wait); err != nil {
				return lease{}, err
			}
			if limits.Concurrent == 0 {
				return l, nil
			}
			held = true
			continue
		case deferred && (slept+wait > cfg.SleepMax || reserved == 2):
			// A ticket's turn is not a slot: sleeping to it would hold a
			// worker for nothing, so the task waits in the queue.
			d.observe(reason, wait)
			// 1: a slot is reserved; 2: the time of its turn, exact too.
			return lease{}, &provider.WaitError{Deployment: d.name, Reason: reason, Until: now.Add(jitter(wait, reserved != 0)), Reserved: reserved == 1}
		case !deferred:
			if dl, ok := ctx.Deadline(); ok && now.Add(wait).After(dl) {
				return lease{}, &provider.WaitError{Deployment: d.name, Reason: reason, Until: now.Add(wait)}
			}
		}
		if err := d.sleep(ctx, reason, wait); err != nil {
			return lease{}, err
		}
		slept += wait
	}
}

// jitter spreads the return of tasks told the same unreserved wait (a
// pause, a full set of concurrent calls), so they do not all come back in
// the same instant; a reserved slot is exact.
func jitter(wait time.Duration, exact bool) time.Duration {
	if exact {
		return wait
	}
	return wait + rand.N(min(wait, time.Second)+time.Millisecond)
}

func keepAboveMs(d time.Duration) int64 {
	if d < 0 {
		return -1
	}
	return d.Milliseconds()
}

func (d *Deployment) sleep(ctx context.Context, reason string, wait time.Duration) error {
	if wait <= 0 {
		return nil
	}
	d.observe(reason, wait)
	d.waiting.Add(1)
	defer d.waiting.Add(-1)
	return d.c.cfg.Sleep(ctx, wait)
}

func (d *Deployment) observe(reason string, wait time.Duration) {
	if o := d.c.cfg.Observer; o != nil {
		o.Waited(d.name, reason, wait)
	}
}

// settle returns a call's lease and corrects the tokens it was charged by
// those the provider reported (used; 0 when unknown).
func (d *Deployment) settle(ctx context.Context, l lease, used int64) {
	if !l.asked {
		return
	}
	delta := int64(0)
	if used > 0 {
		delta = used - l.tokens
	}
	limits := *d.limits.Load()
	if l.id == "" && (delta == 0 || (limits.TPM == 0 && d.learnedTPM.Load() == 0)) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if err := settleScript.Run(ctx, d.c.rdb, []string{d.key, d.leases}, l.id, delta, limits.TPM).Err(); err != nil {
		d.c.cfg.Log.Warn("flow control could not settle a call; its lease expires by itself", "deployment", d.name, "err", err)
	}
}

// Learn keeps what one answer of the provider said of its limits: the
// limits it states, and a pause when it answered 429 or says a budget is
// spent until a reset. It writes to Redis only when that changes something.
func (d *Deployment) Learn(status int, rl provider.RateLimit) {
	now := d.c.cfg.Now()
	var rpm, tpm int64
	if rl.LimitRequests > 0 && rl.LimitRequests != d.learnedRPM.Load() {
		rpm = rl.LimitRequests
		d.learnedRPM.Store(rpm)
	}
	if rl.LimitTokens > 0 && rl.LimitTokens != d.learnedTPM.Load() {
		tpm = rl.LimitTokens
		d.learnedTPM.Store(tpm)
	}
	var pause time.Duration
	switch {
	case status == 429:
		if rl.LimitRequests == 0 && rl.LimitTokens == 0 && d.learnedRPM.Load() == 0 && (rl.RetryAfter == 0 || rl.RetryAfter >= momentary) {
			defer d.pace(now) // after the pause is known here
		}
		d.refused.Add(1)
		if o := d.c.cfg.Observer; o != nil {
			o.Refused(d.name)
		}
		pause = rl.RetryAfter
		if pause == 0 {
			pause = max(rl.ResetRequests, rl.ResetTokens)
		}
		if pause == 0 {
			pause = time.Second
		}
	case rl.RemainingRequests == 0 && rl.ResetRequests > 0:
		pause = rl.ResetRequests
	case rl.RemainingTokens == 0 && rl.ResetTokens > 0:
		pause = rl.ResetTokens
	}
	var until int64
	if pause > 0 {
		until = now.Add(pause).UnixMilli()
		if until <= d.pausedUntil.Load() {
			until = 0 // already known
		} else {
			d.pausedUntil.Store(until)
		}
	}
	if rpm == 0 && tpm == 0 && until == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := learnScript.Run(ctx, d.c.rdb, []string{d.key}, rpm, tpm, until).Err(); err != nil {
		d.c.cfg.Log.Warn("flow control could not share what the provider said of its limits", "deployment", d.name, "err", err)
	}
}

// refusal turns a provider's 429 into a wait: the deployment is paused
// (Learn did it, from the answer's headers), and the call waits like any
// other for budget.
func (d *Deployment) refusal(err error) error {
	var perr *provider.Error
	if !errors.As(err, &perr) || perr.Kind != provider.KindRateLimited {
		return err
	}
	now := d.c.cfg.Now()
	until := time.UnixMilli(d.pausedUntil.Load())
	if perr.RetryAfter > 0 && now.Add(perr.RetryAfter).After(until) {
		until = now.Add(perr.RetryAfter)
	}
	if !until.After(now) {
		until = now.Add(time.Second)
	}
	return &provider.WaitError{Deployment: d.name, Reason: "provider", Until: now.Add(jitter(until.Sub(now), false))}
}
