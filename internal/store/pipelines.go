package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/siganteng/siganteng/internal/notify"
	"github.com/siganteng/siganteng/internal/task"
)

// Keys of pipelines.
const (
	// PipelinePrefix starts a pipeline's hash.
	PipelinePrefix = "{siganteng}:pipeline:"
	// PipelineIndexKey lists every pipeline by creation; an owner's are
	// also in PipelineIndexKey + ":owner:" + owner.
	PipelineIndexKey = "{siganteng}:pipelines"
	// PipelineOutboxKey is a list of pipelines to advance: a task of a
	// pipeline pushes its pipeline's id in the same step as it ends, and a
	// new pipeline its own.
	PipelineOutboxKey = "{siganteng}:pipelines:outbox"
	// PipelinesActiveKey holds unfinished pipelines scored by when they
	// are next looked at even if nothing pushes them (a worker that died
	// with a push in hand), in milliseconds.
	PipelinesActiveKey = "{siganteng}:pipelines:active"
)

// The kinds of event a pipeline's stream holds besides EventStatus.
const (
	// EventStep: a step started or ended; data is a StepEvent.
	EventStep = "step"
)

// PipelineStatusEvent is the data of a pipeline's status event.
type PipelineStatusEvent struct {
	PipelineID string                `json:"pipeline_id"`
	Status     task.Status           `json:"status"`
	Error      *task.PipelineFailure `json:"error,omitempty"`
}

// StepEvent is the data of a step event.
type StepEvent struct {
	PipelineID string      `json:"pipeline_id"`
	Step       string      `json:"step"`
	Index      int         `json:"index"`
	Status     task.Status `json:"status"`
	TaskIDs    []string    `json:"task_ids,omitempty"`
}

func pipelineKey(id string) string { return PipelinePrefix + id }

func pipelineOwnerIndex(owner string) string {
	if owner == "" {
		return PipelineIndexKey
	}
	return PipelineIndexKey + ":owner:" + owner
}

// Pipeline is a pipeline as kept: its spec, where it is, and who runs it.
type Pipeline struct {
	ID     string
	Owner  string
	Caller json.RawMessage // the submitter's rights, which its steps run with
	Spec   task.PipelineInput
	Status task.Status
	// Stage is the step running (or next to run).
	Stage int
	// FanOut is the number of items of each for_each step that has started.
	FanOut      map[int]int
	CreatedAt   time.Time
	CompletedAt *time.Time
	DeadlineAt  *time.Time
	ExpiresAt   *time.Time
	Error       *task.PipelineFailure
	Metadata    map[string]string
	WebhookURL  string // sealed
	Webhook     *task.WebhookInfo
}

// CreatePipeline writes a new pipeline, lists it, and pushes it to be
// advanced, with its first event, in one round trip.
func (s *Store) CreatePipeline(ctx context.Context, p Pipeline, recheck time.Time) error {
	spec, err := json.Marshal(p.Spec)
	if err != nil {
		return fmt.Errorf("store: encode pipeline %s: %w", p.ID, err)
	}
	fields := []any{"id", p.ID, "owner", p.Owner, "caller", string(p.Caller), "spec", string(spec), "status", string(p.Status),
		"stage", 0, "created_at", formatTime(p.CreatedAt), "created_ms", p.CreatedAt.UnixMilli()}
	if p.DeadlineAt != nil {
		fields = append(fields, "deadline_at", formatTime(*p.DeadlineAt))
	}
	for k, v := range p.Metadata {
		fields = append(fields, metaField+k, v)
	}
	if p.WebhookURL != "" && p.Webhook != nil {
		fields = append(fields, "webhook_url", p.WebhookURL, "webhook_shown", p.Webhook.URL)
	}
	score := float64(p.CreatedAt.UnixMilli())
	_, err = s.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.HSet(ctx, pipelineKey(p.ID), fields...)
		pipe.ZAdd(ctx, PipelineIndexKey, redis.Z{Score: score, Member: p.ID})
		if p.Owner != "" {
			pipe.ZAdd(ctx, pipelineOwnerIndex(p.Owner), redis.Z{Score: score, Member: p.ID})
		}
		pipe.ZAdd(ctx, PipelinesActiveKey, redis.Z{Score: float64(recheck.UnixMilli()), Member: p.ID})
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: eventsKey(p.ID), Values: []any{"event", EventStatus, "data",
			mustJSON(PipelineStatusEvent{PipelineID: p.ID, Status: p.Status})}})
		pipe.RPush(ctx, PipelineOutboxKey, p.ID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: create pipeline %s: %w", p.ID, err)
	}
	return nil
}

// GetPipeline reads a pipeline in one round trip; task.ENOTFOUND when it
// is unknown or has expired.
func (s *Store) GetPipeline(ctx context.Context, id string) (*Pipeline, error) {
	h, err := s.rdb.HGetAll(ctx, pipelineKey(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("store: get pipeline %s: %w", id, err)
	}
	if len(h) == 0 {
		return nil, &task.Error{Code: task.ENOTFOUND, Message: fmt.Sprintf("pipeline %q not found", id)}
	}
	return decodePipeline(id, h)
}

func decodePipeline(id string, h map[string]string) (*Pipeline, error) {
	p := &Pipeline{ID: id, Owner: h["owner"], Caller: json.RawMessage(h["caller"]), Status: task.Status(h["status"]),
		CreatedAt: parseTime(h["created_at"]), CompletedAt: parseTimePtr(h["completed_at"]),
		DeadlineAt: parseTimePtr(h["deadline_at"]), ExpiresAt: parseTimePtr(h["expires_at"]), FanOut: map[int]int{}}
	p.Stage, _ = strconv.Atoi(h["stage"])
	if err := json.Unmarshal([]byte(h["spec"]), &p.Spec); err != nil {
		return nil, fmt.Errorf("store: decode pipeline %s: %w", id, err)
	}
	for f, v := range h {
		switch {
		case strings.HasPrefix(f, metaField):
			if p.Metadata == nil {
				p.Metadata = map[string]string{}
			}
			p.Metadata[strings.TrimPrefix(f, metaField)] = v
		case strings.HasPrefix(f, "n:"):
			k, _ := strconv.Atoi(strings.TrimPrefix(f, "n:"))
			p.FanOut[k], _ = strconv.Atoi(v)
		}
	}
	if v := h["error"]; v != "" {
		p.Error = new(task.PipelineFailure)
		if err := json.Unmarshal([]byte(v), p.Error); err != nil {
			return nil, fmt.Errorf("store: decode pipeline %s: %w", id, err)
		}
	}
	if v := h["webhook_url"]; v != "" {
		p.WebhookURL = v
		p.Webhook = &task.WebhookInfo{URL: h["webhook_shown"], Events: []string{task.WebhookCompleted}}
	}
	return p, nil
}

// SetFanOut records how many items step stage of pipeline id runs over,
// unless a count is recorded already; it returns the recorded count, so
// that every advance of the step agrees on it.
func (s *Store) SetFanOut(ctx context.Context, id string, stage, n int) (int, error) {
	f := "n:" + strconv.Itoa(stage)
	pipe := s.rdb.TxPipeline()
	pipe.HSetNX(ctx, pipelineKey(id), f, n)
	got := pipe.HGet(ctx, pipelineKey(id), f)
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("store: fan-out of pipeline %s: %w", id, err)
	}
	return strconv.Atoi(got.Val())
}

// PipelineMove changes a pipeline that has not ended.
type PipelineMove struct {
	// From is the stage the change expects to find; -1 for any.
	From int
	// Stage (unless -1) and Status are written; Status terminal ends the
	// pipeline.
	Stage  int
	Status task.Status
	Error  *task.PipelineFailure
	// Events are added to the pipeline's stream, in order: kind, data.
	Events [][2]string
	At     time.Time
}

// movePipelineScript applies a PipelineMove unless the pipeline has ended
// or is at another stage.
//
// KEYS[1] the pipeline, KEYS[2] its event stream, KEYS[3] the active set
// ARGV[1] id, ARGV[2] the stage expected ('-1': any), ARGV[3] the TTL in
// ms when it ends (0: it goes on), ARGV[4] the events channel, ARGV[5]
// the count of events, then kind/data pairs, then field/value pairs.
//
// Returns 1 when applied, 0 when the pipeline had ended or moved on, -1
// when missing.
var movePipelineScript = redis.NewScript(`
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
if status == 'SUCCESS' or status == 'FAILURE' or status == 'REVOKED' then return 0 end
if ARGV[2] ~= '-1' and redis.call('HGET', KEYS[1], 'stage') ~= ARGV[2] then return 0 end
local n = tonumber(ARGV[5])
local first = 6 + 2 * n
redis.call('HSET', KEYS[1], unpack(ARGV, first))
for i = 0, n - 1 do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ` + maxEventsText + `, '*', 'event', ARGV[6 + 2 * i], 'data', ARGV[7 + 2 * i])
end
if n > 0 then redis.call('PUBLISH', ARGV[4], ARGV[1]) end
if ARGV[3] ~= '0' then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  -- one with a webhook stays due until its end is queued (ForgetPipeline)
  if redis.call('HEXISTS', KEYS[1], 'webhook_url') == 1 then redis.call('ZADD', KEYS[3], 0, ARGV[1])
  else redis.call('ZREM', KEYS[3], ARGV[1]) end
end
return 1
`)

// ErrPipelineMoved is returned by MovePipeline when the pipeline had ended
// or was not at the stage expected: another advance got there first.
var ErrPipelineMoved = errors.New("store: the pipeline had moved on")

// MovePipeline applies m atomically; ErrPipelineMoved when the pipeline
// had ended or was at another stage, task.ENOTFOUND when it is gone.
func (s *Store) MovePipeline(ctx context.Context, id string, m PipelineMove) error {
	ttl := int64(0)
	fields := []any{"status", string(m.Status)}
	if m.Stage >= 0 {
		fields = append(fields, "stage", m.Stage)
	}
	if m.Status.Terminal() {
		ttl = s.resultTTL.Milliseconds()
		fields = append(fields, "completed_at", formatTime(m.At), "expires_at", formatTime(m.At.Add(s.resultTTL)))
	}
	if m.Error != nil {
		fields = append(fields, "error", mustJSON(m.Error))
	}
	args := []any{id, m.From, ttl, notify.EventsChannel, len(m.Events)}
	for _, e := range m.Events {
		args = append(args, e[0], e[1])
	}
	args = append(args, fields...)
	n, err := movePipelineScript.Run(ctx, s.rdb, []string{pipelineKey(id), eventsKey(id), PipelinesActiveKey}, args...).Int()
	switch {
	case err != nil:
		return fmt.Errorf("store: move pipeline %s: %w", id, err)
	case n == 0:
		return ErrPipelineMoved
	case n < 0:
		return &task.Error{Code: task.ENOTFOUND, Message: fmt.Sprintf("pipeline %q not found", id)}
	}
	return nil
}

// NextPipeline waits up to wait for a pipeline to advance; ok is false when
// none came. A pipeline taken and then lost (its worker died) is found
// again by DuePipelines.
func (s *Store) NextPipeline(ctx context.Context, wait time.Duration) (id string, ok bool, err error) {
	v, err := s.rdb.BLPop(ctx, wait, PipelineOutboxKey).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("store: pipeline outbox: %w", err)
	}
	return v[1], true, nil
}

// DuePipelines returns up to n unfinished pipelines due to be looked at by
// now, and moves each one's next look to next.
func (s *Store) DuePipelines(ctx context.Context, now, next time.Time, n int64) ([]string, error) {
	ids, err := s.rdb.ZRangeByScore(ctx, PipelinesActiveKey, &redis.ZRangeBy{Min: "-inf", Max: fmt.Sprint(now.UnixMilli()), Count: n}).Result()
	if err != nil || len(ids) == 0 {
		return nil, wrap("due pipelines", err)
	}
	zs := make([]redis.Z, len(ids))
	for i, id := range ids {
		zs[i] = redis.Z{Score: float64(next.UnixMilli()), Member: id}
	}
	if err := s.rdb.ZAddXX(ctx, PipelinesActiveKey, zs...).Err(); err != nil {
		return nil, wrap("due pipelines", err)
	}
	return ids, nil
}

// ForgetPipeline drops a pipeline from the active set: one that no longer
// exists, or that has ended and whose webhook delivery is queued.
func (s *Store) ForgetPipeline(ctx context.Context, id string) error {
	return wrap("forget pipeline", s.rdb.ZRem(ctx, PipelinesActiveKey, id).Err())
}

// LookAgain moves a pipeline's next look to at, sooner than its recheck:
// one whose step could not be submitted (the key at its limit) tries again.
func (s *Store) LookAgain(ctx context.Context, id string, at time.Time) error {
	return wrap("pipeline look again", s.rdb.ZAddXX(ctx, PipelinesActiveKey, redis.Z{Score: float64(at.UnixMilli()), Member: id}).Err())
}

func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("store: %s: %w", op, err)
}

// ListPipelines returns up to limit of owner's pipelines (every one's when
// all), newest first, after the one named; more is true when there are
// more. Expired ones are dropped from the index on the way.
func (s *Store) ListPipelines(ctx context.Context, owner string, all bool, after string, limit int) ([]*Pipeline, bool, error) {
	index := pipelineOwnerIndex(owner)
	if all {
		index = PipelineIndexKey
	}
	max := "+inf"
	if after != "" {
		score, err := s.rdb.ZScore(ctx, index, after).Result()
		if errors.Is(err, redis.Nil) {
			return nil, false, task.Invalid("after", fmt.Sprintf("after names no pipeline of yours: %s", after))
		}
		if err != nil {
			return nil, false, wrap("list pipelines", err)
		}
		max = "(" + strconv.FormatInt(int64(score), 10)
	}
	ids, err := s.rdb.ZRevRangeByScore(ctx, index, &redis.ZRangeBy{Max: max, Min: "-inf", Count: int64(limit + 1)}).Result()
	if err != nil {
		return nil, false, wrap("list pipelines", err)
	}
	more := len(ids) > limit
	if more {
		ids = ids[:limit]
	}
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGetAll(ctx, pipelineKey(id))
		}
		return nil
	}); err != nil {
		return nil, false, wrap("list pipelines", err)
	}
	var out []*Pipeline
	var gone []any
	for i, c := range cmds {
		if len(c.Val()) == 0 {
			gone = append(gone, ids[i])
			continue
		}
		p, err := decodePipeline(ids[i], c.Val())
		if err != nil {
			return nil, false, err
		}
		out = append(out, p)
	}
	if len(gone) > 0 {
		_ = s.rdb.ZRem(ctx, index, gone...).Err()
		if index != PipelineIndexKey {
			_ = s.rdb.ZRem(ctx, PipelineIndexKey, gone...).Err()
		}
	}
	return out, more, nil
}
