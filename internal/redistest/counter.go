package redistest

import (
	"context"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// RoundTrips is a go-redis hook that counts round trips to Redis: one per
// command, one per pipeline or transaction, however many commands it holds.
type RoundTrips struct{ n, cmds atomic.Int64 }

var _ redis.Hook = (*RoundTrips)(nil)

// Count returns the round trips so far.
func (r *RoundTrips) Count() int64 { return r.n.Load() }

// Commands returns the commands sent so far, each command of a pipeline
// counted.
func (r *RoundTrips) Commands() int64 { return r.cmds.Load() }

// Reset starts counting again from zero.
func (r *RoundTrips) Reset() { r.n.Store(0); r.cmds.Store(0) }

// DialHook implements redis.Hook.
func (r *RoundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook implements redis.Hook.
func (r *RoundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.n.Add(1)
		r.cmds.Add(1)
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook implements redis.Hook.
func (r *RoundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.n.Add(1)
		r.cmds.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}
