package worker_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/fetch"
	"github.com/siganteng/siganteng/internal/notify"
	"github.com/siganteng/siganteng/internal/queue"
	"github.com/siganteng/siganteng/internal/redistest"
	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
	"github.com/siganteng/siganteng/internal/webhook"
	"github.com/siganteng/siganteng/internal/worker"
)

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// hookCall is one delivery as the receiver saw it.
type hookCall struct {
	id, timestamp string
	status        task.Status
	at            time.Time
}

// webhookSetup runs a worker with webhooks on, retried after 1 s, and a
// receiver that answers each call with the next status in answers (204
// once they run out).
func webhookSetup(t *testing.T, answers ...int) (*store.Store, *queue.Client, func() []hookCall, string) {
	t.Helper()
	return webhookPools(t, nil, 2, answers...)
}

// webhookPools is webhookSetup with concurrency task slots and one delivery
// at a time, whose receiver records each call as it comes and answers only
// once hold is closed (at once when nil).
func webhookPools(t *testing.T, hold <-chan struct{}, concurrency int, answers ...int) (*store.Store, *queue.Client, func() []hookCall, string) {
	t.Helper()
	rdb := redistest.Client(t, redistest.URL(t))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := store.New(rdb, time.Hour)
	hub := notify.New(rdb, log)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go hub.Run(ctx)
	<-hub.Ready()

	verifier, err := standardwebhooks.NewWebhook(secret)
	require.NoError(t, err)
	var (
		mu    sync.Mutex
		calls []hookCall
	)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var rec task.Record
		_ = json.Unmarshal(body, &rec)
		mu.Lock()
		defer mu.Unlock()
		if verifier.Verify(body, r.Header) != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		calls = append(calls, hookCall{id: r.Header.Get("webhook-id"), timestamp: r.Header.Get("webhook-timestamp"), status: rec.Status, at: time.Now()})
		status := http.StatusNoContent
		if len(answers) > 0 {
			status, answers = answers[0], answers[1:]
		}
		if hold != nil {
			mu.Unlock()
			<-hold
			mu.Lock()
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(rcv.Close)

	deliverer, err := webhook.NewDeliverer(secret, fetch.New(fetch.Config{Timeout: 5 * time.Second, AllowPrivate: true}), s, log)
	require.NoError(t, err)
	q := queue.New(rdb, queue.Options{MaxRetry: 0, Timeout: 10 * time.Second})
	w := worker.New(rdb, worker.Config{
		Concurrency: concurrency, Queues: queue.DefaultWeights([]task.Type{task.TypeGenerateText}),
		PollInterval: 5 * time.Millisecond, DelayedPollInterval: 50 * time.Millisecond, ShutdownTimeout: time.Second,
		Webhooks: deliverer, WebhookSchedule: []time.Duration{time.Second, time.Second}, WebhookConcurrency: 1,
	}, &executor{fn: succeed}, s, hub, log, nil)
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
	d := webhook.NewDispatcher(s, q, log)
	d.Wait = time.Second // Redis blocks in whole seconds
	go d.Run(ctx)

	got := func() []hookCall {
		mu.Lock()
		defer mu.Unlock()
		return append([]hookCall(nil), calls...)
	}
	return s, q, got, rcv.URL
}

func submitWithHook(t *testing.T, s *store.Store, q *queue.Client, url string) string {
	t.Helper()
	id := uuid.NewString()
	ctx := context.Background()
	rec := &task.Record{ID: id, Type: task.TypeGenerateText, Status: task.StatusPending, CreatedAt: time.Now()}
	if url != "" { // else a task with no webhook
		rec.WebhookURL, rec.Webhook = url, &task.WebhookInfo{Events: []string{task.WebhookCompleted}}
	}
	require.NoError(t, s.Create(ctx, rec, store.Limits{}))
	require.NoError(t, q.Enqueue(ctx, task.TypeGenerateText, "", id, "", 1, time.Time{}, []byte(`{"prompt":"p"}`)))
	return id
}

// A receiver that does not answer holds a delivery's slot, not a task's:
// with one task slot, a task runs while a delivery hangs.
func TestASlowReceiverHoldsNoTaskSlot(t *testing.T) {
	t.Parallel()
	hold := make(chan struct{})
	s, q, got, url := webhookPools(t, hold, 1)
	defer close(hold)
	submitWithHook(t, s, q, url)
	require.Eventually(t, func() bool { return len(got()) == 1 }, 10*time.Second, 10*time.Millisecond, "the delivery reached the receiver")

	id := submitWithHook(t, s, q, "")
	require.Eventually(t, func() bool {
		rec, err := s.Get(context.Background(), id)
		return err == nil && rec.Status == task.StatusSuccess
	}, 5*time.Second, 10*time.Millisecond, "a task ran while the delivery hung")
	require.Len(t, got(), 1, "the hanging delivery is the only one")
}

func TestWebhookIsRetriedUnderTheSameID(t *testing.T) {
	t.Parallel()
	s, q, got, url := webhookSetup(t, http.StatusInternalServerError)
	submitWithHook(t, s, q, url)
	require.Eventually(t, func() bool { return len(got()) == 2 }, 15*time.Second, 20*time.Millisecond)
	calls := got()
	require.Equal(t, calls[0].id, calls[1].id, "webhook-id is stable across retries")
	require.Equal(t, task.StatusSuccess, calls[1].status)
	// asynq keeps retry times in whole seconds, so a 1 s delay is 0 to 1 s.
	require.Greater(t, calls[1].at.Sub(calls[0].at), time.Duration(0))
	time.Sleep(1500 * time.Millisecond)
	require.Len(t, got(), 2, "a 2xx ends the deliveries")
}

func TestWebhookGoneStopsRetries(t *testing.T) {
	t.Parallel()
	s, q, got, url := webhookSetup(t, http.StatusGone)
	submitWithHook(t, s, q, url)
	require.Eventually(t, func() bool { return len(got()) == 1 }, 10*time.Second, 20*time.Millisecond)
	time.Sleep(2500 * time.Millisecond) // two retry delays
	require.Len(t, got(), 1, "410 is not retried")
}
