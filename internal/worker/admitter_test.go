package worker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
	"github.com/siganteng/siganteng/internal/worker"
)

// fakeLines lets out its tasks in rounds of at most a.Most.
type fakeLines struct {
	waiting []string
	rounds  []store.Admission
}

func (f *fakeLines) AdmitFromLines(_ context.Context, a store.Admission, _ time.Time) ([]store.Admitted, error) {
	f.rounds = append(f.rounds, a)
	n := min(a.Most, len(f.waiting))
	out := make([]store.Admitted, n)
	for i, id := range f.waiting[:n] {
		out[i] = store.Admitted{ID: id, Owner: "k", Type: task.TypeGenerateText, Weight: 1}
	}
	f.waiting = f.waiting[n:]
	return out, nil
}

func (f *fakeLines) NextAdmission(context.Context, time.Duration) (string, error) { return "", nil }

// flakyQueue fails to queue the ids in fail.
type flakyQueue struct {
	queued []string
	fail   map[string]bool
}

func (q *flakyQueue) EnqueueAdmitted(_ context.Context, _ task.Type, _ task.Priority, id, _ string, _ int, _ time.Time, _ []byte) error {
	if q.fail[id] {
		return errors.New("redis: connection refused")
	}
	q.queued = append(q.queued, id)
	return nil
}

// One Admit lets out everything there is room for, round after round while
// rounds come back full, and goes on past a task it could not queue (the
// reconciler queues that one).
func TestTheAdmitterLetsOutEveryRoundAndGoesOnPastAFailedEnqueue(t *testing.T) {
	t.Parallel()
	var ids []string
	for i := range 600 {
		ids = append(ids, fmt.Sprint("t", i))
	}
	lines := &fakeLines{waiting: ids}
	q := &flakyQueue{fail: map[string]bool{ids[3]: true}}
	a := worker.NewAdmitter(lines, q, 64, 0, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	require.NoError(t, a.Admit(context.Background(), []string{"k"}))
	require.Len(t, lines.rounds, 3, "256, 256, then 88: the last round was not full")
	require.Equal(t, []string{"k"}, lines.rounds[0].Owners)
	require.Empty(t, lines.rounds[1].Owners, "after a full round, every key")
	require.Equal(t, 64, lines.rounds[0].Slots)
	require.NotEmpty(t, lines.rounds[0].Process)
	require.Len(t, q.queued, 599)
	require.NotContains(t, q.queued, ids[3])
}
