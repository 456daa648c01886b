package service_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/notify"
	"github.com/siganteng/siganteng/internal/queue"
	"github.com/siganteng/siganteng/internal/redistest"
	"github.com/siganteng/siganteng/internal/service"
	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
)

func TestFollowEventsWakesOnNewEventsAndKeepsAlive(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t, redistest.URL(t))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	records := store.New(rdb, time.Hour)
	hub := notify.New(rdb, log)
	ctx, cancel := context.WithTimeout(asSystem(), 20*time.Second)
	defer cancel()
	go hub.Run(ctx)
	<-hub.Ready()
	svc := service.New(service.Deps{Records: records, Keys: records, Endings: hub, Log: log,
		Queue: queue.New(rdb, queue.Options{Timeout: time.Minute}), Providers: service.Providers{LLM: &fakeLLM{}}},
		service.Config{SyncTimeout: time.Second})
	rec, err := svc.SubmitGenerateText(ctx, task.GenerateTextInput{Prompt: "p"})
	require.NoError(t, err)

	var (
		mu     sync.Mutex
		events []service.Event
		idles  int
	)
	done := make(chan error, 1)
	go func() {
		done <- svc.FollowEvents(ctx, rec.ID, "", 50*time.Millisecond, func(e service.Event) error {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, e)
			return nil
		}, func() error {
			mu.Lock()
			defer mu.Unlock()
			idles++
			return nil
		})
	}()
	count := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return len(events), idles
	}
	require.Eventually(t, func() bool { n, i := count(); return n == 1 && i >= 2 }, 5*time.Second, 5*time.Millisecond,
		"the PENDING event, then keepalives while nothing happens")

	now := time.Now()
	require.NoError(t, records.Started(ctx, rec.ID, 1, now))
	require.Eventually(t, func() bool { n, _ := count(); return n == 2 }, 5*time.Second, time.Millisecond, "woken by the new event")
	require.NoError(t, records.Succeeded(ctx, rec.ID, store.Success{Provider: "fake", Result: json.RawMessage(`{"text":"done"}`)}, now))
	require.NoError(t, <-done, "the stream ends after the terminal event")

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, events, 3)
	var final task.Record
	require.NoError(t, json.Unmarshal(events[2].Data, &final))
	require.Equal(t, task.StatusSuccess, final.Status)
	require.JSONEq(t, `{"text":"done"}`, string(final.Result))
}
