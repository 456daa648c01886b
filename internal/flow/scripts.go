package flow

import "github.com/redis/go-redis/v9"

// effLua is the limit in force: the configured one, or what the provider
// said when that is lower or nothing is configured.
const effLua = `
local function eff(conf, learned)
  conf = tonumber(conf)
  learned = tonumber(learned or '0')
  if learned > 0 and (conf == 0 or learned < conf) then return learned end
  return conf
end
`

// acquireScript is the whole decision for one call, in one round trip: a
// GCRA (generic cell rate algorithm) for requests and for tokens, whose
// theoretical arrival times (req_tat, tok_tat) are the budget, a sorted set
// of leases for concurrent calls, and the pause a 429 asked for. A call that
// has to wait may reserve its slot: the arrival times move on as if it had
// run, so the next caller is told the slot after it, and a queued task
// comes back for its slot (KEYS[3]) instead of racing for a new one.
//
// Fair share: while the deployment is saturated, each API key may hold at
// most ARGV[13] ms' worth of the slots ahead (its reserved slots are the
// sorted set <state>:slots:<key>). A key's queued tasks past that take a
// ticket (KEYS[6], kept across their returns) and are told to come back
// about when their turn comes: from how many of the key's tickets are
// ahead of theirs (issued, t:<key>, less served, s:<key>), and how many
// keys had tickets out in the last 5 s (KEYS[5]). So a burst
// of one key takes all the budget no other key asks for, two bursts share
// it evenly, and another key's single task waits about ARGV[13] behind a
// burst, not behind the burst's whole backlog.
//
// Weights: a key of weight w (ARGV[14]) may hold w times ARGV[13] ahead,
// and its turns come w times as often: the keys with tickets out share
// the budget in proportion to their weights (w:<key> in KEYS[4]).
//
// KEYS[1] the deployment's state (hash), KEYS[2] its call leases (sorted
// set, scored by expiry), KEYS[3] the caller's reservation, KEYS[4] the
// keys' tickets and last reservations (hash), KEYS[5] the keys with
// tickets out lately (sorted set, by when), KEYS[6] the caller's ticket
// ARGV[1] now in ms, [2] configured rpm, [3] configured tpm, [4] concurrent
// calls (0: none), [5] the call's estimated tokens, [6] the longest wait a
// slot is reserved for (ms), [7] waits above this many ms keep KEYS[3] so
// the caller can come back for its slot (-1: never), [8] call id, [9] lease
// ms, [10] burst tolerance ms, [11] '1' when the caller already holds a
// slot, [12] the caller's key, [13] how far ahead one key may reserve (ms),
// [14] the caller's key's weight, [15] the share a paced rate (learned
// from 429s alone, see pacing.go) grows by when it is met
//
// Returns {granted, wait ms, reason, reserved}: granted with a wait means
// "your slot is in wait ms; sleep, then call"; reserved is 1 for a slot
// held, 2 for a ticket's turn (a time to come back, not a slot).
var acquireScript = redis.NewScript(effLua + `
local now = tonumber(ARGV[1])
local st = redis.call('HMGET', KEYS[1], 'req_tat', 'tok_tat', 'rpm', 'tpm', 'paused_until', 'paced_rpm', 'paced_at', 'paced_calls', 'paced_max')
local rpm, tpm, conc = eff(ARGV[2], st[3]), eff(ARGV[3], st[4]), tonumber(ARGV[4])
local paced = tonumber(st[6] or '0')
if paced > 0 and tonumber(st[3] or '0') == 0 and (rpm == 0 or paced < rpm) then rpm = paced else paced = 0 end
-- A pace learned from 429s alone grows when it is met: when the calls
-- made at it since paced_at (a reserved slot counts when it is used) come
-- to 90% of what it allows, at most once a second; near the pace the last
-- 429 cut (paced_max), six times slower, so that it stays near the limit
-- longer between 429s.
local function made()
  if paced > 0 then redis.call('HINCRBY', KEYS[1], 'paced_calls', 1) end
end
if paced > 0 then
  local since = now - tonumber(st[7] or '0')
  if since >= 1000 and tonumber(st[8] or '0') >= 0.9 * paced * since / 60000 then
    local grow = tonumber(ARGV[15])
    local cutAt = tonumber(st[9] or '0')
    if cutAt > 0 and paced >= 0.9 * cutAt then grow = grow / 6 end
    redis.call('HSET', KEYS[1], 'paced_rpm', math.floor(paced * (1 + grow) + 1), 'paced_at', now, 'paced_calls', 0)
  elseif since >= 5000 then
    redis.call('HSET', KEYS[1], 'paced_at', now, 'paced_calls', 0)
  end
end
local function lease()
  if conc == 0 then return true end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= conc then return false end
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[9]), ARGV[8])
  redis.call('PEXPIRE', KEYS[2], ARGV[9])
  return true
end
local slot = redis.call('GET', KEYS[3])
if slot or ARGV[11] == '1' then
  local wait = 0
  if slot then wait = math.max(0, tonumber(slot) - now) end
  if slot and ARGV[7] ~= '-1' and wait > tonumber(ARGV[7]) then return {0, wait, 'requests', 1} end
  if not lease() then return {0, 200, 'concurrency', 0} end
  if slot then
    redis.call('DEL', KEYS[3])
    made()
  end
  return {1, wait, '', 0}
end
local burst = tonumber(ARGV[10])
local paused = tonumber(st[5] or '0')
local wait, reason = 0, ''
if paused > now then wait, reason = paused - now, 'provider' end
local reqT, tokT, reqTat, tokTat = 0, 0, now, now
if rpm > 0 then
  reqT = 60000 / rpm
  reqTat = math.max(tonumber(st[1] or '0'), now, paused)
  local w = reqTat - now - burst
  if w > wait then wait, reason = w, 'requests' end
end
local cost = tonumber(ARGV[5])
if tpm > 0 and cost > 0 then
  tokT = 60000 / tpm
  tokTat = math.max(tonumber(st[2] or '0'), now, paused)
  local w = tokTat - now - burst
  if w > wait then wait, reason = w, 'tokens' end
end
local step = math.max(reqT, tokT * cost) -- this call's share of the budget, in ms
local weight = math.max(tonumber(ARGV[14]) or 1, 1)
local owner, H = ARGV[12], tonumber(ARGV[13]) * weight
local slots = KEYS[1] .. ':slots:' .. owner -- the key's reserved slots, by time
if step > 0 then
  redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
  local held = redis.call('ZCARD', slots)
  if held == 0 and now - tonumber(redis.call('HGET', KEYS[4], 'r:' .. owner) or '0') > 5000 then
    -- nothing reserved for a while: tickets of tasks that never came
    -- back (revoked, lost) no longer count ahead of the others
    local issued = redis.call('HGET', KEYS[4], 't:' .. owner)
    if issued then redis.call('HSET', KEYS[4], 's:' .. owner, issued) end
  end
  local share = math.max(1, math.floor(H / step))
  local ticket = redis.call('GET', KEYS[6])
  local served = tonumber(redis.call('HGET', KEYS[4], 's:' .. owner) or '0')
  -- tasks whose tickets are at the front of their key's line may fill the
  -- key's whole share; others only half, so the front always finds room
  -- (else later tickets, back in the same second, could keep taking the
  -- slots before it), and one overtaken goes at once
  local limit = math.max(1, math.floor(share / 2))
  if ticket and tonumber(ticket) - served <= share then limit = share end
  -- one whose turn has just passed (later tickets were served first) goes
  -- now; older ones were voided above and queue as the front does
  if ticket and tonumber(ticket) <= served and tonumber(ticket) > served - share then limit = held + 1 end
  if wait > 0 and ARGV[7] ~= '-1' and held >= limit then
    -- this key holds its share of the slots ahead: a ticket, and a time
    -- to come back about when its turn comes
    if not ticket then
      ticket = redis.call('HINCRBY', KEYS[4], 't:' .. owner, 1)
      redis.call('SET', KEYS[6], ticket, 'PX', 3600000)
    end
    redis.call('ZADD', KEYS[5], now, owner)
    redis.call('PEXPIRE', KEYS[5], 60000)
    redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - 5000)
    redis.call('HSET', KEYS[4], 'w:' .. owner, weight)
    local ahead = math.max(tonumber(ticket) - served, 1)
    -- the budget is shared by the keys with tickets out, each at its
    -- turn, in proportion to their weights
    local total = 0
    for _, k in ipairs(redis.call('ZRANGE', KEYS[5], 0, -1)) do
      total = total + (tonumber(redis.call('HGET', KEYS[4], 'w:' .. k)) or 1)
    end
    total = math.max(total, weight)
    -- A pace learned from 429s moves; tickets are issued while it is
    -- found, and a turn counted at a pace that then grows would come back
    -- late to slots nobody uses: their turns are counted at 80% of the
    -- step, and one that comes early is told again.
    local turn = step
    if paced > 0 then turn = step * 0.8 end
    return {0, math.max(ahead * turn * total / weight - H, 500), reason, 2}
  end
end
local function take()
  if reqT > 0 then redis.call('HSET', KEYS[1], 'req_tat', reqTat + reqT) end
  if tokT > 0 then redis.call('HSET', KEYS[1], 'tok_tat', tokTat + cost * tokT) end
  redis.call('PEXPIRE', KEYS[1], 86400000)
  if step > 0 then
    local at = now + math.max(wait, 0)
    redis.call('ZADD', slots, at, redis.call('HINCRBY', KEYS[4], 'n', 1))
    redis.call('PEXPIRE', slots, math.floor(math.max(wait, 0)) + 60000)
    redis.call('HSET', KEYS[4], 'r:' .. owner, now)
    redis.call('PEXPIRE', KEYS[4], 86400000)
    if redis.call('DEL', KEYS[6]) == 1 then redis.call('HINCRBY', KEYS[4], 's:' .. owner, 1) end
  end
end
if wait <= 0 then
  if not lease() then return {0, 200, 'concurrency', 0} end
  take()
  made()
  return {1, 0, '', 0}
end
if (reqT > 0 or tokT > 0) and wait <= tonumber(ARGV[6]) then
  take()
  if ARGV[7] ~= '-1' and wait > tonumber(ARGV[7]) then
    redis.call('SET', KEYS[3], math.floor(now + wait), 'PX', math.floor(wait) + 60000)
  else
    made() -- slept to in place
  end
  return {0, wait, reason, 1}
end
return {0, wait, reason, 0}
`)

// settleScript ends a call: its lease is returned, and the tokens budget is
// corrected by what the provider reported against what was estimated.
//
// KEYS[1] state, KEYS[2] leases; ARGV[1] call id (” for no lease),
// ARGV[2] reported minus estimated tokens, ARGV[3] configured tpm
var settleScript = redis.NewScript(effLua + `
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[2], ARGV[1]) end
local delta = tonumber(ARGV[2])
if delta ~= 0 then
  local tpm = eff(ARGV[3], redis.call('HGET', KEYS[1], 'tpm'))
  if tpm > 0 then redis.call('HINCRBYFLOAT', KEYS[1], 'tok_tat', delta * 60000 / tpm) end
end
return 1
`)

// learnScript keeps what a provider said: its limits, and a pause until a
// time (a 429's Retry-After, or a budget it says is spent until a reset).
//
// KEYS[1] state; ARGV[1] rpm said (0: nothing), ARGV[2] tpm said, ARGV[3]
// pause until, ms (0: none)
var learnScript = redis.NewScript(`
if ARGV[1] ~= '0' then redis.call('HSET', KEYS[1], 'rpm', ARGV[1]) end
if ARGV[2] ~= '0' then redis.call('HSET', KEYS[1], 'tpm', ARGV[2]) end
local p = tonumber(ARGV[3])
if p > 0 then
  local old = tonumber(redis.call('HGET', KEYS[1], 'paused_until') or '0')
  if p > old then redis.call('HSET', KEYS[1], 'paused_until', ARGV[3]) end
end
redis.call('PEXPIRE', KEYS[1], 86400000)
return 1
`)

// paceScript keeps the pace learned from a 429 that said nothing of the
// provider's limits (see pacing.go). With no pace yet, or within ARGV[4]
// ms of the first 429, each process's estimate (ARGV[3] rpm, the calls
// the provider took from it) is kept in KEYS[2] and the pace is their
// mean times the processes calling the deployment (KEYS[3], by their last
// look, in the last 10 s). Later, a 429 cuts the pace to ARGV[6] of
// itself, at most once every ARGV[5] ms, and never below half the
// estimate. A provider that states its requests limit is not paced.
//
// KEYS[1] the deployment's state, KEYS[2] the estimates (hash, by
// process), KEYS[3] the processes calling it (sorted set, by when);
// ARGV[1] process id, ARGV[2] the 429's time in ms, ARGV[3] the
// process's estimate (0: a cut)
//
// Returns the pace now (0: none).
var paceScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'rpm') then return 0 end
local now = tonumber(ARGV[2])
local st = redis.call('HMGET', KEYS[1], 'paced_rpm', 'paced_since', 'paced_by', 'paced_floor')
local pace, since = tonumber(st[1] or '0'), tonumber(st[2] or '0')
local estimate = tonumber(ARGV[3])
local estimating = pace == 0 or (st[3] == 'estimate' and now - since <= tonumber(ARGV[4]))
if estimating and estimate > 0 then
  if pace == 0 then
    redis.call('DEL', KEYS[2])
    redis.call('HSET', KEYS[1], 'paced_since', now, 'paced_by', 'estimate')
  end
  redis.call('HSET', KEYS[2], ARGV[1], estimate)
  redis.call('PEXPIRE', KEYS[2], 60000)
  local sum, n = 0, 0
  for _, v in ipairs(redis.call('HVALS', KEYS[2])) do sum, n = sum + tonumber(v), n + 1 end
  local callers = math.max(redis.call('ZCOUNT', KEYS[3], now - 10000, '+inf'), n, 1)
  pace = math.max(math.floor(sum / n * callers), 1)
  redis.call('HSET', KEYS[1], 'paced_rpm', pace, 'paced_at', now, 'paced_calls', 0, 'paced_floor', math.max(math.floor(pace / 2), 1))
elseif pace > 0 and not estimating and now - since >= tonumber(ARGV[5]) then
  local refusedAt = pace -- what growth slows near: the pace the 429 came at
  -- never below half the estimate: a provider that also refuses calls at
  -- random would otherwise be cut down to a crawl
  pace = math.max(math.floor(pace * tonumber(ARGV[6])), tonumber(st[4] or '1'), 1)
  redis.call('HSET', KEYS[1], 'paced_rpm', pace, 'paced_since', now, 'paced_by', 'cut', 'paced_at', now, 'paced_calls', 0, 'paced_max', refusedAt)
end
redis.call('PEXPIRE', KEYS[1], 86400000)
return pace
`)
