package e2e_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider/providertest"
	"github.com/siganteng/siganteng/internal/redistest"
)

func TestMetricsAndMonitoringNeedAnAdminKey(t *testing.T) {
	t.Parallel()
	redisURL := redistest.URL(t)
	admin := createKey(t, redisURL, "--name", "ops", "--admin")
	user := createKey(t, redisURL, "--name", "app")
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	s := start(t, "serve", openAIEnv(t, fake, redisURL))

	res, raw := call(t, http.MethodPost, s.url+"/background/generate_text", user, `{"prompt":"count me"}`, "X-Request-ID", "trace-42")
	require.Equal(t, http.StatusAccepted, res.StatusCode, "%s", raw)
	require.Equal(t, "trace-42", res.Header.Get("X-Request-ID"), "the client's request id is echoed")
	var rec record
	require.NoError(t, json.Unmarshal(raw, &rec))
	await(t, s.url, rec.TaskID, 10*time.Second, user)
	require.Contains(t, s.logs.String(), "request_id=trace-42", "the request's log lines carry its id")

	for _, path := range []string{"/metrics", "/monitoring/"} {
		res, _ := call(t, http.MethodGet, s.url+path, "", "")
		require.Equal(t, http.StatusUnauthorized, res.StatusCode, path)
		res, _ = call(t, http.MethodGet, s.url+path, user, "")
		require.Equal(t, http.StatusForbidden, res.StatusCode, path)
		res, _ = call(t, http.MethodGet, s.url+path, admin, "")
		require.Equal(t, http.StatusOK, res.StatusCode, path)
	}
	_, raw = call(t, http.MethodGet, s.url+"/metrics", admin, "")
	text := string(raw)
	for _, want := range []string{
		`siganteng_http_requests_total{method="POST",route="/background/generate_text",status="202"} 1`,
		`siganteng_tasks_submitted_total{type="generate_text"} 1`,
		`siganteng_tasks_ended_total{provider="openai",status="SUCCESS",type="generate_text"} 1`,
		`siganteng_provider_calls_total{outcome="success",provider="openai",status_code="0",type="generate_text"} 1`,
		`siganteng_task_queue_wait_seconds_count{type="generate_text"} 1`,
		`siganteng_task_run_seconds_bucket{outcome="success",provider="openai",type="generate_text",le="+Inf"} 1`,
		`siganteng_queue_tasks{queue="generate_text",state="pending"} 0`,
		`go_goroutines`,
		`process_resident_memory_bytes`,
	} {
		require.Contains(t, text, want)
	}
	require.NotContains(t, text, rec.TaskID, "no series per task id")
}

func TestMetricsAddrServesWorkersWithoutKeys(t *testing.T) {
	t.Parallel()
	redisURL := redistest.URL(t)
	createKey(t, redisURL, "--name", "app") // keys exist: the API needs them
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	env := openAIEnv(t, fake, redisURL)
	env["METRICS_ADDR"] = freeAddr(t)
	start(t, "worker", env)
	var res *http.Response
	require.Eventually(t, func() bool {
		var err error
		res, err = http.Get("http://" + env["METRICS_ADDR"] + "/metrics")
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.True(t, strings.Contains(string(raw), "go_goroutines"), "a worker's own metrics, on the operators' address")
}
