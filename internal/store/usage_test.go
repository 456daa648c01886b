package store_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
)

// TestUsageIsSummedOnceAndBudgetsRefuse: the success script adds a task's
// usage to its owner's day in the same step, so a repeated write (a worker
// that lost the answer and retries it) counts nothing twice; budgets refuse
// the next create, in its own round trip.
func TestUsageIsSummedOnceAndBudgetsRefuse(t *testing.T) {
	b := setup(t)
	cost := task.USD(0.000125)
	create := func(id string, limits store.Limits) error {
		return b.store.Create(b.ctx, &task.Record{ID: id, Type: task.TypeGenerateText, Status: task.StatusPending, CreatedAt: b.now, Owner: "k1"}, limits)
	}
	require.NoError(t, create("a", store.Limits{DailyTokens: 100, DailyCostUSD: 0.0002}))
	calls := []task.Call{{Attempt: 1, Deployment: "chat/1", Provider: "openai", Outcome: "provider_unavailable", StatusCode: 503, At: b.now}}
	require.NoError(t, b.store.Retrying(b.ctx, "a", task.Failure{Code: task.FailureProviderUnavailable}, b.now, calls...))
	success := store.Success{Provider: "openai", Deployment: "chat/2", Result: json.RawMessage(`{}`),
		Usage: &task.Metered{InputTokens: 40, OutputTokens: 30, Characters: 7, AudioSeconds: 1.5, CostUSD: &cost},
		Calls: []task.Call{{Attempt: 2, Deployment: "chat/2", Provider: "openai", Outcome: "success", At: b.now}}}
	b.trips.Reset()
	require.NoError(t, b.store.Succeeded(b.ctx, "a", success, b.now))
	require.EqualValues(t, 1, b.trips.Count(), "record, usage and calls in one round trip")
	require.ErrorIs(t, b.store.Succeeded(b.ctx, "a", success, b.now), store.ErrFinished)

	rec, err := b.store.Get(b.ctx, "a")
	require.NoError(t, err)
	require.Equal(t, "chat/2", rec.Deployment)
	require.Equal(t, success.Usage, rec.Usage)
	require.Len(t, rec.Calls, 2, "the calls of every attempt, in order")
	require.Equal(t, 503, rec.Calls[0].StatusCode)
	require.Equal(t, "success", rec.Calls[1].Outcome)

	days, err := b.store.Usage(b.ctx, []string{"k1"}, b.now.AddDate(0, 0, -1), b.now)
	require.NoError(t, err)
	require.Equal(t, []task.DayUsage{{Owner: "k1", Date: "2026-11-28", Tasks: 1, InputTokens: 40, OutputTokens: 30,
		Characters: 7, AudioSeconds: 1.5, CostUSD: 0.000125}}, days)
	owners, err := b.store.UsageOwners(b.ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"k1"}, owners)

	require.NoError(t, create("b", store.Limits{DailyTokens: 71}), "70 of 71 tokens used")
	require.ErrorIs(t, create("c", store.Limits{DailyTokens: 70}), store.ErrTokenBudget)
	require.ErrorIs(t, create("d", store.Limits{DailyCostUSD: 0.000125}), store.ErrCostBudget)
	require.NoError(t, create("e", store.Limits{DailyCostUSD: 0.00013}))
	_, err = b.store.Get(b.ctx, "c")
	require.Equal(t, task.ENOTFOUND, task.CodeOf(err), "a refused create writes nothing")

	tomorrow := b.now.Add(24 * time.Hour)
	require.NoError(t, b.store.Create(b.ctx, &task.Record{ID: "f", Type: task.TypeGenerateText, Status: task.StatusPending, CreatedAt: tomorrow, Owner: "k1"},
		store.Limits{DailyTokens: 70}), "budgets are per UTC day")
}

func TestAReservationIsHeldUntilTheTaskEndsAndThenGivenBack(t *testing.T) {
	b := setup(t)
	limits := store.Limits{DailyTokens: 100, ReserveTokens: 60}
	rec := func(id string) *task.Record {
		return &task.Record{ID: id, Type: task.TypeGenerateText, Status: task.StatusPending, Owner: "k1", CreatedAt: b.now}
	}
	reserved := func() int64 {
		n, _ := b.rdb.HGet(b.ctx, store.UsageKey("k1", b.now), "reserved_tokens").Int64()
		return n
	}
	require.NoError(t, b.store.Create(b.ctx, rec("a"), limits))
	require.Equal(t, int64(60), reserved())
	require.NoError(t, b.store.Create(b.ctx, rec("b"), limits), "60 of 100 held: one more may start")
	require.ErrorIs(t, b.store.Create(b.ctx, rec("c"), limits), store.ErrBudgetReserved, "120 held: the rest is refused")

	// A failure, a revocation and a rolled-back submit give theirs back.
	require.NoError(t, b.store.Failed(b.ctx, "a", task.Failure{Code: task.FailureProviderRejected}, b.now))
	require.Equal(t, int64(60), reserved())
	require.NoError(t, b.store.Revoked(b.ctx, "b", "cancelled", b.now))
	require.Equal(t, int64(0), reserved())
	require.NoError(t, b.store.Create(b.ctx, rec("d"), limits))
	require.NoError(t, b.store.Delete(b.ctx, "d"))
	require.Equal(t, int64(0), reserved())

	// A success counts its usage instead.
	require.NoError(t, b.store.Create(b.ctx, rec("e"), limits))
	require.NoError(t, b.store.Succeeded(b.ctx, "e", store.Success{Result: json.RawMessage(`{}`), Usage: &task.Metered{InputTokens: 70, OutputTokens: 40}}, b.now))
	require.Equal(t, int64(0), reserved())
	require.ErrorIs(t, b.store.Create(b.ctx, rec("f"), limits), store.ErrTokenBudget, "110 used of 100")
}

func TestASynchronousReservationIsSettled(t *testing.T) {
	b := setup(t)
	limits := store.Limits{DailyTokens: 100}
	held, err := b.store.Reserve(b.ctx, "k2", limits, 80, b.now)
	require.NoError(t, err)
	other, err := b.store.Reserve(b.ctx, "k2", limits, 80, b.now)
	require.NoError(t, err, "80 of 100 held: one more may start")
	_, err = b.store.Reserve(b.ctx, "k2", limits, 80, b.now)
	require.ErrorIs(t, err, store.ErrBudgetReserved)
	require.NoError(t, b.store.SettleUsage(b.ctx, held, &task.Metered{InputTokens: 5, OutputTokens: 5}, b.now))
	require.NoError(t, b.store.SettleUsage(b.ctx, other, nil, b.now), "a failed call gives its hold back and uses nothing")
	_, err = b.store.Reserve(b.ctx, "k2", limits, 80, b.now)
	require.NoError(t, err, "both holds were given back; 10 are used")
	days, err := b.store.Usage(b.ctx, []string{"k2"}, b.now, b.now)
	require.NoError(t, err)
	require.Len(t, days, 1)
	require.Equal(t, int64(10), days[0].InputTokens+days[0].OutputTokens)
	require.Equal(t, 1, int(days[0].Tasks))
}
