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
	// Reserve checks owner's budgets of limits on the day of at and holds
	// estimate tokens against a token budget: store.ErrTokenBudget,
	// store.ErrCostBudget, or store.ErrBudgetReserved when calls running
	// hold the rest.
	Reserve(ctx context.Context, owner string, limits store.Limits, estimate int64, at time.Time) (store.Reservation, error)
	// SettleUsage adds a call's usage (nil: it failed) and gives back what
	// it reserved.
	SettleUsage(ctx context.Context, r store.Reservation, used *task.Metered, at time.Time) error
}

// estimated is implemented by inputs whose tokens can be estimated before
// the call.
type estimated interface{ EstimatedTokens() int64 }

// estimateOf is input's estimated tokens; 0 for work not counted in tokens.
func estimateOf(input any) int64 {
	if e, ok := input.(estimated); ok {
		return e.EstimatedTokens()
	}
	return 0
}

// syncHold is what a synchronous call holds while it runs: its place among
// its key's synchronous calls, and its tokens against the key's budget.
type syncHold struct {
	budget  store.Reservation
	release func()
}

// checkSync is what a synchronous call checks before it runs: the model it
// names, its key's bound on synchronous calls at once, and the key's daily
// budgets, against which it holds its estimated tokens until settleSync
// (queued tasks hold theirs from the script that creates them until they
// end).
func (s *Service) checkSync(ctx context.Context, typ task.Type, input any) (syncHold, error) {
	if err := s.checkModel(ctx, typ, input); err != nil {
		return syncHold{}, err
	}
	caller := auth.FromContext(ctx)
	// A call lasts at most SYNC_TIMEOUT; its hold, a little longer.
	release, err := s.takeHold(ctx, holdSync, caller, s.syncLimit(caller), s.cfg.SyncTimeout+holdRenewal)
	if err != nil {
		return syncHold{}, err
	}
	h := syncHold{budget: store.Reservation{Owner: caller.Owner()}, release: release}
	if s.deps.Usage == nil || caller.KeyID == "" {
		return h, nil
	}
	limits := store.Limits{DailyTokens: caller.DailyTokens, DailyCostUSD: caller.DailyCostUSD}
	now := s.deps.Now()
	bctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	h.budget, err = s.deps.Usage.Reserve(bctx, caller.Owner(), limits, estimateOf(input), now)
	if err != nil {
		release()
		if lerr := limitError(err, limits, now); lerr != nil {
			return syncHold{}, lerr
		}
		return syncHold{}, task.Unavailable("the usage store is unavailable", err)
	}
	return h, nil
}

// settleSync adds what a synchronous call consumed (nothing when it
// failed) to the caller's day and gives back what it held. The answer is
// already made, so a failure is logged, not returned.
func (s *Service) settleSync(ctx context.Context, held syncHold, failed bool, route *task.Route, result, input any) {
	if held.release != nil {
		defer held.release()
	}
	if s.deps.Usage == nil {
		return
	}
	var used *task.Metered
	if !failed {
		m := meter(route, result, input)
		used = &m
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	if err := s.deps.Usage.SettleUsage(cctx, held.budget, used, s.deps.Now()); err != nil {
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
