package service

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/siganteng/siganteng/internal/auth"
	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
)

// UsageStore keeps usage per owner and day: the worker adds a task's as it
// records the success; the service adds a synchronous call's.
type UsageStore interface {
	UsageOwners(ctx context.Context) ([]string, error)
	Usage(ctx context.Context, owners []string, from, to time.Time) ([]task.DayUsage, error)
	AddUsage(ctx context.Context, owner string, u task.Metered, at time.Time) error
	// CheckBudget returns store.ErrTokenBudget or store.ErrCostBudget
	// when owner has used a budget of limits on the day of at.
	CheckBudget(ctx context.Context, owner string, limits store.Limits, at time.Time) error
}

// checkSync is what a synchronous call checks before it runs: the model it
// names, and the caller's daily budgets (queued tasks have the budgets
// checked by the script that creates them).
func (s *Service) checkSync(ctx context.Context, typ task.Type, input any) error {
	if err := s.checkModel(ctx, typ, input); err != nil {
		return err
	}
	caller := auth.FromContext(ctx)
	if s.deps.Usage == nil || caller.KeyID == "" {
		return nil
	}
	limits := store.Limits{DailyTokens: caller.DailyTokens, DailyCostUSD: caller.DailyCostUSD}
	now := s.deps.Now()
	bctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	err := s.deps.Usage.CheckBudget(bctx, caller.Owner(), limits, now)
	if lerr := limitError(err, limits, now); lerr != nil {
		return lerr
	}
	if err != nil {
		return task.Unavailable("the usage store is unavailable", err)
	}
	return nil
}

// countSync adds what a synchronous call consumed to the caller's day. The
// answer is already made, so a failure is logged, not returned.
func (s *Service) countSync(ctx context.Context, route *task.Route, result, input any) {
	if s.deps.Usage == nil {
		return
	}
	used := meter(route, result, input)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	if err := s.deps.Usage.AddUsage(cctx, auth.FromContext(ctx).Owner(), used, s.deps.Now()); err != nil {
		s.deps.Log.WarnContext(ctx, "usage of a synchronous call not counted", "err", err)
	}
}

// Catalog lists the models clients may name.
type Catalog func(ctx context.Context) []task.ModelInfo

// Models lists the models the caller may name: a key with a list of models
// sees the routed ones on it.
func (s *Service) Models(ctx context.Context) []task.ModelInfo {
	if s.deps.Catalog == nil {
		return nil
	}
	all := s.deps.Catalog(ctx)
	allowed := auth.FromContext(ctx).Models
	if len(allowed) == 0 {
		return all
	}
	return slices.DeleteFunc(all, func(m task.ModelInfo) bool {
		return len(m.Deployments) > 0 && !slices.Contains(allowed, m.Name)
	})
}

// MaxUsageDays bounds the days one usage query reads.
const MaxUsageDays = 366

// maxUsageReads bounds the key-days an admin's query reads in its one
// pipelined round trip.
const maxUsageReads = 50_000

// UsageQuery asks for usage from one UTC day to another, both included.
type UsageQuery struct {
	From, To time.Time
	KeyID    string // an admin's filter; "" for every key
}

// Usage returns the caller's usage per day, or, for an admin, every key's
// (or KeyID's), oldest first.
func (s *Service) Usage(ctx context.Context, q UsageQuery) ([]task.DayUsage, error) {
	if q.To.Before(q.From) {
		return nil, task.Invalid("from", "from is after to")
	}
	days := int(q.To.Sub(q.From).Hours()/24) + 1
	if days > MaxUsageDays {
		return nil, task.Invalid("from", fmt.Sprintf("at most %d days at once; this asks for %d", MaxUsageDays, days))
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	caller := auth.FromContext(ctx)
	var owners []string
	switch {
	case !caller.Admin:
		owners = []string{caller.Owner()}
	case q.KeyID != "":
		owners = []string{q.KeyID}
	default:
		all, err := s.deps.Usage.UsageOwners(ctx)
		if err != nil {
			return nil, task.Unavailable("the usage store is unavailable", err)
		}
		owners = all
		if len(owners)*days > maxUsageReads {
			return nil, task.Invalid("from", fmt.Sprintf("%d keys over %d days is more than one answer reads (%d key-days); name one key with key_id or ask for fewer days",
				len(owners), days, maxUsageReads))
		}
	}
	rows, err := s.deps.Usage.Usage(ctx, owners, q.From, q.To)
	if err != nil {
		return nil, task.Unavailable("the usage store is unavailable", err)
	}
	return rows, nil
}
