package store

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// HoldsPrefix starts the keys of one API key's holds of one kind
// (synchronous calls, waiting connections): a sorted set of hold ids
// scored by when each lapses unless renewed, shared by every API process.
const HoldsPrefix = "{siganteng}:holds:"

func holdsKey(kind, owner string) string { return HoldsPrefix + kind + ":" + owner }

// takeHoldScript adds a hold unless the key has limit of them already;
// holds whose lease lapsed (their process died) are dropped first.
//
// ARGV[1] now in ms, ARGV[2] the limit, ARGV[3] the hold's id, ARGV[4]
// when it lapses in ms, ARGV[5] the key's lifetime in ms.
var takeHoldScript = redis.NewScript(`
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[5]) then redis.call('PEXPIRE', KEYS[1], ARGV[5]) end
return 1
`)

// renewHoldScript moves a hold's lapse, and the key's life with it (never
// shortening it: another hold may lapse later).
//
// ARGV[1] the hold's id, ARGV[2] when it lapses in ms, ARGV[3] the lease
// in ms.
var renewHoldScript = redis.NewScript(`
redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
`)

// TakeHold takes one of owner's holds of kind, within limit, for lease; it
// returns false when owner has limit holds already. A hold not released
// nor renewed lapses when its lease ends.
func (s *Store) TakeHold(ctx context.Context, kind, owner, id string, limit int, lease time.Duration, now time.Time) (bool, error) {
	n, err := takeHoldScript.Run(ctx, s.rdb, []string{holdsKey(kind, owner)}, now.UnixMilli(), limit, id,
		now.Add(lease).UnixMilli(), lease.Milliseconds()).Int()
	if err != nil {
		return false, wrap("take a hold", err)
	}
	return n == 1, nil
}

// RenewHold moves a hold's lapse to lease after now.
func (s *Store) RenewHold(ctx context.Context, kind, owner, id string, lease time.Duration, now time.Time) error {
	err := renewHoldScript.Run(ctx, s.rdb, []string{holdsKey(kind, owner)}, id, now.Add(lease).UnixMilli(), lease.Milliseconds()).Err()
	return wrap("renew a hold", err)
}

// ReleaseHold gives a hold back.
func (s *Store) ReleaseHold(ctx context.Context, kind, owner, id string) error {
	return wrap("release a hold", s.rdb.ZRem(ctx, holdsKey(kind, owner), id).Err())
}
