package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// StoredPrefix starts the keys that count the bytes an owner keeps in the
// artifact store (uploads waiting for their task, results waiting to be
// read): a sorted set of artifact keys scored by when they expire, and a
// hash of their sizes with the total under "_total".
const StoredPrefix = "{siganteng}:stored:"

// ErrStorageQuota is returned by Charge when the owner would keep more
// bytes than its quota.
var ErrStorageQuota = errors.New("store: storage quota reached")

func storedKeys(owner string) []string {
	return []string{StoredPrefix + owner + ":expiry", StoredPrefix + owner + ":bytes"}
}

// storedLua defines release_expired(now), which forgets the owner's
// artifacts whose time has passed (the artifact sweep deletes their files).
const storedLua = `
local function release_expired(now)
  local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
  for _, m in ipairs(gone) do
    local size = redis.call('HGET', KEYS[2], m)
    if size then
      redis.call('HINCRBY', KEYS[2], '_total', -tonumber(size))
      redis.call('HDEL', KEYS[2], m)
    end
  end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) end
  return tonumber(redis.call('HGET', KEYS[2], '_total') or '0')
end
`

// chargeScript counts an artifact against its owner's quota.
//
// ARGV[1] now in ms, ARGV[2] artifact key, ARGV[3] size, ARGV[4] quota
// (0: count only, never refuse), ARGV[5] expiry in ms.
// Returns the total after the charge, or -1 when it would pass the quota.
var chargeScript = redis.NewScript(storedLua + `
local total = release_expired(ARGV[1])
local size = tonumber(ARGV[3])
if ARGV[4] ~= '0' and total + size > tonumber(ARGV[4]) then return -1 end
local old = redis.call('HGET', KEYS[2], ARGV[2])
if old then size = size - tonumber(old) end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[5], ARGV[2])
total = redis.call('HINCRBY', KEYS[2], '_total', size)
redis.call('PEXPIREAT', KEYS[1], ARGV[5])
redis.call('PEXPIREAT', KEYS[2], ARGV[5])
return total
`)

// releaseScript forgets one artifact. ARGV[1] now in ms, ARGV[2] its key.
var releaseScript = redis.NewScript(storedLua + `
local size = redis.call('HGET', KEYS[2], ARGV[2])
if size then
  redis.call('HINCRBY', KEYS[2], '_total', -tonumber(size))
  redis.call('HDEL', KEYS[2], ARGV[2])
  redis.call('ZREM', KEYS[1], ARGV[2])
end
return release_expired(ARGV[1])
`)

// storedScript answers the owner's total. ARGV[1] now in ms.
var storedScript = redis.NewScript(storedLua + `return release_expired(ARGV[1])`)

// Charge counts size bytes under artifact key against owner's quota, until
// expires. With quota > 0, a charge that would pass it is refused with
// ErrStorageQuota and nothing is counted; quota 0 counts without refusing
// (a result the worker has already made). Charging a key again replaces
// its size. Owners are API key ids; "" (an open API) is not counted.
func (s *Store) Charge(ctx context.Context, owner, key string, size, quota int64, expires, now time.Time) error {
	if owner == "" {
		return nil
	}
	n, err := chargeScript.Run(ctx, s.rdb, storedKeys(owner), now.UnixMilli(), key, size, quota, expires.UnixMilli()).Int64()
	switch {
	case err != nil:
		return fmt.Errorf("store: charge %s: %w", key, err)
	case n < 0:
		return ErrStorageQuota
	}
	return nil
}

// Uncharge stops counting artifact key against owner, once it is deleted.
func (s *Store) Uncharge(ctx context.Context, owner, key string, now time.Time) error {
	if owner == "" {
		return nil
	}
	if err := releaseScript.Run(ctx, s.rdb, storedKeys(owner), now.UnixMilli(), key).Err(); err != nil {
		return fmt.Errorf("store: release %s: %w", key, err)
	}
	return nil
}

// Stored is how many bytes owner keeps in the artifact store now.
func (s *Store) Stored(ctx context.Context, owner string, now time.Time) (int64, error) {
	if owner == "" {
		return 0, nil
	}
	n, err := storedScript.Run(ctx, s.rdb, storedKeys(owner), now.UnixMilli()).Int64()
	if err != nil {
		return 0, fmt.Errorf("store: stored bytes of %s: %w", owner, err)
	}
	return n, nil
}
