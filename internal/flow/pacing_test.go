package flow

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/redistest"
)

func TestTrafficMeasuresWhatTheProviderTookOfTheLatestBurst(t *testing.T) {
	var tr traffic
	t0 := time.Unix(1_000_000, 0)
	tr.sent(t0.Add(-5 * time.Second)) // an earlier call, a quiet second before the burst
	for i := range 60 {
		tr.sent(t0.Add(time.Duration(i) * 5 * time.Millisecond)) // 60 calls in 300 ms
	}
	for i := range 10 {
		tr.refused(t0.Add(time.Duration(50+i) * 5 * time.Millisecond))
	}
	// 50 taken; the burst is younger than a second, so it counts as one.
	if got := tr.perMinute(t0.Add(300 * time.Millisecond)); got != 3000 {
		t.Fatalf("%d a minute, want 3000 (50 taken in the burst's first second)", got)
	}
	// A refusal counts against the second its call was sent in, so one
	// that arrives later still lowers the estimate.
	tr.refused(t0.Add(100 * time.Millisecond))
	if got := tr.perMinute(t0.Add(300 * time.Millisecond)); got != 2940 {
		t.Fatalf("%d a minute, want 2940 after one more refusal", got)
	}
	// Over two seconds of calls, the rate is the calls over the two.
	for i := range 100 {
		tr.sent(t0.Add(time.Second + time.Duration(i)*10*time.Millisecond))
	}
	if got := tr.perMinute(t0.Add(2 * time.Second)); got != (49+100)*30 {
		t.Fatalf("%d a minute, want %d", got, (49+100)*30)
	}
}

// pacedRPM reads the pace the deployment's state in Redis holds.
func pacedRPM(t *testing.T, d *Deployment) int64 {
	t.Helper()
	v, err := d.c.rdb.HGet(context.Background(), d.key, "paced_rpm").Int64()
	if err != nil {
		t.Fatalf("paced_rpm: %v", err)
	}
	return v
}

func TestAPaceIsEstimatedByEveryProcessRefusedThenCutAtEachLater429(t *testing.T) {
	c := newClock()
	one, other := twoProcesses(t, c, "hf")
	// Both processes call the deployment: their looks for learned limits
	// say so.
	if one.limited(c.Now()) || other.limited(c.Now()) {
		t.Fatal("a deployment with nothing learned is limited")
	}
	at := c.Now()
	one.tellPace(at, 3000)
	if got := pacedRPM(t, one); got != 6000 {
		t.Fatalf("paced at %d, want 6000: one process's 3000 times the two calling", got)
	}
	other.tellPace(at.Add(100*time.Millisecond), 2400)
	if got := pacedRPM(t, one); got != 5400 {
		t.Fatalf("paced at %d, want 5400: the mean of 3000 and 2400, times two", got)
	}
	// A 429 within the estimate's window is the same refusal, seen late.
	one.tellPace(at.Add(time.Second), 0)
	if got := pacedRPM(t, one); got != 5400 {
		t.Fatalf("paced at %d after a 429 within the estimate, want 5400", got)
	}
	// Later 429s cut the pace to 85%, at most once every two seconds.
	one.tellPace(at.Add(3*time.Second), 0)
	if got := pacedRPM(t, one); got != 4590 {
		t.Fatalf("paced at %d after a 429, want 4590 (85%%)", got)
	}
	other.tellPace(at.Add(4500*time.Millisecond), 0)
	if got := pacedRPM(t, one); got != 4590 {
		t.Fatalf("paced at %d after a second 429 within two seconds, want 4590", got)
	}
	other.tellPace(at.Add(5100*time.Millisecond), 0)
	if got := pacedRPM(t, one); got != 3901 {
		t.Fatalf("paced at %d, want 3901 after a second cut", got)
	}
	// A provider that states its requests limit is not paced.
	ctx := context.Background()
	if err := one.c.rdb.HSet(ctx, one.key, "rpm", 6000).Err(); err != nil {
		t.Fatal(err)
	}
	one.tellPace(at.Add(8*time.Second), 0)
	if got := pacedRPM(t, one); got != 3901 {
		t.Fatalf("paced at %d, want 3901: a said limit stops the pacing", got)
	}
	// No cut goes below half the estimate.
	if err := one.c.rdb.HDel(ctx, one.key, "rpm").Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		one.tellPace(at.Add(time.Duration(11+3*i)*time.Second), 0)
	}
	if got := pacedRPM(t, one); got != 2700 {
		t.Fatalf("paced at %d after five more cuts, want 2700 (half the estimate)", got)
	}
}

func TestAPacedDeploymentIsPacedAndGrowsWhileSaturated(t *testing.T) {
	rdb := redistest.Client(t, redistest.URL(t))
	c := newClock()
	d := oneKeyController(t, rdb, c).Deployment("hf", Limits{})
	d.limited(c.Now())
	d.tellPace(c.Now(), 600) // one call per 100 ms
	llm := &fakeLLM{}
	paced := LLM(d, llm)
	ctx := provider.WithDeferredWaits(context.Background(), "t")
	start := c.Now()
	call := func(n int) {
		for range n {
			if _, err := paced.GenerateText(ctx, provider.TextRequest{Prompt: "hi"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A burst of 500 ms' worth (6 calls) goes at once, the others at
	// the pace: 12 calls end 600 ms after the first.
	call(12)
	if got := c.Now().Sub(start); got != 600*time.Millisecond {
		t.Fatalf("12 calls took %v of the clock, want 600ms (sleeps %v)", got, c.sleeps())
	}
	if got := pacedRPM(t, d); got != 600 {
		t.Fatalf("paced at %d within a second of the estimate, want 600", got)
	}
	// Met a second after the estimate, it grows by 3% and one.
	call(6)
	if got := pacedRPM(t, d); got != 619 {
		t.Fatalf("paced at %d after a saturated second, want 619", got)
	}
	// Near the pace a 429 last cut, it grows six times slower: 0.5% and one.
	if err := rdb.HSet(context.Background(), d.key, "paced_max", 650).Err(); err != nil {
		t.Fatal(err)
	}
	call(12)
	if got := pacedRPM(t, d); got != 623 {
		t.Fatalf("paced at %d after a met second near the pace last refused, want 623", got)
	}
	if s := d.state(c.Now()); s.PacedRPM == 0 {
		t.Fatalf("state %+v shows no pace", s)
	}
}

// A provider that says nothing but a 429's Retry-After: its first 429
// starts a pace from the calls it took, and the deployment is paced from
// then on, for every process. Momentary refusals, which ask for less than
// a second (retry-after-ms), start none.
func TestA429ThatSaysOnlyRetryAfterStartsAPace(t *testing.T) {
	url := redistest.URL(t)
	ctl := New(redistest.Client(t, url), Config{})
	d := ctl.Deployment("hf", Limits{})
	var (
		n       atomic.Int64
		limited atomic.Bool // refuses past 20; else one in five, for 50 ms
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		if (limited.Load() && i > 20) || (!limited.Load() && i%5 == 0) {
			if !limited.Load() {
				w.Header().Set("retry-after-ms", "50")
			}
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	client := d.Client(nil)
	calls := func(k int) {
		for range k {
			res, err := client.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
		}
	}
	awaitPace := func() int64 {
		deadline := time.Now().Add(2 * time.Second)
		for d.pacedRPM.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		return d.pacedRPM.Load()
	}
	d.limited(time.Now())
	calls(50)
	if got := awaitPace(); got != 0 {
		t.Fatalf("paced at %d after momentary refusals, want none", got)
	}
	// Two quiet seconds on, a new burst: 20 taken, then 30 refused.
	time.Sleep(2 * time.Second)
	n.Store(0)
	limited.Store(true)
	calls(50)
	// 20 taken in well under a second: 1,200 a minute.
	if got := awaitPace(); got != 1200 {
		t.Fatalf("paced at %d, want 1200", got)
	}
	other := New(redistest.Client(t, url), Config{}).Deployment("hf", Limits{})
	if !other.limited(time.Now()) || other.state(time.Now()).PacedRPM != 1200 {
		t.Fatalf("another process sees %+v", other.state(time.Now()))
	}
}
