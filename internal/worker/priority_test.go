package worker_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/notify"
	"github.com/siganteng/siganteng/internal/queue"
	"github.com/siganteng/siganteng/internal/redistest"
	"github.com/siganteng/siganteng/internal/service"
	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
	"github.com/siganteng/siganteng/internal/worker"
)

// orderExecutor records the order tasks run in.
type orderExecutor struct {
	mu  sync.Mutex
	ids []string
}

func (e *orderExecutor) Execute(_ context.Context, id string, _ task.Type, _ []byte, _ service.Progress) (service.Outcome, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ids = append(e.ids, id)
	return service.Outcome{Provider: "fake", Result: []byte(`{}`)}, nil
}

func (e *orderExecutor) order() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.ids)
}

func TestHighPriorityOvertakesABacklog(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t, redistest.URL(t))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := store.New(rdb, time.Hour)
	q := queue.New(rdb, queue.Options{Timeout: 10 * time.Second})
	ctx := context.Background()
	enqueue := func(typ task.Type, p task.Priority) string {
		id := uuid.NewString()
		require.NoError(t, s.Create(ctx, &task.Record{ID: id, Type: typ, Status: task.StatusPending, CreatedAt: time.Now(), Priority: p}, store.Limits{}))
		require.NoError(t, q.Enqueue(ctx, typ, p, id, "", 1, time.Time{}, []byte(`{"prompt":"p"}`)))
		return id
	}
	// A backlog: 30 normal generate_text, 30 low embed; then one high task
	// and one normal embed.
	for range 30 {
		enqueue(task.TypeGenerateText, "")
		enqueue(task.TypeEmbed, task.PriorityLow)
	}
	high := enqueue(task.TypeGenerateText, task.PriorityHigh)
	embed := enqueue(task.TypeEmbed, task.PriorityNormal)

	hub := notify.New(rdb, log)
	hctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	go hub.Run(hctx)
	<-hub.Ready()
	exec := &orderExecutor{}
	w := worker.New(rdb, worker.Config{
		Concurrency: 1, Queues: queue.DefaultWeights([]task.Type{task.TypeGenerateText, task.TypeEmbed}),
		PollInterval: 5 * time.Millisecond, DelayedPollInterval: time.Second, ShutdownTimeout: time.Second,
	}, exec, s, hub, log, nil)
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
	require.Eventually(t, func() bool { return len(exec.order()) == 62 }, 20*time.Second, 10*time.Millisecond)

	order := exec.order()
	require.Less(t, slices.Index(order, high), 5, "high (weight 50 against 2, 2 and 1) runs almost at once")
	require.Less(t, slices.Index(order, embed), 20, "a normal embed does not wait behind 30 generate_text: each type has its queue")
}
