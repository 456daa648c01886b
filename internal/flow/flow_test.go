package flow

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/redistest"
)

// clock is an injected clock whose sleeps move it on at once.
type clock struct {
	mu    sync.Mutex
	now   time.Time
	slept []time.Duration
}

func newClock() *clock { return &clock{now: time.Now()} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *clock) Sleep(_ context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.slept = append(c.slept, d)
	c.now = c.now.Add(d)
	return nil
}

func (c *clock) advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

func (c *clock) sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.slept...)
}

func newController(t *testing.T, rdb redis.UniversalClient, c *clock) *Controller {
	t.Helper()
	return New(rdb, Config{Now: c.Now, Sleep: c.Sleep, MaxWait: time.Hour, SleepMax: 2 * time.Second, Burst: 500 * time.Millisecond})
}

// oneKeyController lets one key reserve a whole hour ahead: the queue
// order of a single tenant, without fair share.
func oneKeyController(t *testing.T, rdb redis.UniversalClient, c *clock) *Controller {
	t.Helper()
	return New(rdb, Config{Now: c.Now, Sleep: c.Sleep, MaxWait: time.Hour, SleepMax: 2 * time.Second, Burst: 500 * time.Millisecond, Share: time.Hour})
}

// fakeLLM answers every call, counting them, or with the error given.
type fakeLLM struct {
	mu    sync.Mutex
	calls int
	err   error
	usage int64
}

func (f *fakeLLM) Name() string { return "fake" }

func (f *fakeLLM) GenerateText(context.Context, provider.TextRequest) (provider.TextResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		err := f.err
		f.err = nil
		return provider.TextResponse{}, err
	}
	return provider.TextResponse{Text: "ok", Usage: provider.Usage{TotalTokens: f.usage}}, nil
}

func TestARequestsLimitPacesCallsEvenly(t *testing.T) {
	rdb := redistest.Client(t, redistest.URL(t))
	c := newClock()
	d := newController(t, rdb, c).Deployment("chat/1", Limits{RPM: 600}) // one call per 100 ms
	llm := &fakeLLM{}
	paced := LLM(d, llm)
	ctx := provider.WithDeferredWaits(context.Background(), "t")
	start := c.Now()
	for range 20 {
		if _, err := paced.GenerateText(ctx, provider.TextRequest{Prompt: "hi"}); err != nil {
			t.Fatal(err)
		}
	}
	if llm.calls != 20 {
		t.Fatalf("%d calls made, want 20", llm.calls)
	}
	// A burst of 500 ms' worth (6 calls) goes at once; the other 14 follow
	// at the pace, 100 ms apart: 20 calls end 1.4 s after the first.
	if got := c.Now().Sub(start); got != 1400*time.Millisecond {
		t.Fatalf("20 calls took %v of the clock, want 1.4s (sleeps %v)", got, c.sleeps())
	}
}

func TestALongWaitGoesBackToTheQueueWithItsSlotReserved(t *testing.T) {
	rdb := redistest.Client(t, redistest.URL(t))
	c := newClock()
	d := oneKeyController(t, rdb, c).Deployment("chat/1", Limits{RPM: 6}) // one call per 10 s
	llm := &fakeLLM{}
	paced := LLM(d, llm)
	if _, err := paced.GenerateText(provider.WithDeferredWaits(context.Background(), "first"), provider.TextRequest{}); err != nil {
		t.Fatal(err)
	}
	ctx := provider.WithDeferredWaits(context.Background(), "second")
	_, err := paced.GenerateText(ctx, provider.TextRequest{})
	var wait *provider.WaitError
	if !errors.As(err, &wait) {
		t.Fatalf("got %v, want a wait", err)
	}
	if !wait.Reserved || wait.Reason != "requests" || wait.Deployment != "chat/1" {
		t.Fatalf("wait %+v, want a reserved wait for requests on chat/1", wait)
	}
	if left := wait.Until.Sub(c.Now()); left != 9500*time.Millisecond {
		t.Fatalf("told to come back in %v, want 9.5s (10 s pace less the 0.5 s burst)", left)
	}
	// A third task is told the slot after the second's.
	_, err = paced.GenerateText(provider.WithDeferredWaits(context.Background(), "third"), provider.TextRequest{})
	var third *provider.WaitError
	if !errors.As(err, &third) || third.Until.Sub(wait.Until) != 10*time.Second {
		t.Fatalf("the third task got %v, want the slot 10 s after the second's", err)
	}
	calls := llm.calls
	// Back just before its slot: it sleeps to the slot and runs, taking
	// no new slot.
	c.advance(wait.Until.Sub(c.Now()) - 800*time.Millisecond)
	if _, err := paced.GenerateText(ctx, provider.TextRequest{}); err != nil {
		t.Fatalf("back for its slot: %v", err)
	}
	if llm.calls != calls+1 {
		t.Fatal("the call with a reserved slot was not made")
	}
	if last := c.sleeps()[len(c.sleeps())-1]; last != 800*time.Millisecond {
		t.Fatalf("slept %v to its slot, want 800ms", last)
	}
	if n, _ := rdb.Exists(context.Background(), KeyPrefix+"chat/1:resv:second").Result(); n != 0 {
		t.Fatal("the reservation outlived its use")
	}
}

func TestASynchronousCallWaitsWithinItsDeadlineElseIsToldWhen(t *testing.T) {
	rdb := redistest.Client(t, redistest.URL(t))
	c := newClock()
	d := newController(t, rdb, c).Deployment("openai", Limits{RPM: 60})
	paced := LLM(d, &fakeLLM{})
	deadline := func(d time.Duration) context.Context {
		ctx, cancel := context.WithDeadline(context.Background(), c.Now().Add(d))
		t.Cleanup(cancel)
		return ctx
	}
	if _, err := paced.GenerateText(deadline(10*time.Second), provider.TextRequest{}); err != nil {
		t.Fatal(err)
	}
	// The next slot is 0.5 s on (1 s pace less the 0.5 s burst): within a
	// 10 s deadline it waits; within 100 ms it is told when to come back.
	if _, err := paced.GenerateText(deadline(10*time.Second), provider.TextRequest{}); err != nil {
		t.Fatalf("within its deadline: %v", err)
	}
	_, err := paced.GenerateText(deadline(100*time.Millisecond), provider.TextRequest{})
	var wait *provider.WaitError
	if !errors.As(err, &wait) || wait.Reserved {
		t.Fatalf("got %v, want an unreserved wait", err)
	}
	if until := wait.Until.Sub(c.Now()); until <= 100*time.Millisecond || until > 2*time.Second {
		t.Fatalf("told to wait %v", until)
	}
}

func TestConcurrentCallsAreBoundedAndLeasesComeBack(t *testing.T) {
	rdb := redistest.Client(t, redistest.URL(t))
	c := newClock()
	d := newController(t, rdb, c).Deployment("ollama", Limits{Concurrent: 2})
	ctx := provider.WithDeferredWaits(context.Background(), "t")
	var leases []lease
	for range 2 {
		l, err := d.acquire(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		leases = append(leases, l)
	}
	_, err := d.acquire(ctx, 0)
	var wait *provider.WaitError
	if !errors.As(err, &wait) || wait.Reason != "concurrency" {
		t.Fatalf("a third call at once: %v, want a wait for concurrency", err)
	}
	d.settle(ctx, leases[0], 0)
	if _, err := d.acquire(ctx, 0); err != nil {
		t.Fatalf("after one lease came back: %v", err)
	}
	// A lease never returned (its worker was killed) expires by itself.
	c.advance(11 * time.Minute)
	if _, err := d.acquire(ctx, 0); err != nil {
		t.Fatalf("after the leases expired: %v", err)
	}
}

func TestATokensLimitIsChargedTheEstimateAndCorrected(t *testing.T) {
	rdb := redistest.Client(t, redistest.URL(t))
	c := newClock()
	d := newController(t, rdb, c).Deployment("chat/1", Limits{TPM: 6000}) // 100 tokens a second
	llm := &fakeLLM{usage: 100}
	paced := LLM(d, llm)
	ctx := provider.WithDeferredWaits(context.Background(), "t")
	// run makes one call, coming back for its reserved slot as a queued
	// task would.
	run := func() {
		t.Helper()
		for range 3 {
			_, err := paced.GenerateText(ctx, provider.TextRequest{MaxTokens: 1000})
			var w *provider.WaitError
			if !errors.As(err, &w) {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if w.Reason != "tokens" {
				t.Fatalf("waited for %s, want tokens", w.Reason)
			}
			c.advance(w.Until.Sub(c.Now()))
		}
		t.Fatal("no call after three waits")
	}
	start := c.Now()
	// Each call is estimated at 1000 tokens (max_tokens) but reports 100:
	// corrected, the budget paces 100-token calls, one a second.
	for range 5 {
		run()
	}
	if took := c.Now().Sub(start); took > 5*time.Second {
		t.Fatalf("5 calls of 100 tokens at 100 tokens/s took %v; the estimates were not corrected", took)
	}
	// Calls that use their 1000 tokens are paced 10 s apart.
	llm.usage = 1000
	c.advance(time.Minute) // a full budget again
	start = c.Now()
	for range 3 {
		run()
	}
	if took := c.Now().Sub(start); took < 19*time.Second || took > 21*time.Second {
		t.Fatalf("3 calls of 1000 tokens at 100 tokens/s took %v, want about 19.5 s", took)
	}
}

// limitedServer answers like a provider that says its limits, and 429s
// with Retry-After when told to.
func limitedServer(t *testing.T, refuse *bool) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-ratelimit-limit-requests", "120")
		w.Header().Set("x-ratelimit-remaining-requests", "119")
		if *refuse {
			w.Header().Set("retry-after-ms", "3000")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// twoProcesses is the deployment named as two processes on one Redis see it.
func twoProcesses(t *testing.T, c *clock, name string) (one, other *Deployment) {
	t.Helper()
	url := redistest.URL(t)
	one = newController(t, redistest.Client(t, url), c).Deployment(name, Limits{})
	other = newController(t, redistest.Client(t, url), c).Deployment(name, Limits{})
	return one, other
}

func TestLimitsAreLearnedFromTheProviderAndSharedWithOtherProcesses(t *testing.T) {
	c := newClock()
	one, other := twoProcesses(t, c, "openai")
	refuse := false
	srv := limitedServer(t, &refuse)
	res, err := one.Client(nil).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if got := one.learnedRPM.Load(); got != 120 {
		t.Fatalf("learned %d rpm, want 120", got)
	}
	c.advance(2 * time.Second) // past the other's refresh
	if !other.limited(c.Now()) || other.learnedRPM.Load() != 120 {
		t.Fatal("another process did not see the learned limit")
	}
	// A 429 pauses the deployment for every process, for its Retry-After.
	refuse = true
	res, err = one.Client(nil).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	ctx := provider.WithDeferredWaits(context.Background(), "t")
	_, err = other.acquire(ctx, 0)
	var wait *provider.WaitError
	if !errors.As(err, &wait) || wait.Reason != "provider" {
		t.Fatalf("after a 429 another process got %v, want a wait for the provider", err)
	}
	if left := wait.Until.Sub(c.Now()); left < 2500*time.Millisecond || left > 3500*time.Millisecond {
		t.Fatalf("paused %v, want about the 3 s the provider asked", left)
	}
}

func TestAProviders429IsAWaitNotAFailure(t *testing.T) {
	rdb := redistest.Client(t, redistest.URL(t))
	c := newClock()
	d := newController(t, rdb, c).Deployment("openai", Limits{})
	refused := &provider.Error{Provider: "openai", Kind: provider.KindRateLimited, StatusCode: 429, RetryAfter: 10 * time.Second}
	llm := &fakeLLM{err: refused}
	paced := LLM(d, llm)
	_, err := paced.GenerateText(provider.WithDeferredWaits(context.Background(), "t"), provider.TextRequest{})
	var wait *provider.WaitError
	if !errors.As(err, &wait) || wait.Reason != "provider" {
		t.Fatalf("a queued task's 429 gave %v, want a wait", err)
	}
	// A synchronous call with time left waits out a short 429 in place.
	refused.RetryAfter = time.Second
	llm.err = refused
	ctx, cancel := context.WithDeadline(context.Background(), c.Now().Add(time.Minute))
	defer cancel()
	if _, err := paced.GenerateText(ctx, provider.TextRequest{}); err != nil {
		t.Fatalf("a synchronous call with a minute left: %v", err)
	}
	if llm.calls != 3 {
		t.Fatalf("%d calls, want 3 (refused, refused, answered)", llm.calls)
	}
}

func TestAnUnlimitedDeploymentCostsNoRoundTrip(t *testing.T) {
	url := redistest.URL(t)
	rdb := redistest.Client(t, url)
	var trips redistest.RoundTrips
	rdb.AddHook(&trips)
	c := newClock()
	ctl := newController(t, rdb, c)
	free := LLM(ctl.Deployment("free", Limits{}), &fakeLLM{})
	limited := LLM(ctl.Deployment("limited", Limits{RPM: 6000}), &fakeLLM{})
	ctx := provider.WithDeferredWaits(context.Background(), "t")
	_, _ = free.GenerateText(ctx, provider.TextRequest{})    // its first look in Redis
	_, _ = limited.GenerateText(ctx, provider.TextRequest{}) // loads the script (EVALSHA, then EVAL)
	trips.Reset()
	for range 10 {
		if _, err := free.GenerateText(ctx, provider.TextRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := trips.Count(); n != 0 {
		t.Fatalf("10 unlimited calls cost %d round trips, want 0", n)
	}
	for range 10 {
		if _, err := limited.GenerateText(ctx, provider.TextRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := trips.Count(); n != 10 {
		t.Fatalf("10 calls under a requests limit cost %d round trips, want 10 (one each)", n)
	}
}

// stillClock is a clock whose sleeps are recorded but take no time, so
// that many calls can ask at one instant.
type stillClock struct{ clock }

func (c *stillClock) Sleep(_ context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.slept = append(c.slept, d)
	return nil
}

func TestAKeysBurstTakesItsShareAndAnotherKeysTaskGoesSoon(t *testing.T) {
	rdb := redistest.Client(t, redistest.URL(t))
	c := &stillClock{clock: clock{now: time.Now()}}
	ctl := New(rdb, Config{Now: c.Now, Sleep: c.Sleep, MaxWait: time.Hour, SleepMax: 2 * time.Second, Burst: 500 * time.Millisecond, Share: time.Second})
	d := ctl.Deployment("chat/1", Limits{RPM: 60}) // one call a second
	as := func(key, id string) context.Context {
		return provider.WithFlowKey(provider.WithDeferredWaits(context.Background(), id), key)
	}
	// Key A's burst of 30 at one instant: two go (the burst, and the
	// slot within A's one second of share), the others are told to come
	// back one after another, about when their turn comes.
	ran, backs := 0, []time.Duration{}
	for i := range 30 {
		_, err := d.acquire(as("A", "a"+strconv.Itoa(i)), 0)
		var w *provider.WaitError
		switch {
		case err == nil:
			ran++
		case errors.As(err, &w) && !w.Reserved:
			backs = append(backs, w.Until.Sub(c.Now()))
		default:
			t.Fatalf("task %d: %v", i, err)
		}
	}
	if ran != 2 || len(backs) != 28 {
		t.Fatalf("%d ran and %d were sent back, want 2 and 28", ran, len(backs))
	}
	for i := 1; i < len(backs); i++ {
		if backs[i] < backs[i-1] {
			t.Fatalf("come-back times out of order: %v", backs)
		}
	}
	if first, last := backs[0], backs[len(backs)-1]; first > 2*time.Second || last < 25*time.Second || last > 30*time.Second {
		t.Fatalf("A's tasks come back from %v to %v; want from about now to about 27 s, spread, not all at once", first, last)
	}
	// Ten seconds on, A's next tasks are back for their turns; key B's one
	// task goes about a second later, not behind A's 30.
	c.advance(10 * time.Second)
	for i := range 3 {
		_, _ = d.acquire(as("A", "a"+strconv.Itoa(i+2)), 0)
	}
	before := len(c.sleeps())
	if _, err := d.acquire(as("B", "b1"), 0); err != nil {
		t.Fatalf("B's task: %v", err)
	}
	var waited time.Duration
	for _, s := range c.sleeps()[before:] {
		waited += s
	}
	if waited > 1500*time.Millisecond {
		t.Fatalf("B's task waited %v behind A's burst, want at most 1.5 s", waited)
	}
}

// While two keys wait for a saturated deployment, a key of weight 3 has
// its turns three times as often as a key of weight 1.
func TestAWeightedKeyGetsItsWeightOfASaturatedDeployment(t *testing.T) {
	rdb := redistest.Client(t, redistest.URL(t))
	c := &stillClock{clock: clock{now: time.Now()}}
	ctl := New(rdb, Config{Now: c.Now, Sleep: c.Sleep, MaxWait: time.Hour, SleepMax: 2 * time.Second, Burst: 500 * time.Millisecond, Share: time.Second})
	d := ctl.Deployment("chat/1", Limits{RPM: 60}) // one call a second
	// burst sends n tasks of key at one instant and returns when those
	// without a slot were told to come back.
	burst := func(key string, weight, n int, round string) (backs []time.Duration) {
		for i := range n {
			ctx := provider.WithFlowKey(provider.WithDeferredWaits(context.Background(), key+round+strconv.Itoa(i)), key)
			_, err := d.acquire(provider.WithFlowWeight(ctx, weight), 0)
			var w *provider.WaitError
			switch {
			case err == nil || (errors.As(err, &w) && w.Reserved):
			case errors.As(err, &w):
				backs = append(backs, w.Until.Sub(c.Now()))
			default:
				t.Fatalf("%s's task %d: %v", key, i, err)
			}
		}
		return backs
	}
	// gap is the time between two turns, over the last ten tickets.
	gap := func(backs []time.Duration) time.Duration {
		if len(backs) < 11 {
			t.Fatalf("too few tickets: %v", backs)
		}
		last := backs[len(backs)-11:]
		return (last[10] - last[0]) / 10
	}
	burst("heavy", 3, 20, "a")
	light := gap(burst("light", 1, 20, "a")) // both have tickets out
	heavy := gap(burst("heavy", 3, 20, "b")) // still both
	if ratio := float64(light) / float64(heavy); ratio < 2.7 || ratio > 3.3 {
		t.Fatalf("light's turns come every %v and heavy's every %v (ratio %.2f), want 3", light, heavy, ratio)
	}
	// Unweighted, the same two keys take turns evenly.
	d2 := ctl.Deployment("chat/2", Limits{RPM: 60})
	d = d2
	burst("one", 1, 20, "a")
	first := gap(burst("two", 1, 20, "a"))
	second := gap(burst("one", 1, 20, "b"))
	if first != second {
		t.Fatalf("unweighted keys' turns come every %v and %v, want the same", first, second)
	}
}

func TestALearnedLimitBelowTheConfiguredOneWins(t *testing.T) {
	rdb := redistest.Client(t, redistest.URL(t))
	c := newClock()
	d := newController(t, rdb, c).Deployment("openai", Limits{RPM: 6000}) // configured: 100 a second
	d.Learn(http.StatusOK, provider.RateLimit{LimitRequests: 60, RemainingRequests: -1, RemainingTokens: -1})
	paced := LLM(d, &fakeLLM{})
	ctx := provider.WithDeferredWaits(context.Background(), "t")
	start := c.Now()
	for range 3 {
		if _, err := paced.GenerateText(ctx, provider.TextRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	// At the provider's 60 a minute: the first at once, the next two a
	// second apart less the 0.5 s burst; at 6,000 they would all go at once.
	if got := c.Now().Sub(start); got != 1500*time.Millisecond {
		t.Fatalf("3 calls took %v of the clock, want 1.5s (the provider's 60 rpm)", got)
	}
}
