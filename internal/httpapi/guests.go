package httpapi

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// guestLimiter counts, per client address and in this process's memory,
// the requests that carried no valid key, so that a flood of wrong keys is
// refused before each one costs a Redis read. Only refusals (401s) spend
// the budget: a client with a valid key is never slowed by it, unless it
// shares its address with one that floods.
type guestLimiter struct {
	perSecond rate.Limit
	burst     int
	now       func() time.Time

	mu    sync.RWMutex // every request reads; only refusals write
	peers map[string]*rate.Limiter
}

// maxGuestPeers bounds the addresses remembered; past it the table starts
// again, so spoofed or many addresses cannot grow it without end.
const maxGuestPeers = 50_000

// newGuestLimiter allows perSecond refusals per address, in bursts of
// twice that; perSecond <= 0 turns it off.
func newGuestLimiter(perSecond int, now func() time.Time) *guestLimiter {
	if now == nil {
		now = time.Now
	}
	return &guestLimiter{perSecond: rate.Limit(perSecond), burst: 2 * perSecond, now: now, peers: map[string]*rate.Limiter{}}
}

// blocked reports whether ip has spent its budget, and how long until it
// may try again.
func (g *guestLimiter) blocked(ip string) (time.Duration, bool) {
	if g == nil || g.perSecond <= 0 {
		return 0, false
	}
	g.mu.RLock()
	l := g.peers[ip]
	g.mu.RUnlock()
	if l == nil {
		return 0, false
	}
	now := g.now()
	if l.TokensAt(now) >= 1 {
		return 0, false
	}
	return time.Duration(float64(time.Second) / float64(g.perSecond)), true
}

// failed spends one unit of ip's budget.
func (g *guestLimiter) failed(ip string) {
	if g == nil || g.perSecond <= 0 {
		return
	}
	g.mu.Lock()
	l := g.peers[ip]
	if l == nil {
		if len(g.peers) >= maxGuestPeers {
			g.peers = map[string]*rate.Limiter{}
		}
		l = rate.NewLimiter(g.perSecond, g.burst)
		g.peers[ip] = l
	}
	g.mu.Unlock()
	l.AllowN(g.now(), 1)
}
