package store_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
)

// submit creates a task of owner that may wait in its line, and reports
// whether it does.
func (b *testBundle) submit(t *testing.T, owner, id string) bool {
	t.Helper()
	return b.submitAt(t, owner, id, "")
}

// submitAt is submit at priority.
func (b *testBundle) submitAt(t *testing.T, owner, id string, priority task.Priority) bool {
	t.Helper()
	rec := &task.Record{ID: id, Type: task.TypeGenerateText, Status: task.StatusPending, Owner: owner, CreatedAt: b.now, Priority: priority,
		Input: json.RawMessage(`{"prompt_chars":5}`), Payload: json.RawMessage(`{"prompt":"hello"}`)}
	require.NoError(t, b.store.Create(b.ctx, rec, store.Limits{MayWait: true, Weight: 3}))
	if rec.Waiting == nil {
		return false
	}
	require.Equal(t, task.WaitKeyShare, rec.Waiting.Reason)
	return true
}

// admit runs one round for every key, as a worker with slots slots.
func (b *testBundle) admit(t *testing.T, slots int) []store.Admitted {
	t.Helper()
	got, err := b.store.AdmitFromLines(b.ctx, store.Admission{Process: "w1", Slots: slots, Lapse: time.Minute, Most: 100}, b.now)
	require.NoError(t, err)
	return got
}

// fillAWindowOfTwo has a worker of one slot (a window of 2) and key k1
// fill it with a0 and a1.
func (b *testBundle) fillAWindowOfTwo(t *testing.T) {
	t.Helper()
	b.admit(t, 1)
	require.False(t, b.submit(t, "k1", "a0"))
	require.False(t, b.submit(t, "k1", "a1"))
}

func ids(admitted []store.Admitted) []string {
	out := make([]string, len(admitted))
	for i, a := range admitted {
		out[i] = a.ID
	}
	return out
}

func TestWithoutAWorkerEveryTaskIsAdmitted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i := range 20 {
		require.False(t, b.submit(t, "k1", fmt.Sprint("t", i)))
	}
}

func TestAKeyPastItsWindowWaitsInItsLineAndGoesInAsItsTasksEnd(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Empty(t, b.admit(t, 8)) // a worker with 8 slots: the window is 9
	for i := range 9 {
		require.False(t, b.submit(t, "k1", fmt.Sprint("a", i)), "task %d", i)
	}
	require.True(t, b.submit(t, "k1", "a9"))
	require.True(t, b.submit(t, "k1", "a10"))
	require.False(t, b.submit(t, "k2", "b0"), "another key has a window of its own")
	lines, err := b.store.Lines(b.ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int64{"k1": 2}, lines)

	rec, err := b.store.Get(b.ctx, "a9")
	require.NoError(t, err)
	require.Equal(t, task.StatusPending, rec.Status)
	require.Equal(t, "waiting", rec.Admission)
	require.NotNil(t, rec.Waiting)
	require.Equal(t, task.WaitKeyShare, rec.Waiting.Reason)
	require.Equal(t, b.now, rec.Waiting.Since)

	require.Empty(t, b.admit(t, 8), "the window is full")
	// The first task ends: its key is signalled, and its place goes to
	// the oldest in line.
	require.NoError(t, b.store.Succeeded(b.ctx, "a0", store.Success{Provider: "p", Result: json.RawMessage(`{}`)}, b.now))
	owner, err := b.store.NextAdmission(b.ctx, time.Second)
	require.NoError(t, err)
	require.Equal(t, "k1", owner)
	got, err := b.store.AdmitFromLines(b.ctx, store.Admission{Process: "w1", Slots: 8, Lapse: time.Minute, Most: 100, Owners: []string{owner}}, b.now)
	require.NoError(t, err)
	require.Equal(t, []string{"a9"}, ids(got))
	require.Equal(t, store.Admitted{ID: "a9", Owner: "k1", Type: task.TypeGenerateText, Weight: 3, Created: b.now.Truncate(time.Millisecond),
		Payload: []byte(`{"prompt":"hello"}`)}, got[0])
	rec, err = b.store.Get(b.ctx, "a9")
	require.NoError(t, err)
	require.Equal(t, "admitted", rec.Admission)
	require.Nil(t, rec.Waiting, "it no longer says it waits")

	// A task that waits for a provider's budget gives up its place too.
	require.NoError(t, b.store.Started(b.ctx, "a1", 1, b.now))
	require.NoError(t, b.store.Waiting(b.ctx, "a1", task.Waiting{Reason: "requests", Deployment: "d", Until: b.now.Add(time.Second)}, time.Hour, b.now))
	require.Equal(t, []string{"a10"}, ids(b.admit(t, 8)))
	require.Empty(t, b.admit(t, 8), "the line is empty")
	require.True(t, b.submit(t, "k1", "a11"), "the window is full again")
	require.NoError(t, b.store.Failed(b.ctx, "a2", task.Failure{Code: "x", Message: "y"}, b.now))
	require.Equal(t, []string{"a11"}, ids(b.admit(t, 8)))
	require.NoError(t, b.store.Revoked(b.ctx, "a3", "cancelled", b.now))
	require.False(t, b.submit(t, "k1", "a12"), "an empty line and a window with room: admitted at once")
}

func TestATaskCancelledInLineIsNeverAdmitted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.fillAWindowOfTwo(t)
	require.True(t, b.submit(t, "k1", "a2"))
	require.True(t, b.submit(t, "k1", "a3"))
	require.NoError(t, b.store.Revoked(b.ctx, "a2", "cancelled", b.now))
	require.NoError(t, b.store.Failed(b.ctx, "a0", task.Failure{Code: "x", Message: "y"}, b.now))
	require.Equal(t, []string{"a3"}, ids(b.admit(t, 1)))
}

func TestTheWindowIsEveryRunningWorkersSlotsAndAnEighth(t *testing.T) {
	t.Parallel()
	b := setup(t)
	round := func(process string, slots int, at time.Time) {
		_, err := b.store.AdmitFromLines(b.ctx, store.Admission{Process: process, Slots: slots, Lapse: 5 * time.Second, Most: 10}, at)
		require.NoError(t, err)
	}
	window := func() string { return b.rdb.Get(b.ctx, store.AdmitWindowKey).Val() }
	round("w1", 64, b.now)
	require.Equal(t, "72", window())
	round("w2", 64, b.now.Add(time.Second))
	require.Equal(t, "144", window(), "two workers")
	round("w2", 64, b.now.Add(6*time.Second))
	require.Equal(t, "72", window(), "w1 stopped renewing its slots")
	_, err := b.store.AdmitFromLines(b.ctx, store.Admission{Process: "w2", Slots: 64, Lapse: 5 * time.Second, Window: 3, Most: 10}, b.now.Add(6*time.Second))
	require.NoError(t, err)
	require.Equal(t, "3", window(), "MAX_QUEUED_PER_KEY fixes it")
}

func TestAHighOrUnownedTaskNeverWaitsInLine(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.fillAWindowOfTwo(t)
	rec := &task.Record{ID: "h", Type: task.TypeGenerateText, Status: task.StatusPending, Owner: "k1", CreatedAt: b.now, Payload: json.RawMessage(`{}`)}
	require.NoError(t, b.store.Create(b.ctx, rec, store.Limits{}))
	require.Nil(t, rec.Waiting, "not allowed to wait (high, scheduled, a step)")
	for i := range 5 {
		rec := &task.Record{ID: fmt.Sprint("o", i), Type: task.TypeGenerateText, Status: task.StatusPending, CreatedAt: b.now, Payload: json.RawMessage(`{}`)}
		require.NoError(t, b.store.Create(b.ctx, rec, store.Limits{MayWait: true}))
		require.Nil(t, rec.Waiting, "no key: no line")
	}
}

func TestALowTaskInLineLetsTheKeysNormalOnesPass(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.fillAWindowOfTwo(t)
	require.True(t, b.submitAt(t, "k1", "low0", task.PriorityLow))
	require.True(t, b.submit(t, "k1", "n0"))
	require.NoError(t, b.store.Failed(b.ctx, "a0", task.Failure{Code: "x", Message: "y"}, b.now))
	require.Equal(t, []string{"n0"}, ids(b.admit(t, 1)), "the normal task first")
	require.NoError(t, b.store.Failed(b.ctx, "a1", task.Failure{Code: "x", Message: "y"}, b.now))
	got := b.admit(t, 1)
	require.Equal(t, []string{"low0"}, ids(got))
	require.Equal(t, task.PriorityLow, got[0].Priority)
	require.NoError(t, b.store.Failed(b.ctx, "n0", task.Failure{Code: "x", Message: "y"}, b.now))
	require.False(t, b.submitAt(t, "k1", "low1", task.PriorityLow), "both lines empty and room: admitted")
}

// A place whose task never ends (its record deleted or lost) lapses: the
// key is not held at its window for good.
func TestAPlaceLapsesAfterTenMinutes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.fillAWindowOfTwo(t)
	require.True(t, b.submit(t, "k1", "a2"), "the window is full")
	require.Empty(t, b.admit(t, 1), "a0 and a1 hold the window")
	b.now = b.now.Add(10*time.Minute + time.Millisecond)
	require.Equal(t, []string{"a2"}, ids(b.admit(t, 1)), "a0's and a1's places lapsed")
}
