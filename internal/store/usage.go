package store

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/siganteng/siganteng/internal/task"
)

// UsagePrefix starts the key of one owner's usage on one UTC day: a hash of
// counters, added to by the script that records a success.
const UsagePrefix = "{siganteng}:usage:"

// UsageOwnersKey is the set of owners with usage, for an admin's view.
const UsageOwnersKey = "{siganteng}:usage:owners"

// noOwner stands for tasks submitted to an open API, which have no owner.
const noOwner = "-"

// usageTTL keeps a day's usage for a little over a year.
const usageTTL = 400 * 24 * time.Hour

var usageTTLText = strconv.FormatInt(usageTTL.Milliseconds(), 10)

// Day is the UTC day t falls on, as usage keys name it.
func Day(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// UsageKey is owner's usage key for the day of t.
func UsageKey(owner string, t time.Time) string {
	if owner == "" {
		owner = noOwner
	}
	return UsagePrefix + owner + ":" + Day(t)
}

func nanoUSD(usd float64) int64 { return int64(math.Round(usd * 1e9)) }

// usageLua defines add_usage(owner, spec), which adds one task's usage to
// owner's day; spec is usageSpec's "day input output characters audio_ms
// cost_nano_usd". The success script and settleScript share it.
var usageLua = `
local function add_usage(owner, spec)
  local f = {}
  for w in string.gmatch(spec, '%S+') do f[#f + 1] = w end
  local k = '` + UsagePrefix + `' .. owner .. ':' .. f[1]
  redis.call('HINCRBY', k, 'tasks', 1)
  local names = {'input_tokens', 'output_tokens', 'characters', 'audio_ms', 'cost_nano_usd'}
  for i, name in ipairs(names) do
    if f[i + 1] ~= '0' then redis.call('HINCRBY', k, name, f[i + 1]) end
  end
  redis.call('PEXPIRE', k, ` + usageTTLText + `)
  redis.call('SADD', '` + UsageOwnersKey + `', owner)
end
`

// budgetLua defines over_budget(key, tokens, nano_usd), which returns 1
// while the day's usage at key is under both budgets (0: none), 2 past the
// token budget, 3 past the cost budget, and 4 when the tokens used and
// those reserved by calls still running reach the token budget; and
// reserve(key, tokens, estimate), which reserves estimate tokens against a
// token budget. createScript and reserveScript share them; release (in
// the prelude of the task scripts, and releaseLua) gives a reservation back.
var budgetLua = `
local function over_budget(key, tokens, nano)
  if tokens == '0' and nano == '0' then return 1 end
  local u = redis.call('HMGET', key, 'input_tokens', 'output_tokens', 'cost_nano_usd', 'reserved_tokens')
  local used = tonumber(u[1] or '0') + tonumber(u[2] or '0')
  if tokens ~= '0' and used >= tonumber(tokens) then return 2 end
  if nano ~= '0' and tonumber(u[3] or '0') >= tonumber(nano) then return 3 end
  if tokens ~= '0' and used + tonumber(u[4] or '0') >= tonumber(tokens) then return 4 end
  return 1
end
local function reserve(key, tokens, estimate)
  if tokens == '0' or estimate == '0' then return end
  redis.call('HINCRBY', key, 'reserved_tokens', estimate)
  redis.call('PEXPIRE', key, ` + usageTTLText + `)
end
`

// releaseLua defines release(), which gives back the tokens the task at
// KEYS[1] reserved against its owner's budget when it was created.
var releaseLua = `
local function release()
  local r = redis.call('HMGET', KEYS[1], 'reserved_tokens', 'reserved_in')
  if r[1] and r[1] ~= '' and r[2] then
    redis.call('HINCRBY', r[2], 'reserved_tokens', -tonumber(r[1]))
    redis.call('HDEL', KEYS[1], 'reserved_tokens', 'reserved_in')
  end
end
`

func usageSpec(u task.Metered, at time.Time) string {
	cost := 0.0
	if u.CostUSD != nil {
		cost = float64(*u.CostUSD)
	}
	return fmt.Sprintf("%s %d %d %d %d %d", Day(at), u.InputTokens, u.OutputTokens, u.Characters,
		int64(math.Round(u.AudioSeconds*1000)), nanoUSD(cost))
}

// settleScript adds a synchronous call's usage to its owner's day and gives
// back what it reserved. KEYS[1] the day's usage, KEYS[2] the day the
// reservation was made in; ARGV[1] owner, ARGV[2] the usage spec (” for
// none: the call failed), ARGV[3] the tokens reserved.
var settleScript = redis.NewScript(usageLua + `
if ARGV[2] ~= '' then add_usage(ARGV[1], ARGV[2]) end
if ARGV[3] ~= '0' then redis.call('HINCRBY', KEYS[2], 'reserved_tokens', -tonumber(ARGV[3])) end
return 1`)

// Reservation is what a synchronous call holds of its owner's budget.
type Reservation struct {
	Owner  string
	Tokens int64     // 0: nothing reserved
	At     time.Time // the day it counts against
}

// SettleUsage adds the usage of a call that made no task (a synchronous one)
// to owner's day and gives back what it reserved, in one round trip; used
// nil for a call that failed.
func (s *Store) SettleUsage(ctx context.Context, r Reservation, used *task.Metered, at time.Time) error {
	owner := r.Owner
	if owner == "" {
		owner = noOwner
	}
	spec := ""
	if used != nil {
		spec = usageSpec(*used, at)
	} else if r.Tokens == 0 {
		return nil
	}
	if r.At.IsZero() {
		r.At = at
	}
	if err := settleScript.Run(ctx, s.rdb, []string{UsageKey(owner, at), UsageKey(owner, r.At)}, owner, spec, r.Tokens).Err(); err != nil {
		return fmt.Errorf("store: settle usage: %w", err)
	}
	return nil
}

var reserveScript = redis.NewScript(budgetLua + `
local over = over_budget(KEYS[1], ARGV[1], ARGV[2])
if over == 1 then reserve(KEYS[1], ARGV[1], ARGV[3]) end
return over`)

// Reserve checks owner's daily budgets of limits on the day of at and, when
// there is a token budget, reserves estimate tokens against it, in one
// round trip: ErrTokenBudget or ErrCostBudget when a budget is used,
// ErrBudgetReserved when calls still running hold the rest of it.
// SettleUsage gives the reservation back.
func (s *Store) Reserve(ctx context.Context, owner string, limits Limits, estimate int64, at time.Time) (Reservation, error) {
	r := Reservation{Owner: owner, At: at}
	if limits.DailyTokens == 0 && limits.DailyCostUSD == 0 {
		return r, nil
	}
	if limits.DailyTokens > 0 {
		r.Tokens = max(estimate, 0)
	}
	n, err := reserveScript.Run(ctx, s.rdb, []string{UsageKey(owner, at)}, limits.DailyTokens, nanoUSD(limits.DailyCostUSD), r.Tokens).Int()
	switch {
	case err != nil:
		return Reservation{}, fmt.Errorf("store: reserve budget: %w", err)
	case n == 2:
		return Reservation{}, ErrTokenBudget
	case n == 3:
		return Reservation{}, ErrCostBudget
	case n == 4:
		return Reservation{}, ErrBudgetReserved
	}
	return r, nil
}

// UsageOwners lists every owner that has usage; "-" is the open API.
func (s *Store) UsageOwners(ctx context.Context) ([]string, error) {
	owners, err := s.rdb.SMembers(ctx, UsageOwnersKey).Result()
	if err != nil {
		return nil, fmt.Errorf("store: usage owners: %w", err)
	}
	slices.Sort(owners)
	return owners, nil
}

// Usage returns the days from from to to (inclusive, at most a few hundred)
// on which each owner had usage, oldest first, in one round trip.
func (s *Store) Usage(ctx context.Context, owners []string, from, to time.Time) ([]task.DayUsage, error) {
	type ask struct {
		owner, day string
		cmd        *redis.MapStringStringCmd
	}
	var asks []ask
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, owner := range owners {
			for d := from.UTC().Truncate(24 * time.Hour); !d.After(to); d = d.AddDate(0, 0, 1) {
				asks = append(asks, ask{owner: owner, day: Day(d), cmd: p.HGetAll(ctx, UsageKey(owner, d))})
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: usage: %w", err)
	}
	var out []task.DayUsage
	for _, a := range asks {
		h := a.cmd.Val()
		if len(h) == 0 {
			continue
		}
		n := func(f string) int64 { v, _ := strconv.ParseInt(h[f], 10, 64); return v }
		owner := a.owner
		if owner == "" {
			owner = noOwner
		}
		out = append(out, task.DayUsage{Owner: owner, Date: a.day, Tasks: n("tasks"), InputTokens: n("input_tokens"),
			OutputTokens: n("output_tokens"), Characters: n("characters"),
			AudioSeconds: float64(n("audio_ms")) / 1000, CostUSD: task.USD(float64(n("cost_nano_usd")) / 1e9)})
	}
	return out, nil
}
