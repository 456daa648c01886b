// Package store keeps task records in Redis: one hash per task, read in one
// round trip and changed by one atomic script that never moves a finished task.
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

// KeyPrefix starts every record key; asynq's keys start with "asynq:".
const KeyPrefix = "{siganteng}:task:"

// UnfinishedKey is a sorted set of the ids of unfinished tasks, scored by
// creation time in milliseconds, so that tasks lost by the queue can be found
// and ended (see worker.Reconciler).
const UnfinishedKey = "{siganteng}:unfinished"

// Store reads and writes task records.
type Store struct {
	rdb       redis.UniversalClient
	resultTTL time.Duration
}

// New returns a store whose finished records expire after resultTTL.
func New(rdb redis.UniversalClient, resultTTL time.Duration) *Store {
	return &Store{rdb: rdb, resultTTL: resultTTL}
}

func key(id string) string { return KeyPrefix + id }

// keys are the keys every script on one task touches, in the order the
// scripts' prelude names them.
func keys(id string) []string { return []string{key(id), UnfinishedKey, eventsKey(id), OutboxKey} }

// ErrTooManyUnfinished is returned by Create when the owner already has
// as many unfinished tasks as it may.
var ErrTooManyUnfinished = errors.New("store: too many unfinished tasks")

// OwnerIndexPrefix and OwnerUnfinishedPrefix start the keys of an API key's
// own list index and unfinished set; a task with no owner (the API is open)
// is in the global ones only.
const (
	OwnerIndexPrefix      = "{siganteng}:tasks:owner:"
	OwnerUnfinishedPrefix = "{siganteng}:unfinished:owner:"
)

// createScript writes a new task unless its owner is at its limit of
// unfinished tasks or past a daily budget, checked in the same atomic step.
//
// KEYS[1] record, KEYS[2] unfinished set, KEYS[3] list index, KEYS[4] event
// stream, KEYS[5] the owner's list index, KEYS[6] the owner's unfinished set
// (for no owner, 5 and 6 are 3 and 2), KEYS[7] the owner's usage today
// ARGV[1] id, ARGV[2] creation in ms, ARGV[3] the owner's limit (0: none),
// ARGV[4] the first event, ARGV[5] daily token budget (0: none), ARGV[6]
// daily cost budget in nano-dollars (0: none; so fine that a few tokens
// count), ARGV[7] the tokens to reserve against the token budget until the
// task ends, ARGV[8] the waiting JSON of a task that may wait in its
// owner's line for admission ("": one that may not; see Admission),
// ARGV[9:] field/value pairs
//
// Returns 1 when created, 0 when the owner is at its limit, 2 when past its
// token budget, 3 when past its cost budget, 4 when tasks still running
// hold the rest of its token budget, 5 when a task of that id exists, 6
// when created to wait in its owner's line.
var createScript = redis.NewScript(budgetLua + admissionLua + `
if redis.call('EXISTS', KEYS[1]) == 1 then return 5 end
if ARGV[3] ~= '0' and redis.call('ZCARD', KEYS[6]) >= tonumber(ARGV[3]) then return 0 end
local over = over_budget(KEYS[7], ARGV[5], ARGV[6])
if over ~= 1 then return over end
reserve(KEYS[7], ARGV[5], ARGV[7])
redis.call('HSET', KEYS[1], unpack(ARGV, 9))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
if KEYS[5] ~= KEYS[3] then
  redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1])
  redis.call('ZADD', KEYS[6], ARGV[2], ARGV[1])
end
local typ = redis.call('HGET', KEYS[1], 'type')
local scoped = {KEYS[3]}
if KEYS[5] ~= KEYS[3] then scoped[2] = KEYS[5] end
for _, scope in ipairs(scoped) do
  redis.call('ZADD', scope .. ':type:' .. typ, ARGV[2], ARGV[1])
  redis.call('ZADD', scope .. ':status:PENDING', ARGV[2], ARGV[1])
  redis.call('ZADD', scope .. ':status:PENDING:type:' .. typ, ARGV[2], ARGV[1])
end
for i = 9, #ARGV, 2 do
  if string.sub(ARGV[i], 1, 2) == 'm:' then
    for _, scope in ipairs(scoped) do
      redis.call('ZADD', scope .. ':meta:' .. string.sub(ARGV[i], 3) .. '=' .. ARGV[i + 1], ARGV[2], ARGV[1])
    end
  end
end
local deadline = redis.call('HGET', KEYS[1], 'deadline_ms')
if deadline then redis.call('ZADD', '` + DeadlinesKey + `', deadline, ARGV[1]) end
redis.call('XADD', KEYS[4], '*', 'event', 'status', 'data', ARGV[4])
if ARGV[8] ~= '' and KEYS[5] ~= KEYS[3] and
   admit_or_line(redis.call('HGET', KEYS[1], 'owner'), ARGV[1], tonumber(ARGV[2]), redis.call('HGET', KEYS[1], 'priority') == 'low') then
  redis.call('HSET', KEYS[1], 'admission', '` + task.AdmissionWaiting + `', 'waiting', ARGV[8], 'waiting_since', redis.call('HGET', KEYS[1], 'created_at'))
  return 6
end
return 1
`)

// DeadlinesKey is a sorted set of the tasks given a deadline, scored by it
// in milliseconds: a sweeper ends those whose deadline has passed.
const DeadlinesKey = "{siganteng}:deadlines"

// metaField starts the record field of each metadata label; the create
// script indexes each as <scope>:meta:<key>=<value>.
const metaField = "m:"

// Limits bound what an owner may submit; zero values mean no limit.
type Limits struct {
	MaxUnfinished int
	// DailyTokens and DailyCostUSD are budgets for the UTC day: past one,
	// nothing more is accepted until the day ends.
	DailyTokens  int64
	DailyCostUSD float64
	// ReserveTokens is the task's estimated tokens, held against the token
	// budget from its submit until it ends (its usage is then counted), so
	// concurrent submits cannot all pass the budget.
	ReserveTokens int64
	// MayWait lets the task wait in its owner's line to be admitted to
	// the queues (see Admission); Create sets the record's Waiting when it
	// does, and the caller must not queue it then. Weight is the owner's
	// share weight, kept to queue it with when it is admitted.
	MayWait bool
	Weight  int
}

// ErrTokenBudget and ErrCostBudget are returned by Create when the owner
// has used its daily budget.
var (
	ErrTokenBudget = errors.New("store: daily token budget used")
	ErrCostBudget  = errors.New("store: daily cost budget used")
	// ErrBudgetReserved: what is left of the token budget is held by
	// calls still running.
	ErrBudgetReserved = errors.New("store: daily token budget held by calls in flight")
	// ErrExists: a task of that id exists already (a pipeline's step or a
	// retry chose the id, and an earlier try created it).
	ErrExists = errors.New("store: a task of that id exists")
)

// Create writes a new PENDING record, its entries among the unfinished and
// in the list indexes, and its first event, in one round trip. limits are
// checked in the same step: at one nothing is written and the answer is
// ErrTooManyUnfinished, ErrTokenBudget or ErrCostBudget. Unfinished records
// do not expire: a task accepted with 202 keeps its record until it ends.
func (s *Store) Create(ctx context.Context, rec *task.Record, limits Limits) error {
	fields := []any{
		"id", rec.ID, "type", string(rec.Type), "status", string(rec.Status),
		"attempts", rec.Attempts, "created_at", formatTime(rec.CreatedAt), "created_ms", rec.CreatedAt.UnixMilli(),
	}
	if len(rec.Input) > 0 {
		fields = append(fields, "input", string(rec.Input))
	}
	if rec.CancelAt != nil {
		fields = append(fields, "cancel_at", formatTime(*rec.CancelAt), "cancel_at_ms", rec.CancelAt.UnixMilli())
	}
	if rec.ScheduledAt != nil {
		fields = append(fields, "scheduled_at", formatTime(*rec.ScheduledAt))
	}
	for k, v := range rec.Metadata {
		fields = append(fields, metaField+k, v)
	}
	if rec.DeadlineAt != nil {
		fields = append(fields, "deadline_at", formatTime(*rec.DeadlineAt), "deadline_ms", rec.DeadlineAt.UnixMilli())
	}
	if rec.Priority != "" {
		fields = append(fields, "priority", string(rec.Priority))
	}
	if rec.Owner != "" {
		fields = append(fields, "owner", rec.Owner)
	}
	if rec.PipelineID != "" {
		fields = append(fields, "pipeline", rec.PipelineID, "pipeline_step", rec.PipelineStep)
	}
	if rec.RetryOf != "" {
		fields = append(fields, "retry_of", rec.RetryOf)
	}
	if len(rec.Payload) > 0 {
		fields = append(fields, "payload", string(rec.Payload))
	}
	if rec.WebhookURL != "" && rec.Webhook != nil {
		fields = append(fields, "webhook_url", rec.WebhookURL, "webhook_shown", rec.Webhook.URL, "webhook_events", strings.Join(rec.Webhook.Events, ","))
	}
	reserve := int64(0)
	if limits.DailyTokens > 0 && limits.ReserveTokens > 0 {
		reserve = limits.ReserveTokens
		fields = append(fields, "reserved_tokens", reserve, "reserved_in", UsageKey(rec.Owner, rec.CreatedAt))
	}
	line := ""
	if limits.MayWait && rec.Owner != "" {
		line = mustJSON(lineWaiting)
		if limits.Weight > 1 {
			fields = append(fields, "weight", limits.Weight)
		}
	}
	ownerIndex, ownerUnfinished := indexKeys(rec.Owner)
	args := append([]any{rec.ID, rec.CreatedAt.UnixMilli(), limits.MaxUnfinished, statusEvent(rec.ID, task.StatusPending, 0, nil),
		limits.DailyTokens, nanoUSD(limits.DailyCostUSD), reserve, line}, fields...)
	keys := []string{key(rec.ID), UnfinishedKey, IndexKey, eventsKey(rec.ID), ownerIndex, ownerUnfinished, UsageKey(rec.Owner, rec.CreatedAt)}
	n, err := createScript.Run(ctx, s.rdb, keys, args...).Int()
	switch {
	case err != nil:
		return fmt.Errorf("store: create %s: %w", rec.ID, err)
	case n == 0:
		return ErrTooManyUnfinished
	case n == 2:
		return ErrTokenBudget
	case n == 3:
		return ErrCostBudget
	case n == 4:
		return ErrBudgetReserved
	case n == 5:
		return ErrExists
	case n == 6:
		w := lineWaiting
		w.Since = rec.CreatedAt
		rec.Waiting = &w
	}
	return nil
}

// lineWaiting is what the record of a task in its owner's line says.
var lineWaiting = task.Waiting{Reason: task.WaitKeyShare}

// indexKeys are the list index and unfinished set of owner's tasks.
func indexKeys(owner string) (index, unfinished string) {
	if owner == "" {
		return IndexKey, UnfinishedKey
	}
	return OwnerIndexPrefix + owner, OwnerUnfinishedPrefix + owner
}

// deleteScript removes a task and every entry of it.
var deleteScript = redis.NewScript(indexLua + releaseLua + `
release()
local owner = redis.call('HGET', KEYS[1], 'owner')
local typ = redis.call('HGET', KEYS[1], 'type') or ''
local status = redis.call('HGET', KEYS[1], 'status') or ''
local h = redis.call('HGETALL', KEYS[1])
for _, scope in ipairs(scopes(owner)) do
  redis.call('ZREM', scope .. ':type:' .. typ, ARGV[1])
  redis.call('ZREM', scope .. ':status:' .. status, ARGV[1])
  redis.call('ZREM', scope .. ':status:' .. status .. ':type:' .. typ, ARGV[1])
  for i = 1, #h, 2 do
    if string.sub(h[i], 1, 2) == 'm:' then
      redis.call('ZREM', scope .. ':meta:' .. string.sub(h[i], 3) .. '=' .. h[i + 1], ARGV[1])
    end
  end
end
redis.call('DEL', KEYS[1], KEYS[4])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if owner then
  redis.call('ZREM', ARGV[2] .. owner, ARGV[1])
  redis.call('ZREM', ARGV[3] .. owner, ARGV[1])
  redis.call('ZREM', '` + AdmittedPrefix + `' .. owner, ARGV[1])
end
return 1
`)

// Delete removes a record; used to undo Create when the enqueue fails.
func (s *Store) Delete(ctx context.Context, id string) error {
	err := deleteScript.Run(ctx, s.rdb, []string{key(id), UnfinishedKey, IndexKey, eventsKey(id)}, id, OwnerIndexPrefix, OwnerUnfinishedPrefix).Err()
	if err != nil {
		return fmt.Errorf("store: delete %s: %w", id, err)
	}
	return nil
}

// Get reads a record in one round trip. An unknown or expired id gives a
// task.ENOTFOUND error.
func (s *Store) Get(ctx context.Context, id string) (*task.Record, error) {
	h, err := s.rdb.HGetAll(ctx, key(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("store: get %s: %w", id, err)
	}
	if len(h) == 0 {
		return nil, task.NotFound(id)
	}
	return decode(id, h)
}

// ErrFinished is returned by the transitions when the task had already
// ended; the record is unchanged.
var ErrFinished = errors.New("store: task already finished")

// ErrDeadlinePassed is returned by Started when the task's cancel_after had
// passed: the task is now REVOKED and must not run.
var ErrDeadlinePassed = errors.New("store: task not started before its cancel_after")

// prelude is shared by the scripts that change a task. Each event goes to
// the task's stream and is announced on notify.EventsChannel; an event a
// webhook asked for is put in the outbox in the same step, so a delivery
// cannot be lost between the change and its announcement.
//
// KEYS[1] record, KEYS[2] the unfinished set, KEYS[3] the event stream,
// KEYS[4] the webhook outbox; ARGV[1] is always the task id.
var prelude = releaseLua + unadmitLua + `
local function emit(channel, kind, data, hook)
  local eid = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ` + maxEventsText + `, '*', 'event', kind, 'data', data)
  redis.call('PUBLISH', channel, ARGV[1])
  if hook ~= '' then
    local want = redis.call('HGET', KEYS[1], 'webhook_events')
    if want and string.find(',' .. want .. ',', ',' .. hook .. ',', 1, true) then
      redis.call('RPUSH', KEYS[4], ARGV[1] .. ' ' .. hook .. ' ' .. eid)
    end
  end
  return eid
end
local function finish(ttl, ended)
  release()
  local pipeline = redis.call('HGET', KEYS[1], 'pipeline')
  if pipeline then redis.call('RPUSH', '` + PipelineOutboxKey + `', pipeline) end
  if redis.call('HGET', KEYS[1], 'status') == 'SUCCESS' then redis.call('HDEL', KEYS[1], 'payload') end
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[3], ttl)
  redis.call('ZREM', KEYS[2], ARGV[1])
  local owner = redis.call('HGET', KEYS[1], 'owner')
  if owner then redis.call('ZREM', '` + OwnerUnfinishedPrefix + `' .. owner, ARGV[1]) end
  unadmit(owner, ARGV[1])
  redis.call('PUBLISH', ended, ARGV[1])
end
local function terminal(status)
  return status == 'SUCCESS' or status == 'FAILURE' or status == 'REVOKED'
end
` + indexLua + `
-- reindex moves the task from its old status's list indexes to its new
-- one's, in the same step as the change.
local function reindex(old, new)
  if old == new then return end
  local score = redis.call('HGET', KEYS[1], 'created_ms')
  if not score then return end -- written before these indexes existed
  local typ = redis.call('HGET', KEYS[1], 'type')
  for _, scope in ipairs(scopes(redis.call('HGET', KEYS[1], 'owner'))) do
    redis.call('ZREM', scope .. ':status:' .. old, ARGV[1])
    redis.call('ZREM', scope .. ':status:' .. old .. ':type:' .. typ, ARGV[1])
    redis.call('ZADD', scope .. ':status:' .. new, score, ARGV[1])
    redis.call('ZADD', scope .. ':status:' .. new .. ':type:' .. typ, score, ARGV[1])
  end
end
`

// startScript marks an attempt as running, unless the task has ended, is
// missing, or its cancel_after has passed, in which case it ends REVOKED.
//
// ARGV[2] now in ms, ARGV[3] RESULT_TTL in ms, ARGV[4] the endings channel,
// ARGV[5] the events channel, ARGV[6] attempt, ARGV[7] now formatted,
// ARGV[8] expiry formatted, ARGV[9] the revocation's error JSON, ARGV[10]
// the start event, ARGV[11] the revocation event
//
// Returns 1 when started, 2 when revoked, 0 when it had ended, -1 when missing.
var startScript = redis.NewScript(prelude + `
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
if terminal(status) then return 0 end
local cancelAt = redis.call('HGET', KEYS[1], 'cancel_at_ms')
if cancelAt and status ~= 'STARTED' and status ~= 'RETRY' and tonumber(cancelAt) <= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'status', 'REVOKED', 'error', ARGV[9], 'completed_at', ARGV[7], 'expires_at', ARGV[8])
  reindex(status, 'REVOKED')
  emit(ARGV[5], 'status', ARGV[11], 'completed')
  finish(ARGV[3], ARGV[4])
  return 2
end
local waited = redis.call('HGET', KEYS[1], 'waiting_since_ms')
redis.call('HSET', KEYS[1], 'status', 'STARTED', 'attempts', ARGV[6], 'started_at', ARGV[7], 'next_attempt_at', '', 'progress', '', 'waiting', '')
reindex(status, 'STARTED')
local hook = ''
if status == 'PENDING' and (not waited or waited == '') then hook = 'start' end
emit(ARGV[5], 'status', ARGV[10], hook)
return 1
`)

// Started marks an attempt as running. A missing record gives a
// task.ENOTFOUND error: its submit was rolled back, and the task must not
// run; a passed cancel_after gives ErrDeadlinePassed. A task that has
// started once is not stopped by its deadline when it is retried.
func (s *Store) Started(ctx context.Context, id string, attempt int, at time.Time) error {
	failure := task.Failure{Code: task.FailureRevoked, Message: "not started before its cancel_after"}
	n, err := startScript.Run(ctx, s.rdb, keys(id), id, at.UnixMilli(), s.resultTTL.Milliseconds(),
		notify.Channel, notify.EventsChannel, attempt, formatTime(at), formatTime(at.Add(s.resultTTL)), mustJSON(failure),
		statusEvent(id, task.StatusStarted, attempt, nil), statusEvent(id, task.StatusRevoked, 0, &failure)).Int()
	switch {
	case err != nil:
		return fmt.Errorf("store: start %s: %w", id, err)
	case n == 0:
		return ErrFinished
	case n == 2:
		return ErrDeadlinePassed
	case n < 0:
		return task.NotFound(id)
	}
	return nil
}

// Retrying records a failed attempt that will run again at next, and the
// routed calls it made. A wait for budget after it counts from its own
// start.
func (s *Store) Retrying(ctx context.Context, id string, failure task.Failure, next time.Time, calls ...task.Call) error {
	return s.transition(ctx, id, task.StatusRetry, &failure, 0, change{calls: calls},
		"status", string(task.StatusRetry), "error", mustJSON(failure), "next_attempt_at", formatTime(next),
		"waiting_since_ms", "", "waiting_since", "")
}

// ErrWaitedTooLong is returned by Waiting when the task has waited for
// budget longer than it may; it is left as it was, for the caller to end.
var ErrWaitedTooLong = errors.New("store: the task has waited too long for budget")

// waitScript puts a task that waits for budget back to PENDING, with why
// and until when, keeping when it began to wait; unless it has waited
// longer than it may. It gives up the task's admission to the queues (see
// Admission): it waits out of them.
//
// ARGV[2] now in ms, ARGV[3] the longest wait in ms, ARGV[4] the wait's
// JSON (reason, deployment, until), ARGV[5] the events channel, ARGV[6]
// now formatted, ARGV[7] the status event
//
// Returns 1 when recorded, 2 when it has waited too long, 0 when it had
// ended, -1 when missing.
var waitScript = redis.NewScript(prelude + `
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
if terminal(status) then return 0 end
local since = redis.call('HGET', KEYS[1], 'waiting_since_ms')
if not since or since == '' then
  since = ARGV[2]
  redis.call('HSET', KEYS[1], 'waiting_since_ms', ARGV[2], 'waiting_since', ARGV[6])
end
if tonumber(ARGV[2]) - tonumber(since) > tonumber(ARGV[3]) then return 2 end
redis.call('HSET', KEYS[1], 'status', 'PENDING', 'waiting', ARGV[4], 'next_attempt_at', '')
unadmit(redis.call('HGET', KEYS[1], 'owner'), ARGV[1]) -- it waits out of the queues' way
reindex(status, 'PENDING')
emit(ARGV[5], 'status', ARGV[7], '')
return 1
`)

// Waiting records that a task waits for budget (flow control): it is
// PENDING again, says why and until when, and keeps when it began to wait.
// ErrWaitedTooLong when that was more than maxWait ago.
func (s *Store) Waiting(ctx context.Context, id string, w task.Waiting, maxWait time.Duration, at time.Time) error {
	shown := w
	shown.Since = time.Time{}
	event := mustJSON(StatusEvent{TaskID: id, Status: task.StatusPending, Waiting: &shown})
	n, err := waitScript.Run(ctx, s.rdb, keys(id), id, at.UnixMilli(), maxWait.Milliseconds(), mustJSON(shown),
		notify.EventsChannel, formatTime(at), event).Int()
	switch {
	case err != nil:
		return fmt.Errorf("store: wait %s: %w", id, err)
	case n == 0:
		return ErrFinished
	case n == 2:
		return ErrWaitedTooLong
	case n < 0:
		return task.NotFound(id)
	}
	return nil
}

// Success is what a task produced.
type Success struct {
	Provider   string
	Deployment string // with a routing file
	Result     json.RawMessage
	// ResultKey names a result kept in the artifact store instead of
	// Result, when it is too large for a record.
	ResultKey string
	Usage     *task.Metered // added to the owner's usage of the day
	Calls     []task.Call   // the routed calls of the last attempt
}

// Succeeded records the result, and adds its usage to the owner's day in
// the same step, so usage is counted once however often a worker retries
// the write; the record expires RESULT_TTL later.
func (s *Store) Succeeded(ctx context.Context, id string, out Success, at time.Time) error {
	update := []any{"status", string(task.StatusSuccess), "provider", out.Provider, "result", string(out.Result), "result_key", out.ResultKey, "error", "",
		"completed_at", formatTime(at), "expires_at", formatTime(at.Add(s.resultTTL)), "next_attempt_at", ""}
	if out.Deployment != "" {
		update = append(update, "deployment", out.Deployment)
	}
	if out.Usage != nil {
		update = append(update, "usage", mustJSON(out.Usage))
	}
	return s.transition(ctx, id, task.StatusSuccess, nil, s.resultTTL, change{calls: out.Calls, usage: out.Usage, at: at}, update...)
}

// Revoked ends a task that has not ended: it will not run, or, running, is
// stopped. It returns ErrFinished for a task that had already ended.
func (s *Store) Revoked(ctx context.Context, id, reason string, at time.Time) error {
	return s.revoked(ctx, id, task.Failure{Code: task.FailureRevoked, Message: reason}, at)
}

// Overdue returns up to limit tasks whose deadline has passed by now.
func (s *Store) Overdue(ctx context.Context, now time.Time, limit int64) ([]string, error) {
	ids, err := s.rdb.ZRangeByScore(ctx, DeadlinesKey, &redis.ZRangeBy{Min: "-inf", Max: fmt.Sprint(now.UnixMilli()), Count: limit}).Result()
	if err != nil {
		return nil, fmt.Errorf("store: overdue: %w", err)
	}
	return ids, nil
}

// DeadlinePassed ends a task whose deadline has passed (REVOKED,
// deadline_exceeded; a running attempt is stopped, as a cancel stops it)
// and forgets its deadline. It returns ErrFinished for a task that had
// ended by then.
func (s *Store) DeadlinePassed(ctx context.Context, id string, at time.Time) error {
	err := s.revoked(ctx, id, task.Failure{Code: task.FailureDeadline, Message: "the task's deadline passed before it ended"}, at)
	if err != nil && !errors.Is(err, ErrFinished) && task.CodeOf(err) != task.ENOTFOUND {
		return err
	}
	if zerr := s.rdb.ZRem(ctx, DeadlinesKey, id).Err(); zerr != nil {
		return fmt.Errorf("store: forget the deadline of %s: %w", id, zerr)
	}
	if task.CodeOf(err) == task.ENOTFOUND {
		return ErrFinished
	}
	return err
}

func (s *Store) revoked(ctx context.Context, id string, failure task.Failure, at time.Time) error {
	return s.transition(ctx, id, task.StatusRevoked, &failure, s.resultTTL, change{},
		"status", string(task.StatusRevoked), "error", mustJSON(failure),
		"completed_at", formatTime(at), "expires_at", formatTime(at.Add(s.resultTTL)), "next_attempt_at", "")
}

// Failed records the final failure, and the routed calls of the last
// attempt; the record expires RESULT_TTL later.
func (s *Store) Failed(ctx context.Context, id string, failure task.Failure, at time.Time, calls ...task.Call) error {
	return s.transition(ctx, id, task.StatusFailure, &failure, s.resultTTL, change{calls: calls},
		"status", string(task.StatusFailure), "provider", failure.Provider, "error", mustJSON(failure),
		"completed_at", formatTime(at), "expires_at", formatTime(at.Add(s.resultTTL)), "next_attempt_at", "")
}

// transitionScript applies a change unless the task has ended or its record
// is missing, and adds its status event.
//
// ARGV[2]  TTL in milliseconds, set when the task ends; 0 while it goes on
// ARGV[3]  the channel that hears of endings (notify.Channel)
// ARGV[4]  the events channel (notify.EventsChannel)
// ARGV[5]  the status event
// ARGV[6]  routed calls to append to the record, one JSON object a line
// (empty: none)
// ARGV[7]  usage to add to the owner's day, as add_usage takes it (empty: none)
// ARGV[8:] field/value pairs to write
//
// Returns 1 when applied, 0 when the task had ended, -1 when missing.
var transitionScript = redis.NewScript(prelude + usageLua + `
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
if terminal(status) then return 0 end
if ARGV[6] ~= '' then
  local old = redis.call('HGET', KEYS[1], 'calls')
  if old and old ~= '' then redis.call('HSET', KEYS[1], 'calls', old .. '\n' .. ARGV[6])
  else redis.call('HSET', KEYS[1], 'calls', ARGV[6]) end
end
if ARGV[7] ~= '' then
  add_usage(redis.call('HGET', KEYS[1], 'owner') or '` + noOwner + `', ARGV[7])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 8))
reindex(status, redis.call('HGET', KEYS[1], 'status'))
if ARGV[2] ~= '0' then
  emit(ARGV[4], 'status', ARGV[5], 'completed')
  finish(ARGV[2], ARGV[3])
else
  emit(ARGV[4], 'status', ARGV[5], '')
end
return 1
`)

// change is what a transition adds besides its fields.
type change struct {
	calls []task.Call
	usage *task.Metered
	at    time.Time // the day usage counts for
}

func (c change) args() (calls, usage string) {
	lines := make([]string, len(c.calls))
	for i, call := range c.calls {
		lines[i] = mustJSON(call)
	}
	if c.usage != nil {
		usage = usageSpec(*c.usage, c.at)
	}
	return strings.Join(lines, "\n"), usage
}

func (s *Store) transition(ctx context.Context, id string, to task.Status, failure *task.Failure, ttl time.Duration, c change, update ...any) error {
	calls, usage := c.args()
	args := make([]any, 0, 7+len(update))
	args = append(args, id, ttl.Milliseconds(), notify.Channel, notify.EventsChannel, statusEvent(id, to, 0, failure), calls, usage)
	args = append(args, update...)
	n, err := transitionScript.Run(ctx, s.rdb, keys(id), args...).Int()
	switch {
	case err != nil:
		return fmt.Errorf("store: update %s: %w", id, err)
	case n == 0:
		return ErrFinished
	case n < 0:
		return task.NotFound(id)
	}
	return nil
}

// Unfinished returns up to limit ids of unfinished tasks created before
// before, oldest first, starting after the id whose score is after (0 from
// the start), with the score to resume from.
func (s *Store) Unfinished(ctx context.Context, before time.Time, after int64, limit int64) ([]string, int64, error) {
	zs, err := s.rdb.ZRangeByScoreWithScores(ctx, UnfinishedKey, &redis.ZRangeBy{
		Min: fmt.Sprintf("(%d", after), Max: fmt.Sprint(before.UnixMilli()), Count: limit,
	}).Result()
	if err != nil {
		return nil, 0, fmt.Errorf("store: unfinished: %w", err)
	}
	ids := make([]string, len(zs))
	for i, z := range zs {
		ids[i] = z.Member.(string)
		after = int64(z.Score)
	}
	return ids, after, nil
}

// Forget drops id from the unfinished set, for a record that no longer
// exists.
func (s *Store) Forget(ctx context.Context, id string) error {
	if err := s.rdb.ZRem(ctx, UnfinishedKey, id).Err(); err != nil {
		return fmt.Errorf("store: forget %s: %w", id, err)
	}
	return nil
}

func decode(id string, h map[string]string) (*task.Record, error) {
	rec := &task.Record{
		ID:       id,
		Type:     task.Type(h["type"]),
		Status:   task.Status(h["status"]),
		Provider: h["provider"],
	}
	rec.Attempts, _ = strconv.Atoi(h["attempts"])
	rec.CreatedAt = parseTime(h["created_at"])
	rec.StartedAt = parseTimePtr(h["started_at"])
	rec.CompletedAt = parseTimePtr(h["completed_at"])
	rec.NextAttemptAt = parseTimePtr(h["next_attempt_at"])
	rec.ExpiresAt = parseTimePtr(h["expires_at"])
	rec.CancelAt = parseTimePtr(h["cancel_at"])
	rec.ScheduledAt = parseTimePtr(h["scheduled_at"])
	rec.DeadlineAt = parseTimePtr(h["deadline_at"])
	if rec.ResultKey = h["result_key"]; rec.ResultKey != "" {
		rec.ResultURL = "/background/tasks/" + id
	}
	for f, v := range h {
		if k, ok := strings.CutPrefix(f, metaField); ok {
			if rec.Metadata == nil {
				rec.Metadata = map[string]string{}
			}
			rec.Metadata[k] = v
		}
	}
	rec.Priority = task.Priority(h["priority"])
	rec.Owner = h["owner"]
	rec.Admission = h["admission"]
	rec.PipelineID, rec.PipelineStep = h["pipeline"], h["pipeline_step"]
	rec.RetryOf, rec.RetriedBy = h["retry_of"], h["retried_by"]
	if v := h["payload"]; v != "" {
		rec.Payload = json.RawMessage(v)
	}
	if v := h["progress"]; v != "" {
		rec.Progress = new(task.Progress)
		if err := json.Unmarshal([]byte(v), rec.Progress); err != nil {
			return nil, fmt.Errorf("store: decode progress of %s: %w", id, err)
		}
	}
	if v := h["webhook_url"]; v != "" {
		rec.WebhookURL = v
		shown := h["webhook_shown"]
		if shown == "" { // written before webhook URLs were sealed
			shown = task.ShownWebhookURL(v)
		}
		rec.Webhook = &task.WebhookInfo{URL: shown, Events: strings.Split(h["webhook_events"], ",")}
	}
	if v := h["input"]; v != "" {
		rec.Input = json.RawMessage(v)
	}
	if v := h["result"]; v != "" {
		rec.Result = json.RawMessage(v)
	}
	rec.Deployment = h["deployment"]
	if v := h["usage"]; v != "" {
		rec.Usage = new(task.Metered)
		if err := json.Unmarshal([]byte(v), rec.Usage); err != nil {
			return nil, fmt.Errorf("store: decode usage of %s: %w", id, err)
		}
	}
	for line := range strings.SplitSeq(h["calls"], "\n") {
		if line == "" { // a record without calls: every status read of an unrouted task
			continue
		}
		var c task.Call
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			return nil, fmt.Errorf("store: decode calls of %s: %w", id, err)
		}
		rec.Calls = append(rec.Calls, c)
	}
	if v := h["waiting"]; v != "" && rec.Status == task.StatusPending {
		rec.Waiting = new(task.Waiting)
		if err := json.Unmarshal([]byte(v), rec.Waiting); err != nil {
			return nil, fmt.Errorf("store: decode waiting of %s: %w", id, err)
		}
		rec.Waiting.Since = parseTime(h["waiting_since"])
	}
	if v := h["error"]; v != "" {
		rec.Error = new(task.Failure)
		if err := json.Unmarshal([]byte(v), rec.Error); err != nil {
			return nil, fmt.Errorf("store: decode error of %s: %w", id, err)
		}
	}
	return rec, nil
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func parseTime(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

func parseTimePtr(s string) *time.Time {
	if s == "" {
		return nil
	}
	t := parseTime(s)
	return &t
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own plain structs are passed
	}
	return string(b)
}

// claimRetryScript names the task that runs a FAILURE or REVOKED task
// again, unless one is named already.
//
// ARGV[1] the new task's id. Returns {1, the id named} when the task may be
// retried, {0, its status} when it may not, -1 and an empty string when
// missing.
var claimRetryScript = redis.NewScript(`
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {-1, ''} end
if status ~= 'FAILURE' and status ~= 'REVOKED' then return {0, status} end
redis.call('HSETNX', KEYS[1], 'retried_by', ARGV[1])
return {1, redis.call('HGET', KEYS[1], 'retried_by')}
`)

// ErrNotRetriable is returned by ClaimRetry for a task that has not ended
// FAILURE or REVOKED.
var ErrNotRetriable = errors.New("store: only a FAILURE or REVOKED task is retried")

// ClaimRetry names newID as the task that runs task id again, unless
// another is named already, and returns the one named: all concurrent
// retries of a task agree on one new task.
func (s *Store) ClaimRetry(ctx context.Context, id, newID string) (string, error) {
	v, err := claimRetryScript.Run(ctx, s.rdb, []string{key(id)}, newID).Slice()
	if err != nil {
		return "", fmt.Errorf("store: claim the retry of %s: %w", id, err)
	}
	n, _ := v[0].(int64)
	named, _ := v[1].(string)
	switch n {
	case -1:
		return "", task.NotFound(id)
	case 0:
		return "", fmt.Errorf("%w (it is %s)", ErrNotRetriable, named)
	}
	return named, nil
}

// releaseRetryScript unnames the retry of a task, if it is still ARGV[1].
var releaseRetryScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'retried_by') == ARGV[1] then redis.call('HDEL', KEYS[1], 'retried_by') end
return 1
`)

// ReleaseRetry unnames newID as task id's retry, for a retry that could not
// be submitted.
func (s *Store) ReleaseRetry(ctx context.Context, id, newID string) error {
	if err := releaseRetryScript.Run(ctx, s.rdb, []string{key(id)}, newID).Err(); err != nil {
		return fmt.Errorf("store: release the retry of %s: %w", id, err)
	}
	return nil
}
