package routing

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// breakerPrefix starts the key of each deployment's breaker: a hash of its
// failures in a row and the time it is skipped until, shared by every worker.
const breakerPrefix = "{siganteng}:breaker:"

// cacheFor is how long a worker trusts what it last read of the breakers:
// reading them costs one pipelined round trip a second, not one per call,
// and a breaker opened by another worker is seen within that second.
const cacheFor = time.Second

// breakerKeyTTL lets the hash of a deployment no longer in the file go away.
const breakerKeyTTL = 24 * time.Hour

// failScript counts a failure and opens the breaker at the threshold. A
// breaker whose cool-down has passed keeps its count, so its next failure
// opens it again at once (half-open); a success resets it.
//
// ARGV[1] threshold, ARGV[2] open until (ms), ARGV[3] key TTL (ms)
// Returns {failures, open until in ms or 0}.
var failScript = redis.NewScript(`
local f = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if f >= tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'open_until', ARGV[2]) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {f, tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')}
`)

// BreakerState is one deployment's breaker as last read.
type BreakerState struct {
	Failures  int
	OpenUntil time.Time
}

// Open reports whether the deployment is skipped at now.
func (s BreakerState) Open(now time.Time) bool { return now.Before(s.OpenUntil) }

// Breakers are the circuit breakers of a set of deployments.
type Breakers struct {
	rdb      redis.UniversalClient
	settings BreakerSettings
	ids      []string
	now      func() time.Time

	mu     sync.Mutex
	state  map[string]BreakerState
	readAt time.Time
}

// NewBreakers returns the breakers of the deployments ids.
func NewBreakers(rdb redis.UniversalClient, settings BreakerSettings, ids []string, now func() time.Time) *Breakers {
	if now == nil {
		now = time.Now
	}
	return &Breakers{rdb: rdb, settings: settings, ids: ids, now: now, state: map[string]BreakerState{}}
}

// States returns every breaker, read from Redis when the copy in hand is
// older than a second. When Redis cannot be read, the last copy is used:
// a breaker must never stop work on its own.
func (b *Breakers) States(ctx context.Context) map[string]BreakerState {
	b.mu.Lock()
	fresh := b.now().Sub(b.readAt) < cacheFor
	b.mu.Unlock()
	if !fresh {
		b.refresh(ctx)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]BreakerState, len(b.state))
	for id, s := range b.state {
		out[id] = s
	}
	return out
}

func (b *Breakers) refresh(ctx context.Context) {
	cmds := make([]*redis.SliceCmd, len(b.ids))
	_, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range b.ids {
			cmds[i] = p.HMGet(ctx, breakerPrefix+id, "failures", "open_until")
		}
		return nil
	})
	if err != nil {
		return
	}
	state := make(map[string]BreakerState, len(b.ids))
	for i, id := range b.ids {
		vals := cmds[i].Val()
		var s BreakerState
		if len(vals) == 2 {
			s.Failures, _ = strconv.Atoi(str(vals[0]))
			if ms, _ := strconv.ParseInt(str(vals[1]), 10, 64); ms > 0 {
				s.OpenUntil = time.UnixMilli(ms)
			}
		}
		state[id] = s
	}
	b.mu.Lock()
	b.state, b.readAt = state, b.now()
	b.mu.Unlock()
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// Failed counts a transient failure of deployment id, opening its breaker
// at the threshold.
func (b *Breakers) Failed(ctx context.Context, id string) {
	until := b.now().Add(b.settings.Cooldown)
	res, err := failScript.Run(ctx, b.rdb, []string{breakerPrefix + id},
		b.settings.Failures, until.UnixMilli(), breakerKeyTTL.Milliseconds()).Int64Slice()
	if err != nil || len(res) != 2 {
		return // a breaker must never stop work on its own
	}
	s := BreakerState{Failures: int(res[0])}
	if res[1] > 0 {
		s.OpenUntil = time.UnixMilli(res[1])
	}
	b.mu.Lock()
	b.state[id] = s
	b.mu.Unlock()
}

// Succeeded closes deployment id's breaker. It writes only when failures
// were seen, so the common case costs no round trip.
func (b *Breakers) Succeeded(ctx context.Context, id string) {
	b.mu.Lock()
	s := b.state[id]
	b.mu.Unlock()
	if s.Failures == 0 && s.OpenUntil.IsZero() {
		return
	}
	if b.rdb.Del(ctx, breakerPrefix+id).Err() == nil {
		b.mu.Lock()
		b.state[id] = BreakerState{}
		b.mu.Unlock()
	}
}
