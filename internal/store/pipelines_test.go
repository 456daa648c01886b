package store_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
)

// A task of a pipeline pushes its pipeline in the same step as it ends,
// whichever way it ends; a task created twice under one id is created once;
// the kept input of a task is dropped once it succeeds.
func TestAStepsEndPushesItsPipeline(t *testing.T) {
	t.Parallel()
	b := setup(t)
	pipe := "p-" + t.Name()
	for i, end := range []func(id string) error{
		func(id string) error {
			return b.store.Succeeded(b.ctx, id, store.Success{Result: json.RawMessage(`{}`)}, b.now)
		},
		func(id string) error {
			return b.store.Failed(b.ctx, id, task.Failure{Code: task.FailureInternal}, b.now)
		},
		func(id string) error { return b.store.Revoked(b.ctx, id, "no", b.now) },
	} {
		id := t.Name() + string(rune('a'+i))
		rec := &task.Record{ID: id, Type: task.TypeGenerateText, Status: task.StatusPending, CreatedAt: b.now,
			PipelineID: pipe, PipelineStep: "s", Payload: json.RawMessage(`{"prompt":"p"}`)}
		require.NoError(t, b.store.Create(b.ctx, rec, store.Limits{}))
		require.ErrorIs(t, b.store.Create(b.ctx, rec, store.Limits{}), store.ErrExists)
		require.NoError(t, b.store.Retrying(b.ctx, id, task.Failure{Code: task.FailureTimeout}, b.now))
		require.Zero(t, b.rdb.LLen(b.ctx, store.PipelineOutboxKey).Val(), "a retry is no end")
		require.NoError(t, end(id))
		got, err := b.rdb.LPop(b.ctx, store.PipelineOutboxKey).Result()
		require.NoError(t, err)
		require.Equal(t, pipe, got)
		kept, err := b.store.Get(b.ctx, id)
		require.NoError(t, err)
		require.Equal(t, pipe, kept.PipelineID)
		if kept.Status == task.StatusSuccess {
			require.Empty(t, kept.Payload, "a success keeps no input")
		} else {
			require.JSONEq(t, `{"prompt":"p"}`, string(kept.Payload), "kept for a retry")
		}
	}
}

// Concurrent claims of a task's retry agree on one new task; a task that
// has not failed cannot be claimed.
func TestClaimRetryNamesOneTask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := "r-" + t.Name()
	b.create(t, id)
	_, err := b.store.ClaimRetry(b.ctx, id, "n1")
	require.ErrorIs(t, err, store.ErrNotRetriable)
	require.NoError(t, b.store.Failed(b.ctx, id, task.Failure{Code: task.FailureInternal}, b.now))
	named := make(chan string, 10)
	for i := range 10 {
		go func() {
			n, err := b.store.ClaimRetry(b.ctx, id, string(rune('a'+i)))
			require.NoError(t, err)
			named <- n
		}()
	}
	first := <-named
	for range 9 {
		require.Equal(t, first, <-named)
	}
	require.NoError(t, b.store.ReleaseRetry(b.ctx, id, "not it"))
	rec, _ := b.store.Get(b.ctx, id)
	require.Equal(t, first, rec.RetriedBy, "released only by its own name")
	require.NoError(t, b.store.ReleaseRetry(b.ctx, id, first))
	n, err := b.store.ClaimRetry(b.ctx, id, "again")
	require.NoError(t, err)
	require.Equal(t, "again", n)
	_, err = b.store.ClaimRetry(b.ctx, "missing", "x")
	require.Equal(t, task.ENOTFOUND, task.CodeOf(err))
}

// A pipeline moves on only from the stage expected, once, and not after
// it has ended; its events go to its stream.
func TestMovePipelineIsACompareAndSet(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := "00000000-0000-4000-8000-" + "000000000001"
	p := store.Pipeline{ID: id + t.Name(), Owner: "k", Status: task.StatusPending, CreatedAt: b.now,
		Spec: task.PipelineInput{Steps: []task.PipelineStep{{Kind: task.TypeGenerateText, Input: json.RawMessage(`{}`)}}}}
	require.NoError(t, b.store.CreatePipeline(b.ctx, p, b.now.Add(time.Minute)))
	move := store.PipelineMove{From: 0, Stage: 1, Status: task.StatusStarted, At: b.now, Events: [][2]string{{"step", `{"n":1}`}}}
	require.NoError(t, b.store.MovePipeline(b.ctx, p.ID, move))
	require.ErrorIs(t, b.store.MovePipeline(b.ctx, p.ID, move), store.ErrPipelineMoved, "not at stage 0 any more")
	end := store.PipelineMove{From: -1, Stage: -1, Status: task.StatusFailure, At: b.now, Error: &task.PipelineFailure{Code: "x", Step: "0"}}
	require.NoError(t, b.store.MovePipeline(b.ctx, p.ID, end))
	require.ErrorIs(t, b.store.MovePipeline(b.ctx, p.ID, end), store.ErrPipelineMoved, "ended")
	got, err := b.store.GetPipeline(b.ctx, p.ID)
	require.NoError(t, err)
	require.Equal(t, 1, got.Stage, "an end keeps the stage")
	require.Equal(t, task.StatusFailure, got.Status)
	require.Equal(t, "0", got.Error.Step)
	require.NotNil(t, got.ExpiresAt)
	events, err := b.store.Events(b.ctx, p.ID, "", 10)
	require.NoError(t, err)
	require.Len(t, events, 2, "the creation's and the move's")
	require.Zero(t, b.rdb.ZScore(b.ctx, store.PipelinesActiveKey, p.ID).Val(), "an ended pipeline is looked at no more")
}

// Holds are counted across processes by key; a hold whose process died
// (never released nor renewed) lapses with its lease.
func TestHoldsLapseWithTheirLease(t *testing.T) {
	t.Parallel()
	b := setup(t)
	owner := "k-" + t.Name()
	ok, err := b.store.TakeHold(b.ctx, "sync", owner, "a", 2, time.Minute, b.now)
	require.NoError(t, err)
	require.True(t, ok)
	ok, _ = b.store.TakeHold(b.ctx, "sync", owner, "b", 2, time.Second, b.now)
	require.True(t, ok)
	ok, _ = b.store.TakeHold(b.ctx, "sync", owner, "c", 2, time.Minute, b.now)
	require.False(t, ok, "at the limit")
	ok, _ = b.store.TakeHold(b.ctx, "waiting", owner, "c", 2, time.Minute, b.now)
	require.True(t, ok, "another kind counts apart")
	ok, _ = b.store.TakeHold(b.ctx, "sync", owner, "c", 2, time.Minute, b.now.Add(2*time.Second))
	require.True(t, ok, "b's lease lapsed")
	require.NoError(t, b.store.RenewHold(b.ctx, "sync", owner, "a", time.Hour, b.now))
	require.NoError(t, b.store.ReleaseHold(b.ctx, "sync", owner, "c"))
	ok, _ = b.store.TakeHold(b.ctx, "sync", owner, "d", 2, time.Minute, b.now.Add(30*time.Minute))
	require.True(t, ok, "c given back; a renewed past it")
	ok, _ = b.store.TakeHold(b.ctx, "sync", owner, "e", 2, time.Minute, b.now.Add(30*time.Minute))
	require.False(t, ok, "a (renewed) and d")
}
