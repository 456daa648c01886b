package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/redistest"
	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
)

type testBundle struct {
	rdb   *redis.Client
	store *store.Store
	trips *redistest.RoundTrips
	ctx   context.Context
	now   time.Time
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	rdb := redistest.Client(t, redistest.URL(t))
	trips := &redistest.RoundTrips{}
	rdb.AddHook(trips)
	require.NoError(t, rdb.Ping(context.Background()).Err()) // open the connection before counting
	trips.Reset()
	return &testBundle{
		rdb:   rdb,
		store: store.New(rdb, time.Hour),
		trips: trips,
		ctx:   context.Background(),
		now:   time.Date(2026, 11, 28, 12, 0, 0, 123456789, time.UTC),
	}
}

func (b *testBundle) create(t *testing.T, id string) {
	t.Helper()
	require.NoError(t, b.store.Create(b.ctx, &task.Record{
		ID: id, Type: task.TypeGenerateText, Status: task.StatusPending, CreatedAt: b.now,
		Input: json.RawMessage(`{"prompt_chars":5}`),
	}, store.Limits{}))
}

func TestCreateAndGetInOneRoundTripEach(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Warm up: new pooled connections send their handshake through the hook.
	b.create(t, "warm")
	_, err := b.store.Get(b.ctx, "warm")
	require.NoError(t, err)

	b.trips.Reset()
	b.create(t, "a")
	require.EqualValues(t, 1, b.trips.Count(), "create")

	b.trips.Reset()
	rec, err := b.store.Get(b.ctx, "a")
	require.NoError(t, err)
	require.EqualValues(t, 1, b.trips.Count(), "get")
	require.Equal(t, "a", rec.ID)
	require.Equal(t, task.TypeGenerateText, rec.Type)
	require.Equal(t, task.StatusPending, rec.Status)
	require.True(t, b.now.Equal(rec.CreatedAt))
	require.JSONEq(t, `{"prompt_chars":5}`, string(rec.Input))
	require.Nil(t, rec.StartedAt)
	require.Nil(t, rec.Result)
	require.Nil(t, rec.Error)
}

func TestGetUnknownIsNotFound(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.store.Get(b.ctx, "missing")
	require.Equal(t, task.ENOTFOUND, task.CodeOf(err))
}

func TestLifecycleRetryThenSuccess(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.create(t, "a")

	require.NoError(t, b.store.Started(b.ctx, "a", 1, b.now.Add(time.Second)))
	rec, err := b.store.Get(b.ctx, "a")
	require.NoError(t, err)
	require.Equal(t, task.StatusStarted, rec.Status)
	require.Equal(t, 1, rec.Attempts)
	require.True(t, b.now.Equal(rec.CreatedAt), "a start must not rewrite created_at")

	next := b.now.Add(5 * time.Second)
	fail := task.Failure{Code: task.FailureProviderRateLimited, Message: "slow down", Provider: "openai"}
	require.NoError(t, b.store.Retrying(b.ctx, "a", fail, next))
	rec, err = b.store.Get(b.ctx, "a")
	require.NoError(t, err)
	require.Equal(t, task.StatusRetry, rec.Status)
	require.Equal(t, &fail, rec.Error)
	require.True(t, next.Equal(*rec.NextAttemptAt))

	require.NoError(t, b.store.Started(b.ctx, "a", 2, b.now.Add(6*time.Second)))
	rec, err = b.store.Get(b.ctx, "a")
	require.NoError(t, err)
	require.Equal(t, 2, rec.Attempts)
	require.Nil(t, rec.NextAttemptAt)

	done := b.now.Add(7 * time.Second)
	require.NoError(t, b.store.Succeeded(b.ctx, "a", store.Success{Provider: "openai", Result: json.RawMessage(`{"text":"hi"}`)}, done))
	rec, err = b.store.Get(b.ctx, "a")
	require.NoError(t, err)
	require.Equal(t, task.StatusSuccess, rec.Status)
	require.Equal(t, "openai", rec.Provider)
	require.JSONEq(t, `{"text":"hi"}`, string(rec.Result))
	require.Nil(t, rec.Error, "a success clears the last attempt's error")
	require.True(t, done.Equal(*rec.CompletedAt))
	require.True(t, done.Add(time.Hour).Equal(*rec.ExpiresAt))
}

func TestFinishedRecordNeverChanges(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.create(t, "a")
	fail := task.Failure{Code: task.FailureProviderRejected, Message: "bad model"}
	require.NoError(t, b.store.Failed(b.ctx, "a", fail, b.now))

	require.ErrorIs(t, b.store.Started(b.ctx, "a", 2, b.now), store.ErrFinished)
	require.ErrorIs(t, b.store.Succeeded(b.ctx, "a", store.Success{Provider: "x", Result: json.RawMessage(`{}`)}, b.now), store.ErrFinished)
	rec, err := b.store.Get(b.ctx, "a")
	require.NoError(t, err)
	require.Equal(t, task.StatusFailure, rec.Status)
	require.Equal(t, &fail, rec.Error)
}

// A record that is missing was rolled back by a failed submit: transitions
// must not bring it back.
func TestTransitionsNeverInventRecords(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Equal(t, task.ENOTFOUND, task.CodeOf(b.store.Started(b.ctx, "gone", 1, b.now)))
	require.Equal(t, task.ENOTFOUND, task.CodeOf(b.store.Retrying(b.ctx, "gone", task.Failure{}, b.now)))
	require.Equal(t, task.ENOTFOUND, task.CodeOf(b.store.Succeeded(b.ctx, "gone", store.Success{Provider: "p", Result: json.RawMessage(`{}`)}, b.now)))
	require.Equal(t, task.ENOTFOUND, task.CodeOf(b.store.Failed(b.ctx, "gone", task.Failure{}, b.now)))
	_, err := b.store.Get(b.ctx, "gone")
	require.Equal(t, task.ENOTFOUND, task.CodeOf(err))
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	url := redistest.URL(t)
	rdb := redistest.Client(t, url)
	s := store.New(rdb, time.Hour)
	ctx := context.Background()
	require.NoError(t, s.Create(ctx, &task.Record{ID: "a", Type: task.TypeGenerateText, Status: task.StatusPending, CreatedAt: time.Now()}, store.Limits{}))
	require.NoError(t, s.Started(ctx, "a", 1, time.Now()))
	ttl, err := rdb.PTTL(ctx, store.KeyPrefix+"a").Result()
	require.NoError(t, err)
	require.Equal(t, time.Duration(-1), ttl, "an unfinished record does not expire")

	require.NoError(t, s.Succeeded(ctx, "a", store.Success{Provider: "p", Result: json.RawMessage(`{}`)}, time.Now()))
	ttl, err = rdb.PTTL(ctx, store.KeyPrefix+"a").Result()
	require.NoError(t, err)
	require.InDelta(t, time.Hour.Seconds(), ttl.Seconds(), 5, "a finished record lives RESULT_TTL")
}

func TestUnfinishedSetFollowsTheRecord(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, id := range []string{"a", "b", "c"} {
		b.create(t, id)
	}
	later := b.now.Add(time.Hour)
	ids, _, err := b.store.Unfinished(b.ctx, later, 0, 10)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"a", "b", "c"}, ids)

	ids, _, err = b.store.Unfinished(b.ctx, b.now.Add(-time.Second), 0, 10)
	require.NoError(t, err)
	require.Empty(t, ids, "only tasks created before the given time")

	require.NoError(t, b.store.Started(b.ctx, "a", 1, b.now))
	require.NoError(t, b.store.Succeeded(b.ctx, "a", store.Success{Provider: "p", Result: json.RawMessage(`{}`)}, b.now))
	require.NoError(t, b.store.Delete(b.ctx, "b"))
	ids, _, err = b.store.Unfinished(b.ctx, later, 0, 10)
	require.NoError(t, err)
	require.Equal(t, []string{"c"}, ids, "a task that ended, or was rolled back, is no longer unfinished")

	require.NoError(t, b.store.Forget(b.ctx, "c"))
	ids, _, err = b.store.Unfinished(b.ctx, later, 0, 10)
	require.NoError(t, err)
	require.Empty(t, ids)
}

func TestStartAfterTheDeadlineRevokes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	deadline := b.now.Add(time.Minute)
	for _, id := range []string{"late", "early"} {
		require.NoError(t, b.store.Create(b.ctx, &task.Record{ID: id, Type: task.TypeGenerateText, Status: task.StatusPending,
			CreatedAt: b.now, CancelAt: &deadline}, store.Limits{}))
	}
	require.NoError(t, b.store.Started(b.ctx, "early", 1, deadline.Add(-time.Second)))
	require.ErrorIs(t, b.store.Started(b.ctx, "late", 1, deadline.Add(time.Second)), store.ErrDeadlinePassed)

	rec, err := b.store.Get(b.ctx, "late")
	require.NoError(t, err)
	require.Equal(t, task.StatusRevoked, rec.Status)
	require.Equal(t, task.FailureRevoked, rec.Error.Code)
	require.True(t, deadline.Equal(*rec.CancelAt))
	ids, _, err := b.store.Unfinished(b.ctx, b.now.Add(time.Hour), 0, 10)
	require.NoError(t, err)
	require.Equal(t, []string{"early"}, ids)

	// A task that has started is not stopped by its deadline when retried.
	require.NoError(t, b.store.Retrying(b.ctx, "early", task.Failure{Code: task.FailureProviderUnavailable}, deadline))
	require.NoError(t, b.store.Started(b.ctx, "early", 2, deadline.Add(time.Hour)))
}

func redisTTL(b *testBundle, key string) (time.Duration, error) {
	return b.rdb.TTL(b.ctx, key).Result()
}

func rawDel(b *testBundle, key string) error { return b.rdb.Del(b.ctx, key).Err() }

// A task's metadata labels are on its record and in an index of each
// label, kept by the create and delete scripts; a filtered page reads the
// label's index, so it costs what the page costs.
func TestMetadataIsKeptAndIndexed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i, customer := range []string{"acme", "globex", "acme"} {
		require.NoError(t, b.store.Create(b.ctx, &task.Record{ID: fmt.Sprintf("t%d", i), Type: task.TypeGenerateText, Status: task.StatusPending,
			CreatedAt: b.now.Add(time.Duration(i) * time.Second), Owner: "sgk_k", Metadata: map[string]string{"customer": customer, "run": "7"}}, store.Limits{}))
	}
	rec, err := b.store.Get(b.ctx, "t0")
	require.NoError(t, err)
	require.Equal(t, map[string]string{"customer": "acme", "run": "7"}, rec.Metadata)

	q := store.ListQuery{Owner: "sgk_k", MetaKey: "customer", MetaValue: "acme", Limit: 10}
	_, err = b.store.List(b.ctx, q) // warm up: new pooled connections send their handshake through the hook
	require.NoError(t, err)
	b.trips.Reset()
	page, err := b.store.List(b.ctx, q)
	require.NoError(t, err)
	require.Len(t, page.Tasks, 2)
	require.Equal(t, "t2", page.Tasks[0].ID, "newest first")
	require.LessOrEqual(t, b.trips.Count(), int64(2), "the label's index and its records")
	page, err = b.store.List(b.ctx, store.ListQuery{Owner: "sgk_k", MetaKey: "customer", MetaValue: "initech", Limit: 10})
	require.NoError(t, err)
	require.Empty(t, page.Tasks)
	page, err = b.store.List(b.ctx, store.ListQuery{Owner: "sgk_other", MetaKey: "customer", MetaValue: "acme", Limit: 10})
	require.NoError(t, err)
	require.Empty(t, page.Tasks, "another key's labels are its own")

	require.NoError(t, b.store.Delete(b.ctx, "t0"))
	n, err := b.rdb.ZCard(b.ctx, store.OwnerIndexPrefix+"sgk_k:meta:customer=acme").Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "delete takes the task out of its labels' indexes")
}
