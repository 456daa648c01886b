package store

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/siganteng/siganteng/internal/task"
)

// IndexKey is a sorted set of every task id, scored by creation time in
// milliseconds, for listing newest first. Entries outlive their records and
// are removed when a listing or PruneIndex finds the record gone.
const IndexKey = "{siganteng}:tasks"

// The list indexes of one status, one type, and both, beside each of the
// index keys (the global one and each API key's): IndexKey+":status:SUCCESS",
// IndexKey+":type:embed", IndexKey+":status:SUCCESS:type:embed". The scripts
// that create and move a task keep them in the same atomic step, so a
// filtered page reads about as many records as it shows.
const (
	statusIndexInfix = ":status:"
	typeIndexInfix   = ":type:"
	metaIndexInfix   = ":meta:"
)

// indexLua defines scopes(owner): the list index keys a task of owner is
// in (the global one, and its key's).
const indexLua = `
local function scopes(owner)
  local s = {'` + IndexKey + `'}
  if owner and owner ~= '' then s[2] = '` + OwnerIndexPrefix + `' .. owner end
  return s
end
`

// filteredIndex is the index holding exactly the tasks q selects of index;
// with a metadata label, the label's, whose tasks are then checked for the
// status and type.
func filteredIndex(index string, q ListQuery) string {
	switch {
	case q.MetaKey != "":
		return index + metaIndexInfix + q.MetaKey + "=" + q.MetaValue
	case q.Status != "" && q.Type != "":
		return index + statusIndexInfix + string(q.Status) + typeIndexInfix + string(q.Type)
	case q.Status != "":
		return index + statusIndexInfix + string(q.Status)
	case q.Type != "":
		return index + typeIndexInfix + string(q.Type)
	}
	return index
}

// ListQuery selects a page of tasks.
type ListQuery struct {
	// Owner's tasks are listed, or, with All, every task.
	Owner  string
	All    bool
	Status task.Status // "" for any
	Type   task.Type   // "" for any
	// MetaKey and MetaValue select the tasks that carry that label; ""
	// for any.
	MetaKey, MetaValue string
	Limit              int    // page size, at least 1
	Cursor             string // "" for the newest; else a task.Page's NextCursor
}

// maxScan bounds the index entries one listing reads, so that a filter
// matching little cannot make one request read every record.
const maxScan = 1000

// ErrBadCursor is returned by List for a cursor it did not make.
var ErrBadCursor = task.Invalid("cursor", "cursor is not one this API returned")

// List returns a page of tasks, newest first, reading records in batches of
// one pipelined round trip each.
func (s *Store) List(ctx context.Context, q ListQuery) (task.Page, error) {
	pos, err := decodeCursor(q.Cursor)
	if err != nil {
		return task.Page{}, err
	}
	index := IndexKey
	if !q.All {
		index, _ = indexKeys(q.Owner)
	}
	// The filter's own index: its entries are the tasks wanted (a record
	// read is still checked, as it may have moved on since).
	index = filteredIndex(index, q)
	batch := int64(q.Limit + 1)
	var (
		page    task.Page
		scanned int
		offset  int64
		gone    []any
		last    cursor // the last entry looked at
	)
	max := "+inf"
	if pos.set {
		max = strconv.FormatInt(pos.score, 10)
	}
	defer func() {
		if len(gone) > 0 {
			// Best effort: the next listing or PruneIndex tries again.
			_ = s.rdb.ZRem(context.WithoutCancel(ctx), index, gone...).Err()
		}
	}()
	for {
		zs, err := s.rdb.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{
			Key: index, Start: max, Stop: "-inf", ByScore: true, Rev: true, Offset: offset, Count: batch,
		}).Result()
		if err != nil {
			return task.Page{}, fmt.Errorf("store: list: %w", err)
		}
		offset += int64(len(zs))
		var at []cursor
		for _, z := range zs {
			c := cursor{set: true, score: int64(z.Score), id: z.Member.(string)}
			if pos.set && c.score == pos.score && c.id >= pos.id {
				continue // shown on an earlier page
			}
			at = append(at, c)
		}
		ids := make([]string, len(at))
		for i, c := range at {
			ids[i] = c.id
		}
		recs, err := s.getMany(ctx, ids)
		if err != nil {
			return task.Page{}, err
		}
		for i, rec := range recs {
			switch {
			case rec == nil:
				gone = append(gone, ids[i])
			case (q.Status == "" || rec.Status == q.Status) && (q.Type == "" || rec.Type == q.Type) &&
				(q.MetaKey == "" || rec.Metadata[q.MetaKey] == q.MetaValue):
				if len(page.Tasks) == q.Limit {
					// One more than the page holds: there is a next page,
					// which starts after the last task shown.
					page.NextCursor = last.encode()
					return page, nil
				}
				page.Tasks = append(page.Tasks, rec)
			}
			scanned++
			last = at[i]
		}
		if int64(len(zs)) < batch {
			return page, nil // the end of the index
		}
		if scanned >= maxScan {
			page.NextCursor = last.encode()
			return page, nil
		}
	}
}

// getMany reads records in one pipelined round trip; a missing one is nil.
func (s *Store) getMany(ctx context.Context, ids []string) ([]*task.Record, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGetAll(ctx, key(id))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: list: %w", err)
	}
	recs := make([]*task.Record, len(ids))
	for i, c := range cmds {
		if len(c.Val()) == 0 {
			continue
		}
		rec, err := decode(ids[i], c.Val())
		if err != nil {
			return nil, err
		}
		recs[i] = rec
	}
	return recs, nil
}

type cursor struct {
	set   bool
	score int64
	id    string
}

func (c cursor) encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.score, 10) + ":" + c.id))
}

func decodeCursor(s string) (cursor, error) {
	if s == "" {
		return cursor{}, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursor{}, ErrBadCursor
	}
	a, id, ok := strings.Cut(string(b), ":")
	score, err := strconv.ParseInt(a, 10, 64)
	if !ok || err != nil || id == "" {
		return cursor{}, ErrBadCursor
	}
	return cursor{set: true, score: score, id: id}, nil
}

// Indexes returns the keys of every list index: the global one and each
// API key's, and their status and type indexes.
func (s *Store) Indexes(ctx context.Context) ([]string, error) {
	out := []string{IndexKey}
	iter := s.rdb.Scan(ctx, 0, IndexKey+":*", 500).Iterator()
	for iter.Next(ctx) {
		out = append(out, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("store: list indexes: %w", err)
	}
	return out, nil
}

// PruneIndex removes from a list index up to limit entries whose records
// have expired, oldest first, starting after score after; it returns the
// score to resume from (0 once the end is reached) and how many it removed.
// Only entries older than RESULT_TTL are looked at: no record younger than
// that can have expired.
func (s *Store) PruneIndex(ctx context.Context, index string, now time.Time, after int64, limit int64) (int64, int, error) {
	before := now.Add(-s.resultTTL)
	zs, err := s.rdb.ZRangeByScoreWithScores(ctx, index, &redis.ZRangeBy{
		Min: fmt.Sprintf("(%d", after), Max: fmt.Sprint(before.UnixMilli()), Count: limit,
	}).Result()
	if err != nil || len(zs) == 0 {
		return 0, 0, err
	}
	cmds := make([]*redis.IntCmd, len(zs))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, z := range zs {
			cmds[i] = p.Exists(ctx, key(z.Member.(string)))
		}
		return nil
	})
	if err != nil {
		return after, 0, fmt.Errorf("store: prune index: %w", err)
	}
	var gone []any
	for i, c := range cmds {
		if c.Val() == 0 {
			gone = append(gone, zs[i].Member)
		}
	}
	if len(gone) > 0 {
		if err := s.rdb.ZRem(ctx, index, gone...).Err(); err != nil {
			return after, 0, fmt.Errorf("store: prune index: %w", err)
		}
	}
	next := int64(zs[len(zs)-1].Score)
	if int64(len(zs)) < limit {
		next = 0
	}
	return next, len(gone), nil
}
