package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis keys: one hash per API key, and the sets of every key id and of the
// ids not revoked.
const (
	recordPrefix = "{siganteng}:apikey:"
	allKeys      = "{siganteng}:apikeys"
	activeKeys   = "{siganteng}:apikeys:active"
)

// CacheTTL is how long an API instance trusts what it read of a key: a
// revoked key stops working everywhere within it, and the keys' existence,
// which decides whether the API is open, is rechecked as often.
const CacheTTL = 5 * time.Second

// ErrInvalid is returned for a well-formed key that is unknown, revoked or
// wrong; the three are not told apart to the client.
var ErrInvalid = errors.New("auth: the API key is not valid (unknown or revoked)")

// ErrNotFound is returned by Revoke for an unknown id.
var ErrNotFound = errors.New("auth: no such key")

// Record is what is stored of a key: never the key itself.
type Record struct {
	ID                string
	Name              string
	Admin             bool
	CreatedAt         time.Time
	RevokedAt         *time.Time
	RequestsPerSecond int      // 0: the server's default
	MaxUnfinished     int      // 0: the server's default
	DailyTokens       int64    // input plus output tokens a UTC day; 0: no budget
	DailyCostUSD      float64  // estimated dollars a UTC day; 0: no budget
	Models            []string // routed models the key may use; empty: all
	HighPriority      bool     // may submit priority high work
	MaxSync           int      // synchronous calls at once; 0: the server's default
	MaxWaiting        int      // event streams and Prefer: wait at once; 0: the server's default
	ShareWeight       int      // weight of its share of a saturated deployment; 0: 1
	hash              string
}

// Settings are what a key may do.
type Settings struct {
	Admin             bool
	RequestsPerSecond int
	MaxUnfinished     int
	DailyTokens       int64
	DailyCostUSD      float64
	Models            []string
	HighPriority      bool
	MaxSync           int
	MaxWaiting        int
	ShareWeight       int
}

// Store keeps keys in Redis, shared by every API instance.
type Store struct {
	rdb redis.UniversalClient
	now func() time.Time

	mu      sync.Mutex
	cache   map[string]cached
	anyKeys cachedBool
}

type cached struct {
	rec     *Record // nil: no such key
	expires time.Time
}

type cachedBool struct {
	value   bool
	expires time.Time
}

// NewStore returns a store on rdb.
func NewStore(rdb redis.UniversalClient) *Store {
	return &Store{rdb: rdb, now: time.Now, cache: map[string]cached{}}
}

// Create makes a key and returns it in full, the only time it is seen.
func (s *Store) Create(ctx context.Context, name string, set Settings) (string, Record, error) {
	raw, key, err := NewKey()
	if err != nil {
		return "", Record{}, fmt.Errorf("auth: make key: %w", err)
	}
	rec := Record{ID: key.ID, Name: name, Admin: set.Admin, CreatedAt: s.now().UTC(), RequestsPerSecond: set.RequestsPerSecond,
		MaxUnfinished: set.MaxUnfinished, DailyTokens: set.DailyTokens, DailyCostUSD: set.DailyCostUSD, Models: set.Models, HighPriority: set.HighPriority,
		MaxSync: set.MaxSync, MaxWaiting: set.MaxWaiting, ShareWeight: set.ShareWeight, hash: key.hash}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, recordPrefix+rec.ID, "id", rec.ID, "name", name, "admin", set.Admin, "hash", key.hash,
			"created_at", rec.CreatedAt.Format(time.RFC3339Nano), "rps", set.RequestsPerSecond, "max_unfinished", set.MaxUnfinished,
			"daily_tokens", set.DailyTokens, "daily_cost_usd", set.DailyCostUSD, "models", strings.Join(set.Models, ","), "high_priority", set.HighPriority,
			"max_sync", set.MaxSync, "max_waiting", set.MaxWaiting, "share_weight", set.ShareWeight)
		p.SAdd(ctx, allKeys, rec.ID)
		p.SAdd(ctx, activeKeys, rec.ID)
		return nil
	})
	if err != nil {
		return "", Record{}, fmt.Errorf("auth: store key: %w", err)
	}
	return raw, rec, nil
}

// List returns every key, revoked ones included, oldest first.
func (s *Store) List(ctx context.Context) ([]Record, error) {
	ids, err := s.rdb.SMembers(ctx, allKeys).Result()
	if err != nil {
		return nil, fmt.Errorf("auth: list keys: %w", err)
	}
	out := make([]Record, 0, len(ids))
	for _, id := range ids {
		rec, err := s.read(ctx, id)
		if err != nil {
			return nil, err
		}
		if rec != nil {
			out = append(out, *rec)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}

// Revoke ends a key. Instances that read it less than CacheTTL ago accept
// it until then.
func (s *Store) Revoke(ctx context.Context, id string) error {
	rec, err := s.read(ctx, id)
	if err != nil {
		return err
	}
	if rec == nil {
		return ErrNotFound
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSetNX(ctx, recordPrefix+id, "revoked_at", s.now().UTC().Format(time.RFC3339Nano))
		p.SRem(ctx, activeKeys, id)
		return nil
	})
	if err != nil {
		return fmt.Errorf("auth: revoke %s: %w", id, err)
	}
	s.mu.Lock()
	delete(s.cache, id)
	s.mu.Unlock()
	return nil
}

// Any reports whether any key is active; while none is, the API is open.
func (s *Store) Any(ctx context.Context) (bool, error) {
	now := s.now()
	s.mu.Lock()
	c := s.anyKeys
	s.mu.Unlock()
	if now.Before(c.expires) {
		return c.value, nil
	}
	n, err := s.rdb.SCard(ctx, activeKeys).Result()
	if err != nil {
		return false, fmt.Errorf("auth: count keys: %w", err)
	}
	s.mu.Lock()
	s.anyKeys = cachedBool{value: n > 0, expires: now.Add(CacheTTL)}
	s.mu.Unlock()
	return n > 0, nil
}

// Authenticate returns the caller a key acts as: ErrMalformed for anything
// that is not a key, ErrInvalid for an unknown, revoked or wrong one. The
// key is compared with the stored hash in constant time.
func (s *Store) Authenticate(ctx context.Context, raw string) (Caller, error) {
	key, err := ParseKey(raw)
	if err != nil {
		return Caller{}, err
	}
	rec, err := s.lookup(ctx, key.ID)
	if err != nil {
		return Caller{}, err
	}
	if rec == nil || rec.RevokedAt != nil || subtle.ConstantTimeCompare([]byte(rec.hash), []byte(key.hash)) != 1 {
		return Caller{}, ErrInvalid
	}
	return Caller{KeyID: rec.ID, Name: rec.Name, Admin: rec.Admin, RequestsPerSecond: rec.RequestsPerSecond, MaxUnfinished: rec.MaxUnfinished,
		DailyTokens: rec.DailyTokens, DailyCostUSD: rec.DailyCostUSD, Models: rec.Models, HighPriority: rec.HighPriority,
		MaxSync: rec.MaxSync, MaxWaiting: rec.MaxWaiting, ShareWeight: rec.ShareWeight}, nil
}

// lookup reads a key's record through the cache.
func (s *Store) lookup(ctx context.Context, id string) (*Record, error) {
	now := s.now()
	s.mu.Lock()
	c, ok := s.cache[id]
	s.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.rec, nil
	}
	rec, err := s.read(ctx, id)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if len(s.cache) > 10000 { // ids of wrong keys must not grow it without end
		s.cache = map[string]cached{}
	}
	s.cache[id] = cached{rec: rec, expires: now.Add(CacheTTL)}
	s.mu.Unlock()
	return rec, nil
}

func (s *Store) read(ctx context.Context, id string) (*Record, error) {
	h, err := s.rdb.HGetAll(ctx, recordPrefix+id).Result()
	if err != nil {
		return nil, fmt.Errorf("auth: read key %s: %w", id, err)
	}
	if len(h) == 0 {
		return nil, nil
	}
	rec := &Record{ID: h["id"], Name: h["name"], Admin: h["admin"] == "1", HighPriority: h["high_priority"] == "1", hash: h["hash"]}
	rec.CreatedAt, _ = time.Parse(time.RFC3339Nano, h["created_at"])
	if v := h["revoked_at"]; v != "" {
		t, _ := time.Parse(time.RFC3339Nano, v)
		rec.RevokedAt = &t
	}
	rec.RequestsPerSecond, _ = strconv.Atoi(h["rps"])
	rec.MaxUnfinished, _ = strconv.Atoi(h["max_unfinished"])
	rec.MaxSync, _ = strconv.Atoi(h["max_sync"])
	rec.MaxWaiting, _ = strconv.Atoi(h["max_waiting"])
	rec.ShareWeight, _ = strconv.Atoi(h["share_weight"])
	rec.DailyTokens, _ = strconv.ParseInt(h["daily_tokens"], 10, 64)
	rec.DailyCostUSD, _ = strconv.ParseFloat(h["daily_cost_usd"], 64)
	if v := h["models"]; v != "" {
		rec.Models = strings.Split(v, ",")
	}
	return rec, nil
}
