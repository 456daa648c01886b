package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/fetch"
	"github.com/siganteng/siganteng/internal/webhook"
)

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func payload(t *testing.T, url string) []byte {
	b, err := json.Marshal(webhook.Delivery{ID: "msg_t1_1-0", TaskID: "t1", Event: "completed", URL: url, Body: json.RawMessage(`{"task_id":"t1","status":"SUCCESS"}`)})
	require.NoError(t, err)
	return b
}

func TestDeliveryIsSignedAsStandardWebhooksSays(t *testing.T) {
	t.Parallel()
	type request struct {
		header http.Header
		body   []byte
	}
	got := make(chan request, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- request{r.Header.Clone(), must(io.ReadAll(r.Body))}
	}))
	defer srv.Close()
	d, err := webhook.NewDeliverer(secret, fetch.New(fetch.Config{Timeout: time.Second, AllowPrivate: true}), nil, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.NoError(t, d.Deliver(context.Background(), payload(t, srv.URL)))
	req := <-got
	header, body := req.header, req.body

	require.JSONEq(t, `{"task_id":"t1","status":"SUCCESS"}`, string(body))
	require.Equal(t, "msg_t1_1-0", header.Get("webhook-id"))
	require.Equal(t, "application/json", header.Get("Content-Type"))
	wh, err := standardwebhooks.NewWebhook(secret)
	require.NoError(t, err)
	require.NoError(t, wh.Verify(body, header), "the reference library accepts the signature")
	other, err := standardwebhooks.NewWebhook("whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY")
	require.NoError(t, err)
	require.Error(t, other.Verify(body, header), "another secret does not verify")
}

func TestDeliveryToAnInternalAddressIsRefusedForGood(t *testing.T) {
	t.Parallel()
	var called atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called.Store(true) }))
	defer srv.Close()
	d, err := webhook.NewDeliverer(secret, fetch.New(fetch.Config{Timeout: time.Second}), nil, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	err = d.Deliver(context.Background(), payload(t, srv.URL)) // 127.0.0.1
	require.ErrorIs(t, err, fetch.ErrRefused)
	require.True(t, errors.Is(err, asynq.SkipRetry), "retrying cannot help")
	require.False(t, called.Load())
}

func TestFailedDeliveryIsRetried(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) }))
	defer srv.Close()
	d, err := webhook.NewDeliverer(secret, fetch.New(fetch.Config{Timeout: time.Second, AllowPrivate: true}), nil, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	err = d.Deliver(context.Background(), payload(t, srv.URL))
	require.Error(t, err)
	require.False(t, errors.Is(err, asynq.SkipRetry))
}

func TestRetryScheduleSpansADay(t *testing.T) {
	var total time.Duration
	for i := range webhook.Schedule {
		total += webhook.RetryDelay(webhook.Schedule, i)
	}
	require.Greater(t, total, 24*time.Hour)
	require.Equal(t, 10*time.Hour, webhook.RetryDelay(webhook.Schedule, 99))
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
