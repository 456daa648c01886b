package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/siganteng/siganteng/internal/task"
)

// The keys of the Files and Batch APIs. A file's record and a batch's
// state are hashes; each owner has an index of its files and its batches,
// scored by creation time, and files that expire are in one more index,
// scored by when.
const (
	filePrefix        = "{siganteng}:file:"
	fileOwnerPrefix   = "{siganteng}:files:owner:"
	fileExpiryKey     = "{siganteng}:files:expiry"
	batchPrefix       = "{siganteng}:batch:"
	batchOwnerPrefix  = "{siganteng}:batches:owner:"
	inflightSuffix    = ":inflight"
	endedBatchKeptFor = 30 * 24 * time.Hour
)

// ErrNoSuchFile is the error for a file that does not exist (or expired).
func noSuchFile(id string) *task.Error {
	return &task.Error{Code: task.ENOTFOUND, Message: fmt.Sprintf("no such file: %s", id)}
}

func noSuchBatch(id string) *task.Error {
	return &task.Error{Code: task.ENOTFOUND, Message: fmt.Sprintf("no such batch: %s", id)}
}

// CreateFile records a file whose bytes are stored, in one round trip.
func (s *Store) CreateFile(ctx context.Context, f task.File) error {
	raw, err := json.Marshal(fileRecord{File: f, Owner: f.Owner})
	if err != nil {
		return fmt.Errorf("store: encode file %s: %w", f.ID, err)
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, filePrefix+f.ID, raw, 0)
		p.ZAdd(ctx, fileOwnerPrefix+f.Owner, redis.Z{Score: float64(f.CreatedAt.UnixMicro()), Member: f.ID})
		if f.ExpiresAt != nil {
			p.ZAdd(ctx, fileExpiryKey, redis.Z{Score: float64(f.ExpiresAt.Unix()), Member: f.ID})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: create file %s: %w", f.ID, err)
	}
	return nil
}

// fileRecord is a file as kept: the owner is not part of the API's shape.
type fileRecord struct {
	task.File
	Owner string `json:"owner"`
}

// GetFile reads a file's record; ENOTFOUND when there is none.
func (s *Store) GetFile(ctx context.Context, id string) (*task.File, error) {
	raw, err := s.rdb.Get(ctx, filePrefix+id).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, noSuchFile(id)
	}
	if err != nil {
		return nil, fmt.Errorf("store: get file %s: %w", id, err)
	}
	var rec fileRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("store: decode file %s: %w", id, err)
	}
	rec.File.Owner = rec.Owner
	return &rec.File, nil
}

// ListFiles returns up to limit of owner's files after the one named (""
// from the start), newest first unless ascending, and whether there are
// more. Files of another purpose are passed over when purpose is set.
func (s *Store) ListFiles(ctx context.Context, owner, purpose, after string, limit int, ascending bool) ([]task.File, bool, error) {
	var out []task.File
	more, err := s.page(ctx, fileOwnerPrefix+owner, after, limit, ascending, func(ids []string) (int, error) {
		kept := 0
		for _, id := range ids {
			f, err := s.GetFile(ctx, id)
			if task.CodeOf(err) == task.ENOTFOUND {
				s.rdb.ZRem(ctx, fileOwnerPrefix+owner, id) // deleted or expired
				continue
			}
			if err != nil {
				return kept, err
			}
			if purpose != "" && f.Purpose != purpose {
				continue
			}
			out = append(out, *f)
			kept++
		}
		return kept, nil
	})
	return out, more, err
}

// page walks an owner's index from after, handing each run of ids to take,
// which says how many it kept, until limit are kept or the index ends.
func (s *Store) page(ctx context.Context, index, after string, limit int, ascending bool, take func([]string) (int, error)) (bool, error) {
	start := int64(0)
	if after != "" {
		var rank *redis.IntCmd
		if ascending {
			rank = s.rdb.ZRank(ctx, index, after)
		} else {
			rank = s.rdb.ZRevRank(ctx, index, after)
		}
		r, err := rank.Result()
		if errors.Is(err, redis.Nil) {
			return false, &task.Error{Code: task.EINVALID, Field: "after", Message: fmt.Sprintf("after names no object of yours: %s", after)}
		}
		if err != nil {
			return false, fmt.Errorf("store: page %s: %w", index, err)
		}
		start = r + 1
	}
	kept := 0
	for kept < limit {
		n := int64(limit - kept + 1) // one more, to tell whether more are left
		var ids []string
		var err error
		if ascending {
			ids, err = s.rdb.ZRange(ctx, index, start, start+n-1).Result()
		} else {
			ids, err = s.rdb.ZRevRange(ctx, index, start, start+n-1).Result()
		}
		if err != nil {
			return false, fmt.Errorf("store: page %s: %w", index, err)
		}
		if len(ids) == 0 {
			return false, nil
		}
		want := min(len(ids), limit-kept)
		k, err := take(ids[:want])
		if err != nil {
			return false, err
		}
		kept += k
		start += int64(want)
		if kept >= limit {
			return len(ids) > want, nil
		}
	}
	return false, nil
}

// DeleteFile removes a file's record; its bytes are the caller's to delete.
func (s *Store) DeleteFile(ctx context.Context, f *task.File) error {
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, filePrefix+f.ID)
		p.ZRem(ctx, fileOwnerPrefix+f.Owner, f.ID)
		p.ZRem(ctx, fileExpiryKey, f.ID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: delete file %s: %w", f.ID, err)
	}
	return nil
}

// ExpiredFiles returns up to n files whose expiry has passed.
func (s *Store) ExpiredFiles(ctx context.Context, now time.Time, n int) ([]string, error) {
	ids, err := s.rdb.ZRangeByScore(ctx, fileExpiryKey, &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(now.Unix(), 10), Count: int64(n)}).Result()
	if err != nil {
		return nil, fmt.Errorf("store: expired files: %w", err)
	}
	return ids, nil
}

// ForgetFile drops a file id from the expiry index (its record is gone).
func (s *Store) ForgetFile(ctx context.Context, id string) error {
	return s.rdb.ZRem(ctx, fileExpiryKey, id).Err()
}

// CreateBatch records a new batch.
func (s *Store) CreateBatch(ctx context.Context, b task.Batch) error {
	raw, err := encodeBatch(b)
	if err != nil {
		return err
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, batchPrefix+b.ID, "batch", raw)
		p.ZAdd(ctx, batchOwnerPrefix+b.Owner, redis.Z{Score: float64(b.CreatedAt.UnixMicro()), Member: b.ID})
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: create batch %s: %w", b.ID, err)
	}
	return nil
}

// batchRecord is a batch as kept: the fields the API does not show too.
type batchRecord struct {
	task.Batch
	Owner              string           `json:"owner"`
	Caller             json.RawMessage  `json:"caller"`
	OutputExpiresAfter time.Duration    `json:"output_expires_after"`
	Ending             task.BatchStatus `json:"ending,omitempty"`
	WebhookURL         string           `json:"webhook_url,omitempty"`
}

func encodeBatch(b task.Batch) ([]byte, error) {
	raw, err := json.Marshal(batchRecord{Batch: b, Owner: b.Owner, Caller: b.Caller, OutputExpiresAfter: b.OutputExpiresAfter, Ending: b.Ending, WebhookURL: b.WebhookURL})
	if err != nil {
		return nil, fmt.Errorf("store: encode batch %s: %w", b.ID, err)
	}
	return raw, nil
}

// GetBatch reads a batch and its runner's progress in one round trip; its
// counts are the counters the runner keeps. A cancel asked for and not yet
// taken up shows as cancelling.
func (s *Store) GetBatch(ctx context.Context, id string) (*task.Batch, task.BatchProgress, error) {
	h, err := s.rdb.HGetAll(ctx, batchPrefix+id).Result()
	if err != nil {
		return nil, task.BatchProgress{}, fmt.Errorf("store: get batch %s: %w", id, err)
	}
	if h["batch"] == "" {
		return nil, task.BatchProgress{}, noSuchBatch(id)
	}
	var rec batchRecord
	if err := json.Unmarshal([]byte(h["batch"]), &rec); err != nil {
		return nil, task.BatchProgress{}, fmt.Errorf("store: decode batch %s: %w", id, err)
	}
	b := rec.Batch
	b.Owner, b.Caller, b.OutputExpiresAfter, b.Ending, b.WebhookURL = rec.Owner, rec.Caller, rec.OutputExpiresAfter, rec.Ending, rec.WebhookURL
	num := func(f string) int64 { n, _ := strconv.ParseInt(h[f], 10, 64); return n }
	b.Completed, b.Failed = int(num("completed")), int(num("failed"))
	b.InputTokens, b.OutputTokens = num("input_tokens"), num("output_tokens")
	if ms := num("cancel_ms"); ms > 0 && (b.Status == task.BatchValidating || b.Status == task.BatchInProgress) {
		at := time.UnixMilli(ms).UTC()
		b.Status, b.CancellingAt = task.BatchCancelling, &at
	}
	p := task.BatchProgress{Line: int(num("line")), Offset: num("offset"), Chunks: int(num("chunks")), Admitted: h["admitted"] == "1"}
	return &b, p, nil
}

// SaveBatch writes what the runner changed of a batch (status, times,
// totals, files, errors); counters and progress are kept apart. A batch
// that has ended is kept 30 days.
func (s *Store) SaveBatch(ctx context.Context, b task.Batch) error {
	raw, err := encodeBatch(b)
	if err != nil {
		return err
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, batchPrefix+b.ID, "batch", raw)
		if b.Status.Ended() {
			p.Expire(ctx, batchPrefix+b.ID, endedBatchKeptFor)
			p.Del(ctx, batchPrefix+b.ID+inflightSuffix)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: save batch %s: %w", b.ID, err)
	}
	return nil
}

// CancelBatch asks a batch's runner to cancel it; false when it had ended.
func (s *Store) CancelBatch(ctx context.Context, id string, at time.Time) error {
	return s.rdb.HSetNX(ctx, batchPrefix+id, "cancel_ms", at.UnixMilli()).Err()
}

// ListBatches returns up to limit of owner's batches after the one named,
// newest first, and whether there are more.
func (s *Store) ListBatches(ctx context.Context, owner, after string, limit int) ([]task.Batch, bool, error) {
	var out []task.Batch
	more, err := s.page(ctx, batchOwnerPrefix+owner, after, limit, false, func(ids []string) (int, error) {
		kept := 0
		for _, id := range ids {
			b, _, err := s.GetBatch(ctx, id)
			if task.CodeOf(err) == task.ENOTFOUND {
				s.rdb.ZRem(ctx, batchOwnerPrefix+owner, id)
				continue
			}
			if err != nil {
				return kept, err
			}
			out = append(out, *b)
			kept++
		}
		return kept, nil
	})
	return out, more, err
}

// InFlight returns a batch's admitted lines not yet written out: task id
// (or a failed line's key) to the line's entry.
func (s *Store) InFlight(ctx context.Context, batchID string) (map[string]string, error) {
	m, err := s.rdb.HGetAll(ctx, batchPrefix+batchID+inflightSuffix).Result()
	if err != nil {
		return nil, fmt.Errorf("store: in-flight lines of %s: %w", batchID, err)
	}
	return m, nil
}

// Admit records lines as admitted (entries by task id) and moves the
// batch's progress on, in one atomic step: a runner that dies before this
// admits the same lines again (their first tasks run, but nothing reads
// them), one that dies after it finds them in flight.
func (s *Store) Admit(ctx context.Context, batchID string, entries map[string]string, p task.BatchProgress) error {
	_, err := s.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		if len(entries) > 0 {
			pipe.HSet(ctx, batchPrefix+batchID+inflightSuffix, entries)
		}
		admitted := "0"
		if p.Admitted {
			admitted = "1"
		}
		pipe.HSet(ctx, batchPrefix+batchID, "line", p.Line, "offset", p.Offset, "admitted", admitted)
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: admit lines of %s: %w", batchID, err)
	}
	return nil
}

// commitScript takes a chunk of written lines out of flight and counts
// them, unless that chunk was committed already (a runner that died after
// committing writes the same chunk again, and it is not counted twice).
//
// KEYS[1] the batch, KEYS[2] its in-flight lines; ARGV[1] the chunk's
// number, [2] completed, [3] failed, [4] input tokens, [5] output tokens,
// [6:] the entries written
var commitScript = redis.NewScript(`
if tonumber(redis.call('HGET', KEYS[1], 'chunks') or '0') ~= tonumber(ARGV[1]) then return 0 end
for i = 6, #ARGV do redis.call('HDEL', KEYS[2], ARGV[i]) end
redis.call('HINCRBY', KEYS[1], 'chunks', 1)
redis.call('HINCRBY', KEYS[1], 'completed', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'failed', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'input_tokens', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'output_tokens', ARGV[5])
return 1
`)

// Chunk is one run of written lines, as committed.
type Chunk struct {
	Seq                       int
	Completed, Failed         int
	InputTokens, OutputTokens int64
	Entries                   []string
}

// CommitChunk counts chunk c as written; false when it was already.
func (s *Store) CommitChunk(ctx context.Context, batchID string, c Chunk) (bool, error) {
	args := []any{c.Seq, c.Completed, c.Failed, c.InputTokens, c.OutputTokens}
	for _, e := range c.Entries {
		args = append(args, e)
	}
	n, err := commitScript.Run(ctx, s.rdb, []string{batchPrefix + batchID, batchPrefix + batchID + inflightSuffix}, args...).Int()
	if err != nil {
		return false, fmt.Errorf("store: commit chunk %d of %s: %w", c.Seq, batchID, err)
	}
	return n == 1, nil
}

// DeleteMany removes records of tasks that have ended, and their entries,
// in one round trip.
func (s *Store) DeleteMany(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if err := deleteScript.Load(ctx, s.rdb).Err(); err != nil {
		return fmt.Errorf("store: delete %d records: %w", len(ids), err)
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, id := range ids {
			deleteScript.EvalSha(ctx, p, []string{key(id), UnfinishedKey, IndexKey, eventsKey(id)}, id, OwnerIndexPrefix, OwnerUnfinishedPrefix)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: delete %d records: %w", len(ids), err)
	}
	return nil
}

// Statuses reads the status of each task in one round trip; "" for a
// missing one.
func (s *Store) Statuses(ctx context.Context, ids []string) ([]task.Status, error) {
	cmds := make([]*redis.StringCmd, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGet(ctx, key(id), "status")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: statuses of %d tasks: %w", len(ids), err)
	}
	out := make([]task.Status, len(ids))
	for i, c := range cmds {
		out[i] = task.Status(c.Val())
	}
	return out, nil
}

// GetMany reads records in one round trip; a missing one is nil.
func (s *Store) GetMany(ctx context.Context, ids []string) ([]*task.Record, error) {
	return s.getMany(ctx, ids)
}
