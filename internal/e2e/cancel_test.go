package e2e_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider/providertest"
	"github.com/siganteng/siganteng/internal/queue"
	"github.com/siganteng/siganteng/internal/redistest"
	"github.com/siganteng/siganteng/internal/task"
)

func cancel(t *testing.T, base, id string) (int, record) {
	t.Helper()
	res, err := http.Post(base+"/background/tasks/"+id+"/cancel", "application/json", nil)
	require.NoError(t, err)
	defer res.Body.Close()
	var rec record
	raw, _ := io.ReadAll(res.Body)
	_ = json.Unmarshal(raw, &rec)
	return res.StatusCode, rec
}

// queueDone waits until the queue is done with a generate_text task (asynq
// keeps no copy of a task that ended): the positive sign that a worker took
// it, which makes "the provider was not called again" mean something.
func queueDone(t *testing.T, redisURL, id string) {
	t.Helper()
	inspector := asynq.NewInspectorFromRedisClient(redistest.Client(t, redisURL))
	require.Eventually(t, func() bool {
		_, err := inspector.GetTaskInfo(queue.Name(task.TypeGenerateText, ""), id)
		return errors.Is(err, asynq.ErrTaskNotFound)
	}, 10*time.Second, 5*time.Millisecond, "no worker took task %s", id)
}

func TestCancelRunningTask(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake(providertest.WithDelay(10 * time.Second))
	t.Cleanup(fake.Close)
	redisURL := redistest.URL(t)
	s := start(t, "serve", openAIEnv(t, fake, redisURL))
	rec, _ := submit(t, s.url, `{"prompt":"long"}`)
	require.Eventually(t, func() bool { return len(fake.Calls()) == 1 }, 10*time.Second, 5*time.Millisecond)

	begin := time.Now()
	status, got := cancel(t, s.url, rec.TaskID)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "REVOKED", got.Status)
	require.Equal(t, "revoked", got.Error.Code)

	status, again := cancel(t, s.url, rec.TaskID)
	require.Equal(t, http.StatusOK, status, "cancel is idempotent")
	require.Equal(t, "REVOKED", again.Status)

	queueDone(t, redisURL, rec.TaskID) // done with, not waiting for a retry
	require.Len(t, fake.Calls(), 1, "a revoked task is not retried")
	require.Equal(t, "REVOKED", get(t, s.url, rec.TaskID).Status)
	require.Less(t, time.Since(begin), 5*time.Second)
}

func TestCancelBeforeStartNeverRuns(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	redisURL := redistest.URL(t)
	env := openAIEnv(t, fake, redisURL)
	api := start(t, "api", env) // no worker yet
	rec, _ := submit(t, api.url, `{"prompt":"never"}`)
	status, got := cancel(t, api.url, rec.TaskID)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "REVOKED", got.Status)

	start(t, "worker", env)
	queueDone(t, redisURL, rec.TaskID) // the worker took it, and did not run it
	require.Empty(t, fake.Calls())
	require.Equal(t, "REVOKED", get(t, api.url, rec.TaskID).Status)

	status, _ = cancel(t, api.url, "6f1c1d2e-0000-4000-8000-000000000000")
	require.Equal(t, http.StatusNotFound, status)
}

func TestCancelFinishedTaskChangesNothing(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	s := start(t, "serve", openAIEnv(t, fake, redistest.URL(t)))
	rec, _ := submit(t, s.url, `{"prompt":"quick"}`)
	await(t, s.url, rec.TaskID, 10*time.Second)
	status, got := cancel(t, s.url, rec.TaskID)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "SUCCESS", got.Status)
}

func preferWait(t *testing.T, base, prefer string) (*http.Response, record) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/background/generate_text", stringsReader(`{"prompt":"wait for me"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Prefer", prefer)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	var rec record
	require.NoError(t, json.NewDecoder(res.Body).Decode(&rec))
	return res, rec
}

func TestPreferWaitAnswersWithTheResult(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake(providertest.WithDelay(200 * time.Millisecond))
	t.Cleanup(fake.Close)
	s := start(t, "serve", openAIEnv(t, fake, redistest.URL(t)))

	begin := time.Now()
	res, rec := preferWait(t, s.url, "wait=10")
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "SUCCESS", rec.Status)
	require.Equal(t, "echo: wait for me", rec.Result.Text)
	require.Less(t, time.Since(begin), 3*time.Second, "answered when the task ended, not when the wait ran out")

	res, rec = preferWait(t, s.url, "wait=0")
	require.Equal(t, http.StatusAccepted, res.StatusCode)
	require.NotEqual(t, "SUCCESS", rec.Status)
}

func TestPreferWaitRunsOut(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake(providertest.WithDelay(5 * time.Second))
	t.Cleanup(fake.Close)
	s := start(t, "serve", openAIEnv(t, fake, redistest.URL(t)))
	begin := time.Now()
	res, rec := preferWait(t, s.url, "wait=1")
	require.Equal(t, http.StatusAccepted, res.StatusCode)
	require.Equal(t, "wait=1", res.Header.Get("Preference-Applied"))
	require.Contains(t, []string{"PENDING", "STARTED"}, rec.Status)
	require.InDelta(t, 1.0, time.Since(begin).Seconds(), 0.5)
}

func TestCancelAfterRevokesTasksNotStartedInTime(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	env := openAIEnv(t, fake, redistest.URL(t))
	api := start(t, "api", env) // no worker yet: the tasks wait

	late, _ := submit(t, api.url, `{"prompt":"late","cancel_after":1}`)
	req, err := http.NewRequest(http.MethodPost, api.url+"/background/generate_text", stringsReader(`{"prompt":"late too"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Cancel-After", "1")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var lateToo record
	require.NoError(t, json.NewDecoder(res.Body).Decode(&lateToo))
	res.Body.Close()
	onTime, _ := submit(t, api.url, `{"prompt":"on time","cancel_after":600}`)

	time.Sleep(1200 * time.Millisecond)
	start(t, "worker", env)
	for _, id := range []string{late.TaskID, lateToo.TaskID} {
		final, _ := await(t, api.url, id, 10*time.Second)
		require.Equal(t, "REVOKED", final.Status, id)
		require.Equal(t, "revoked", final.Error.Code)
		require.Contains(t, final.Error.Message, "cancel_after")
	}
	final, _ := await(t, api.url, onTime.TaskID, 10*time.Second)
	require.Equal(t, "SUCCESS", final.Status)
	require.Len(t, fake.Calls(), 1, "only the task on time reached the provider")
}

func TestIdempotencyKeyEndToEnd(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	s := start(t, "serve", openAIEnv(t, fake, redistest.URL(t)))
	post := func(body string) (*http.Response, record) {
		req, err := http.NewRequest(http.MethodPost, s.url+"/background/generate_text", stringsReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "order-42")
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		var rec record
		_ = json.NewDecoder(res.Body).Decode(&rec)
		return res, rec
	}
	res, first := post(`{"prompt":"charge once"}`)
	require.Equal(t, http.StatusAccepted, res.StatusCode)
	res, second := post(`{"prompt":"charge once"}`)
	require.Equal(t, http.StatusAccepted, res.StatusCode)
	require.Equal(t, "true", res.Header.Get("Idempotent-Replayed"))
	require.Equal(t, first.TaskID, second.TaskID)
	res, _ = post(`{"prompt":"charge twice"}`)
	require.Equal(t, http.StatusUnprocessableEntity, res.StatusCode)
	res, raw := call(t, http.MethodPost, s.url+"/background/generate_text", "", `{"prompt":"charge twice"}`, "Idempotency-Key", "order-42")
	require.Equal(t, http.StatusUnprocessableEntity, res.StatusCode)
	require.Contains(t, string(raw), `"location":"header.Idempotency-Key"`, "a header is named as one")

	await(t, s.url, first.TaskID, 10*time.Second)
	require.Len(t, fake.Calls(), 1, "the provider was called once")
}
