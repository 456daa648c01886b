package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/siganteng/siganteng/internal/task"
)

// Admission keeps one API key's burst from filling the worker queues ahead
// of every other key's tasks. asynq serves each queue first in, first out,
// so a task waits behind every task queued before it, whoever's. A key
// may have at most a window of tasks in the queues at once (admitted); its
// next ones wait in its own line, in Redis, and go in as its admitted
// tasks end or start waiting for a provider's budget. The window is the
// running workers' slots and an eighth: one key alone still fills every
// slot, and another key's task is queued behind at most an eighth of the
// slots' worth of the first key's work.
const (
	// AdmittedPrefix starts a key's set of admitted task ids, each scored
	// by when its admission lapses (see admittedLease).
	AdmittedPrefix = "{siganteng}:admitted:owner:"
	// LinePrefix starts a key's line: a list of the ids of its tasks that
	// wait to be admitted, oldest first; LowLinePrefix its line of low
	// priority tasks, admitted only when the other is empty, as asynq's
	// weights put low work behind normal work.
	LinePrefix    = "{siganteng}:line:owner:"
	LowLinePrefix = "{siganteng}:line:low:owner:"
	// LinedOwnersKey is the set of keys with a line.
	LinedOwnersKey = "{siganteng}:line:owners"
	// AdmitSignalKey is a list of keys whose admitted task has just ended
	// while their line was not empty: the admitters wait on it.
	AdmitSignalKey = "{siganteng}:admit:signal"
	// AdmitWindowKey holds the window; it lapses when no worker renews it,
	// and without it every task is admitted.
	AdmitWindowKey = "{siganteng}:admit:window"
	// AdmitSlotsKey is a sorted set of the running workers' slots
	// ("<process> <slots>"), scored by when each entry lapses.
	AdmitSlotsKey = "{siganteng}:admit:slots"
)

// admittedLease bounds how long a task counts as admitted: a record
// deleted or lost without ending would otherwise hold a place for good.
// A task that runs longer only lets its key have one more admitted.
const admittedLease = 10 * time.Minute

// admissionLua defines admit_or_line(owner, id, now, low) for the create
// script: true when the task must wait in its key's line. A task is
// admitted while its key's admitted tasks are fewer than the window and no
// task it must not pass is in line: none of normal priority, and for a low
// one, none at all.
var admissionLua = `
local function admit_or_line(owner, id, now, low)
  local window = tonumber(redis.call('GET', '` + AdmitWindowKey + `') or '0')
  if window <= 0 then return false end
  local admitted = '` + AdmittedPrefix + `' .. owner
  local line = '` + LinePrefix + `' .. owner
  local lowLine = '` + LowLinePrefix + `' .. owner
  redis.call('ZREMRANGEBYSCORE', admitted, '-inf', now)
  local ahead = redis.call('LLEN', line)
  if low then ahead = ahead + redis.call('LLEN', lowLine) end
  if ahead == 0 and redis.call('ZCARD', admitted) < window then
    redis.call('ZADD', admitted, now + ` + admittedLeaseText + `, id)
    return false
  end
  if low then redis.call('RPUSH', lowLine, id) else redis.call('RPUSH', line, id) end
  redis.call('SADD', '` + LinedOwnersKey + `', owner)
  return true
end
`

var admittedLeaseText = strconv.FormatInt(admittedLease.Milliseconds(), 10)

// unadmitLua defines unadmit(owner, id), for the scripts that end a task or
// make it wait for budget: it gives up the task's admission and, when its
// key has a line, wakes an admitter for that key.
var unadmitLua = `
local function unadmit(owner, id)
  if not owner or owner == '' then return end
  if redis.call('ZREM', '` + AdmittedPrefix + `' .. owner, id) == 1 and
     redis.call('EXISTS', '` + LinePrefix + `' .. owner, '` + LowLinePrefix + `' .. owner) > 0 then
    redis.call('LPUSH', '` + AdmitSignalKey + `', owner)
    redis.call('LTRIM', '` + AdmitSignalKey + `', 0, 1023)
  end
end
`

// admitScript registers the calling worker's slots, sets the window from
// every running worker's, and admits tasks from the lines of the keys
// given and of those signalled meanwhile (every key with a line when none
// is given), as many as each key's window has room for and at most ARGV[5]
// in all. Tasks ended while in line are dropped from it.
//
// ARGV[1] now in ms, ARGV[2] "<process> <slots>", ARGV[3] when that entry
// lapses in ms, ARGV[4] a fixed window (0: from the slots), ARGV[5] the
// most to admit, ARGV[6:] the keys to look at
//
// Returns {id, owner, type, priority, weight, created_ms, payload} for
// each task admitted, flattened.
var admitScript = redis.NewScript(`
local now = tonumber(ARGV[1])
redis.call('ZADD', '` + AdmitSlotsKey + `', ARGV[3], ARGV[2])
redis.call('ZREMRANGEBYSCORE', '` + AdmitSlotsKey + `', '-inf', now)
local window = tonumber(ARGV[4])
if window <= 0 then
  local slots = 0
  for _, m in ipairs(redis.call('ZRANGE', '` + AdmitSlotsKey + `', 0, -1)) do
    slots = slots + tonumber(string.match(m, '(%d+)$'))
  end
  window = slots + math.max(1, math.floor(slots / 8))
end
redis.call('SET', '` + AdmitWindowKey + `', window, 'PX', tonumber(ARGV[3]) - now)
local owners = {}
if #ARGV >= 6 then
  local seen = {}
  local given = {unpack(ARGV, 6)}
  for _, o in ipairs(redis.call('LRANGE', '` + AdmitSignalKey + `', 0, -1)) do given[#given + 1] = o end
  redis.call('DEL', '` + AdmitSignalKey + `')
  for _, o in ipairs(given) do
    if not seen[o] then seen[o] = true; owners[#owners + 1] = o end
  end
else
  owners = redis.call('SMEMBERS', '` + LinedOwnersKey + `')
end
local most = tonumber(ARGV[5])
local out = {}
for _, owner in ipairs(owners) do
  local admitted = '` + AdmittedPrefix + `' .. owner
  local line = '` + LinePrefix + `' .. owner
  local lowLine = '` + LowLinePrefix + `' .. owner
  redis.call('ZREMRANGEBYSCORE', admitted, '-inf', now)
  local room = window - redis.call('ZCARD', admitted)
  while room > 0 and #out < most * 7 do
    local id = redis.call('LPOP', line) or redis.call('LPOP', lowLine)
    if not id then
      redis.call('SREM', '` + LinedOwnersKey + `', owner)
      break
    end
    local rec = '` + KeyPrefix + `' .. id
    local f = redis.call('HMGET', rec, 'status', 'admission', 'type', 'priority', 'weight', 'created_ms', 'payload')
    if f[1] == 'PENDING' and f[2] == '` + task.AdmissionWaiting + `' then
      redis.call('HSET', rec, 'admission', '` + task.AdmissionAdmitted + `', 'waiting', '', 'waiting_since', '')
      redis.call('ZADD', admitted, now + ` + admittedLeaseText + `, id)
      local n = #out
      out[n + 1], out[n + 2], out[n + 3], out[n + 4] = id, owner, f[3], f[4] or ''
      out[n + 5], out[n + 6], out[n + 7] = f[5] or '1', f[6] or '0', f[7] or ''
      room = room - 1
    end
  end
end
return out
`)

// Admission is what one round of admitting is told.
type Admission struct {
	Process string // the worker process, unique while it runs
	Slots   int    // its slots, counted in the window
	Lapse   time.Duration
	// Window is a fixed window (MAX_QUEUED_PER_KEY); 0 sizes it from
	// the running workers' slots.
	Window int
	Most   int // the most tasks to admit in the round
	// Owners are the keys to look at, with those signalled since;
	// every key with a line when empty.
	Owners []string
}

// Admitted is a task let out of its key's line, with what queuing it needs.
type Admitted struct {
	ID       string
	Owner    string
	Type     task.Type
	Priority task.Priority
	Weight   int
	Created  time.Time
	Payload  []byte
}

// AdmitFromLines runs one round of admission (see admitScript) at now.
func (s *Store) AdmitFromLines(ctx context.Context, a Admission, now time.Time) ([]Admitted, error) {
	args := []any{now.UnixMilli(), fmt.Sprintf("%s %d", a.Process, a.Slots), now.Add(a.Lapse).UnixMilli(), a.Window, a.Most}
	for _, o := range a.Owners {
		args = append(args, o)
	}
	vals, err := admitScript.Run(ctx, s.rdb, []string{AdmitSlotsKey, AdmitWindowKey, LinedOwnersKey}, args...).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("store: admit: %w", err)
	}
	out := make([]Admitted, 0, len(vals)/7)
	for i := 0; i+6 < len(vals); i += 7 {
		weight, _ := strconv.Atoi(vals[i+4])
		ms, _ := strconv.ParseInt(vals[i+5], 10, 64)
		out = append(out, Admitted{ID: vals[i], Owner: vals[i+1], Type: task.Type(vals[i+2]), Priority: task.Priority(vals[i+3]),
			Weight: max(weight, 1), Created: time.UnixMilli(ms).UTC(), Payload: []byte(vals[i+6])})
	}
	return out, nil
}

// NextAdmission waits up to wait for a key whose admitted task has ended
// while it had a line; "" when the wait ran out. AdmitFromLines, given it, looks at
// the others signalled meanwhile too.
func (s *Store) NextAdmission(ctx context.Context, wait time.Duration) (string, error) {
	v, err := s.rdb.BLPop(ctx, wait, AdmitSignalKey).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("store: admission signal: %w", err)
	}
	return v[1], nil
}

// Lines returns how many tasks wait in each key's lines (normal and low),
// for the metrics; keys with none are left out.
func (s *Store) Lines(ctx context.Context) (map[string]int64, error) {
	owners, err := s.rdb.SMembers(ctx, LinedOwnersKey).Result()
	if err != nil {
		return nil, fmt.Errorf("store: lines: %w", err)
	}
	if len(owners) == 0 {
		return nil, nil
	}
	lens := make([][2]*redis.IntCmd, len(owners))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, o := range owners {
			lens[i] = [2]*redis.IntCmd{p.LLen(ctx, LinePrefix+o), p.LLen(ctx, LowLinePrefix+o)}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: lines: %w", err)
	}
	out := map[string]int64{}
	for i, o := range owners {
		if n := lens[i][0].Val() + lens[i][1].Val(); n > 0 {
			out[o] = n
		}
	}
	return out, nil
}
