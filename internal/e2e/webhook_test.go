package e2e_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider/providertest"
	"github.com/siganteng/siganteng/internal/redistest"
)

const testWebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// receiver is a webhook endpoint that checks every signature, as the README
// tells receivers to.
type receiver struct {
	srv *httptest.Server

	mu         sync.Mutex
	deliveries []delivery
	bad        []string
}

type delivery struct {
	ID, Query string
	Record    record
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	wh, err := standardwebhooks.NewWebhook(testWebhookSecret)
	require.NoError(t, err)
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if err := wh.Verify(body, req.Header); err != nil {
			r.bad = append(r.bad, err.Error())
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var rec record
		if err := json.Unmarshal(body, &rec); err != nil {
			r.bad = append(r.bad, err.Error())
		}
		r.deliveries = append(r.deliveries, delivery{ID: req.Header.Get("webhook-id"), Query: req.URL.RawQuery, Record: rec})
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) got() ([]delivery, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.deliveries...), append([]string(nil), r.bad...)
}

func TestWebhooksAreSignedAndSentOnTheEventsAskedFor(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	rcv := newReceiver(t)
	env := openAIEnv(t, fake, redistest.URL(t))
	env["WEBHOOK_SECRET"] = testWebhookSecret
	env["FETCH_ALLOW_PRIVATE"] = "true" // the receiver listens on loopback
	s := start(t, "serve", env)

	hook := rcv.srv.URL + "/hooks/siganteng?token=receiver-secret"
	rec, _ := submit(t, s.url, `{"prompt":"hi","webhook":"`+hook+`","webhook_events":["start","completed"]}`)
	final, _ := await(t, s.url, rec.TaskID, 10*time.Second)
	require.Equal(t, "SUCCESS", final.Status)

	require.Eventually(t, func() bool { d, _ := rcv.got(); return len(d) == 2 }, 10*time.Second, 10*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // nothing more comes
	got, bad := rcv.got()
	require.Empty(t, bad, "every signature verifies")
	require.Len(t, got, 2)
	require.NotEqual(t, got[0].ID, got[1].ID)
	for _, d := range got {
		require.Equal(t, rec.TaskID, d.Record.TaskID)
		require.Equal(t, "token=receiver-secret", d.Query, "the URL is called as given")
	}
	statuses := []string{got[0].Record.Status, got[1].Record.Status}
	require.Contains(t, statuses, "SUCCESS", "the completed event carries the final record")
	for _, d := range got {
		if d.Record.Status == "SUCCESS" {
			require.Equal(t, "echo: hi", d.Record.Result.Text)
		}
	}

	// The record names the webhook without its path and query.
	res, err := http.Get(s.url + "/background/tasks/" + rec.TaskID)
	require.NoError(t, err)
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.NotContains(t, string(raw), "receiver-secret")
	require.Contains(t, string(raw), `"url":"`+rcv.srv.URL+`/…"`)
	require.NotContains(t, string(raw), "/hooks/siganteng", "nor its path, which may hold one too")
	require.NotContains(t, s.logs.String(), "receiver-secret")
	require.NotContains(t, s.logs.String(), strings.TrimPrefix(testWebhookSecret, "whsec_"))
}

func TestWebhookSubmitsAreCheckedUpFront(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	noSecret := start(t, "serve", openAIEnv(t, fake, redistest.URL(t)))
	for _, tc := range []struct{ base, body, field string }{
		{noSecret.url, `{"prompt":"p","webhook":"https://example.com/h"}`, "webhook"},
	} {
		res, err := http.Post(tc.base+"/background/generate_text", "application/json", strings.NewReader(tc.body))
		require.NoError(t, err)
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		require.Equal(t, http.StatusUnprocessableEntity, res.StatusCode, "%s", raw)
		require.Contains(t, string(raw), "WEBHOOK_SECRET")
	}

	env := openAIEnv(t, fake, redistest.URL(t))
	env["WEBHOOK_SECRET"] = testWebhookSecret
	s := start(t, "serve", env)
	for _, body := range []string{
		`{"prompt":"p","webhook":"ftp://example.com/h"}`,
		`{"prompt":"p","webhook":"https://user:pw@example.com/h"}`,
		`{"prompt":"p","webhook_events":["completed"]}`,
		`{"prompt":"p","webhook":"https://example.com/h","webhook_events":["finished"]}`,
		`{"prompt":"p","priority":"urgent"}`,
	} {
		res, err := http.Post(s.url+"/background/generate_text", "application/json", strings.NewReader(body))
		require.NoError(t, err)
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		require.Equal(t, http.StatusUnprocessableEntity, res.StatusCode, "%s: %s", body, raw)
		require.Equal(t, "application/problem+json", res.Header.Get("Content-Type"))
	}
}
