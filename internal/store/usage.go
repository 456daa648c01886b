package store

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
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

// DayUsage is one owner's usage on one day.
type DayUsage struct {
	Owner        string  `json:"key_id" doc:"The API key's id; \"-\" for tasks submitted while the API was open."`
	Date         string  `json:"date" format:"date"`
	Tasks        int64   `json:"tasks"`
	InputTokens  int64   `json:"input_tokens"`
	OutputTokens int64   `json:"output_tokens"`
	Characters   int64   `json:"characters"`
	AudioSeconds float64 `json:"audio_seconds"`
	CostUSD      float64 `json:"cost_usd"`
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
func (s *Store) Usage(ctx context.Context, owners []string, from, to time.Time) ([]DayUsage, error) {
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
	var out []DayUsage
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
		out = append(out, DayUsage{Owner: owner, Date: a.day, Tasks: n("tasks"), InputTokens: n("input_tokens"),
			OutputTokens: n("output_tokens"), Characters: n("characters"),
			AudioSeconds: float64(n("audio_ms")) / 1000, CostUSD: float64(n("cost_nano_usd")) / 1e9})
	}
	return out, nil
}
