package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// idempotencyPrefix starts the keys that remember Idempotency-Key headers.
const idempotencyPrefix = "{siganteng}:idem:"

// pendingID marks a key whose first request is still submitting.
const pendingID = "pending"

// Claim takes an idempotency key for a request whose body hashes to hash,
// for ttl. It returns claimed when this request is the first; otherwise the
// hash and task id (or "pending") the key already holds.
func (s *Store) Claim(ctx context.Context, key, hash string, ttl time.Duration) (claimed bool, heldHash, heldID string, err error) {
	ok, err := s.rdb.SetNX(ctx, idempotencyPrefix+key, hash+"|"+pendingID, ttl).Result()
	if err != nil {
		return false, "", "", fmt.Errorf("store: claim idempotency key: %w", err)
	}
	if ok {
		return true, hash, pendingID, nil
	}
	heldHash, heldID, err = s.Held(ctx, key)
	return false, heldHash, heldID, err
}

// Held returns what an idempotency key holds: the body hash and the task id,
// "pending" while the first request is still submitting. A key that expired
// meanwhile holds nothing ("", "").
func (s *Store) Held(ctx context.Context, key string) (hash, id string, err error) {
	v, err := s.rdb.Get(ctx, idempotencyPrefix+key).Result()
	if errors.Is(err, redis.Nil) {
		return "", "", nil
	}
	if err != nil {
		return "", "", fmt.Errorf("store: read idempotency key: %w", err)
	}
	hash, id, _ = strings.Cut(v, "|")
	return hash, id, nil
}

// Settle records the task a claimed key made, keeping the key's expiry.
func (s *Store) Settle(ctx context.Context, key, hash, id string) error {
	if err := s.rdb.SetArgs(ctx, idempotencyPrefix+key, hash+"|"+id, redis.SetArgs{Mode: "XX", KeepTTL: true}).Err(); err != nil {
		return fmt.Errorf("store: settle idempotency key: %w", err)
	}
	return nil
}

// Release frees a claimed key whose request failed, so a retry can go ahead.
func (s *Store) Release(ctx context.Context, key string) error {
	if err := s.rdb.Del(ctx, idempotencyPrefix+key).Err(); err != nil {
		return fmt.Errorf("store: release idempotency key: %w", err)
	}
	return nil
}

// IsPending reports whether an id read from a key is the pending mark.
func IsPending(id string) bool { return id == pendingID }
