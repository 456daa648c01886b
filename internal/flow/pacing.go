package flow

import (
	"context"
	"sync"
	"time"
)

// Pacing a provider that says nothing of its limits but a 429's
// Retry-After (gateways, Hugging Face, Azure OpenAI's requests limit): the
// limit is found the way TCP finds a link's rate. The first such 429
// gives a first estimate: the calls the provider took from this process in
// the burst before it, times the processes that called the deployment then
// (each process's look for learned limits, once a second, says it calls
// it; asynq spreads tasks evenly over worker processes). Several processes
// refused at once give the mean of their estimates. From then on the
// deployment is paced at that rate ("paced rpm"), which grows a little
// each second it is met (scripts.go, acquire) and is cut by a share at
// each later 429. Its state is in the deployment's hash in Redis, shared
// like a learned limit.
const (
	// trafficWindow is how far back a process counts its calls.
	trafficWindow = 10 * time.Second
	// estimateDelay lets the refusals of a burst arrive before a process
	// counts what the provider took of it.
	estimateDelay = 500 * time.Millisecond
	// estimateWindow is how long after the first 429 other processes'
	// estimates are added to it: the same refusal, seen by each.
	estimateWindow = 2 * time.Second
	// cutGap is the least time between two cuts: 429s to calls sent
	// before a cut took effect (a second's pause, calls in flight, the
	// burst let through after it) say nothing new.
	cutGap = 2 * time.Second
	// cutShare is what a cut keeps of the paced rate, and growShare what
	// each second it is met adds to it.
	cutShare  = 0.85
	growShare = 0.03
	// momentary is the shortest wait a 429 must ask for to be taken for
	// a spent budget: one asking for less (retry-after-ms: 50) says the
	// refusal is momentary, and pacing a provider that refuses calls now
	// and then, whatever the rate, would cut it down to a crawl; such a
	// 429 pauses the deployment, as before.
	momentary = time.Second
)

// traffic counts one process's calls to a deployment, and those refused,
// over the last trafficWindow, one bucket a second.
type traffic struct {
	mu      sync.Mutex
	began   time.Time // the first call since a second without any
	last    time.Time
	buckets [10]struct{ sec, started, refused int64 }
}

// sent counts a call sent at now.
func (t *traffic) sent(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.last.IsZero() || now.Sub(t.last) > time.Second {
		t.began = now // a burst after a quiet second is measured by itself
	}
	t.last = now
	b := t.bucket(now)
	b.started++
}

// refused counts a 429 to a call sent at sent, in the second it was sent,
// so that a burst's refusals, which arrive after it, are set against it.
func (t *traffic) refused(sent time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if b := &t.buckets[sent.Unix()%int64(len(t.buckets))]; b.sec == sent.Unix() {
		b.refused++
	}
}

func (t *traffic) bucket(at time.Time) *struct{ sec, started, refused int64 } {
	sec := at.Unix()
	b := &t.buckets[sec%int64(len(t.buckets))]
	if b.sec != sec {
		b.sec, b.started, b.refused = sec, 0, 0
	}
	return b
}

// perMinute is the rate of calls the provider took up to at: those sent
// less those refused, over the time since the first of them (at least a
// second, at most the window).
func (t *traffic) perMinute(at time.Time) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.last.IsZero() {
		return 0
	}
	from := t.began
	if w := at.Add(-trafficWindow); from.Before(w) {
		from = w
	}
	var took int64
	for _, b := range t.buckets {
		if b.sec > from.Unix()-1 && b.sec <= at.Unix() {
			took += b.started - b.refused
		}
	}
	span := max(at.Sub(from), time.Second)
	return max(int64(float64(took)*float64(time.Minute)/float64(span)), 0)
}

// pace is told of a 429 that said nothing of the provider's limits: the
// first starts an estimate of its rate, a later one cuts the paced rate.
func (d *Deployment) pace(now time.Time) {
	last := d.pacedAt.Load()
	if now.UnixMilli()-last < cutGap.Milliseconds() || !d.pacedAt.CompareAndSwap(last, now.UnixMilli()) {
		return
	}
	if d.pacedRPM.Load() > 0 {
		d.tellPace(now, 0)
		return
	}
	// The estimate waits for the burst's other refusals; until then the
	// deployment is paused by the 429 itself.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), estimateDelay+time.Second)
		defer cancel()
		if d.c.cfg.Sleep(ctx, estimateDelay) != nil {
			return
		}
		d.tellPace(now, d.traffic.perMinute(now))
	}()
}

// tellPace runs the pacing script: an estimate (rpm > 0) or a cut.
func (d *Deployment) tellPace(at time.Time, rpm int64) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	paced, err := paceScript.Run(ctx, d.c.rdb, []string{d.key, d.key + ":estimates", d.key + ":callers"}, d.c.id, at.UnixMilli(), rpm,
		estimateWindow.Milliseconds(), cutGap.Milliseconds(), cutShare).Int64()
	if err != nil {
		d.c.cfg.Log.Warn("flow control could not share the pace it learned from a 429", "deployment", d.name, "err", err)
		return
	}
	if paced > 0 {
		d.pacedRPM.Store(paced)
	}
}
