package auth

import (
	"context"
	"fmt"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// Limiter bounds each key's requests per second, in Redis, so that every
// API instance counts against the same budget (GCRA, one round trip).
type Limiter struct {
	limiter    *redis_rate.Limiter
	defaultRPS int
}

// NewLimiter returns a limiter allowing defaultRPS to keys without a rate
// of their own.
func NewLimiter(rdb redis.UniversalClient, defaultRPS int) *Limiter {
	return &Limiter{limiter: redis_rate.NewLimiter(rdb), defaultRPS: defaultRPS}
}

// Decision is the limiter's answer for one request.
type Decision struct {
	Allowed    bool
	Limit      int           // requests per second
	Burst      int           // requests allowed at once
	Remaining  int           // requests left in the burst now
	RetryAfter time.Duration // when Allowed is false: until one more is allowed
	ResetAfter time.Duration // until the burst is full again
}

// Allow counts one request of caller.
func (l *Limiter) Allow(ctx context.Context, c Caller) (Decision, error) {
	rps := c.RequestsPerSecond
	if rps <= 0 {
		rps = l.defaultRPS
	}
	limit := redis_rate.Limit{Rate: rps, Burst: 2 * rps, Period: time.Second}
	res, err := l.limiter.Allow(ctx, "siganteng:rate:"+c.KeyID, limit)
	if err != nil {
		return Decision{}, fmt.Errorf("auth: rate limit: %w", err)
	}
	return Decision{Allowed: res.Allowed > 0, Limit: rps, Burst: limit.Burst, Remaining: res.Remaining,
		RetryAfter: res.RetryAfter, ResetAfter: res.ResetAfter}, nil
}
