package e2e_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider/providertest"
	"github.com/siganteng/siganteng/internal/redistest"
)

// Scheduled tasks wait PENDING with scheduled_at, start at that time and not
// before, and survive a restart of the only server while they wait.
func TestScheduledTasksStartOnTimeAndSurviveARestart(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	env := openAIEnv(t, fake, redistest.URL(t))
	first := start(t, "serve", env)

	runAt := time.Now().Add(2 * time.Second).UTC()
	var ids []string
	for i := range 10 {
		rec, _ := submit(t, first.url, fmt.Sprintf(`{"prompt":"later %d","run_at":%q}`, i, runAt.Format(time.RFC3339Nano)))
		require.Equal(t, "PENDING", rec.Status)
		ids = append(ids, rec.TaskID)
	}
	delayed, _ := submit(t, first.url, `{"prompt":"after a restart","delay":3}`)
	var late []time.Duration
	for _, id := range ids {
		final, seen := await(t, first.url, id, 20*time.Second)
		require.Equal(t, "SUCCESS", final.Status, "seen %v", seen)
		require.NotNil(t, final.ScheduledAt)
		require.NotNil(t, final.StartedAt)
		scheduled, started := *final.ScheduledAt, *final.StartedAt
		require.WithinDuration(t, runAt, scheduled, time.Millisecond, "scheduled_at is the time asked")
		require.False(t, started.Before(scheduled), "started %s, before its scheduled %s", started, scheduled)
		late = append(late, started.Sub(scheduled))
	}
	slices.Sort(late)
	t.Logf("scheduled tasks started late by p50 %s, max %s (RETRY_POLL_INTERVAL 100ms here)", late[len(late)/2], late[len(late)-1])
	require.Less(t, late[len(late)-1], 2*time.Second)

	// The only server goes away while a task waits; another finds it.
	require.Equal(t, "PENDING", get(t, first.url, delayed.TaskID).Status)
	first.stop()
	first.done <- <-first.done // stopped; the cleanup reads it again
	second := start(t, "serve", env)
	final, seen := await(t, second.url, delayed.TaskID, 20*time.Second)
	require.Equal(t, "SUCCESS", final.Status, "seen %v", seen)
}

// A scheduled task cancelled while it waits never runs.
func TestAScheduledTaskCancelledWhileItWaitsNeverRuns(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	s := start(t, "serve", openAIEnv(t, fake, redistest.URL(t)))
	rec, _ := submit(t, s.url, `{"prompt":"never","delay":1}`)
	res, raw := call(t, "POST", s.url+"/background/tasks/"+rec.TaskID+"/cancel", "", "")
	require.Equal(t, 200, res.StatusCode, "%s", raw)
	require.Equal(t, "REVOKED", get(t, s.url, rec.TaskID).Status)
	// The worker takes it at its time and sees it has ended: the positive
	// sign that "it did not run" means something.
	require.Eventually(t, func() bool { return strings.Contains(s.logs.String(), "task already finished; not running it again") },
		15*time.Second, 20*time.Millisecond)
	require.Empty(t, fake.Calls(), "the provider was never called")
}

// A deadline ends the whole task: a running call is cut, and a task that
// sits between retries ends at the deadline, not at its next attempt.
func TestADeadlineEndsATaskWhateverItIsDoing(t *testing.T) {
	t.Parallel()
	slow := providertest.NewOpenAIFake(providertest.WithDelay(30 * time.Second))
	t.Cleanup(slow.Close)
	s := start(t, "serve", openAIEnv(t, slow, redistest.URL(t)))
	rec, _ := submit(t, s.url, `{"prompt":"too slow","deadline_after":1}`)
	require.NotNil(t, rec.DeadlineAt)
	final, seen := await(t, s.url, rec.TaskID, 10*time.Second)
	require.Equal(t, "REVOKED", final.Status, "seen %v", seen)
	require.Equal(t, "deadline_exceeded", final.Error.Code)
	require.Contains(t, seen, "STARTED", "it was cut while running")
	require.Len(t, slow.Calls(), 1)

	replies := providertest.NewOpenAIFake() // only to shape the answer below
	t.Cleanup(replies.Close)
	busy := replies.ErrorReply(503, "overloaded", 30*time.Second)
	failing := providertest.NewOpenAIFake(providertest.WithFailures(func(int) *providertest.Reply { return &busy }))
	t.Cleanup(failing.Close)
	s2 := start(t, "serve", openAIEnv(t, failing, redistest.URL(t)))
	began := time.Now()
	rec, _ = submit(t, s2.url, `{"prompt":"retried","deadline_after":2}`)
	final, seen = await(t, s2.url, rec.TaskID, 15*time.Second)
	require.Equal(t, "REVOKED", final.Status, "seen %v", seen)
	require.Equal(t, "deadline_exceeded", final.Error.Code)
	require.Contains(t, seen, "RETRY")
	require.Less(t, time.Since(began), 10*time.Second, "ended at its deadline, not at the retry 30 s later")

	res, raw := call(t, "POST", s.url+"/background/generate_text", "", `{"prompt":"x","delay":10,"deadline_after":5}`)
	require.Equal(t, 422, res.StatusCode, "%s", raw)
	require.Contains(t, string(raw), "deadline_after")
}

// A result larger than LARGE_RESULT_BYTES is kept in the artifact store,
// not in Redis; a status read inlines it, a listing names it.
func TestALargeResultIsKeptOutOfRedis(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	redisURL := redistest.URL(t)
	env := frontEnv(t, fake, redisURL)
	env["LARGE_RESULT_BYTES"] = "2048"
	s := start(t, "serve", env)
	inputs := make([]string, 64)
	for i := range inputs {
		inputs[i] = fmt.Sprintf("%q", fmt.Sprint("text ", i))
	}
	rec, _ := submitTo(t, s.url, "embed", `{"input":[`+strings.Join(inputs, ",")+`],"dimensions":16}`)
	small, _ := submit(t, s.url, `{"prompt":"small"}`)
	final, _ := await(t, s.url, rec.TaskID, 10*time.Second)
	require.Equal(t, "SUCCESS", final.Status)
	await(t, s.url, small.TaskID, 10*time.Second)

	rdb := redistest.Client(t, redisURL)
	kept, err := rdb.HGetAll(context.Background(), "{siganteng}:task:"+rec.TaskID).Result()
	require.NoError(t, err)
	require.Empty(t, kept["result"], "Redis holds no large result")
	require.NotEmpty(t, kept["result_key"])
	require.Less(t, len(fmt.Sprint(kept)), 4096)
	smallKept, err := rdb.HGet(context.Background(), "{siganteng}:task:"+small.TaskID, "result").Result()
	require.NoError(t, err)
	require.Contains(t, smallKept, "echo: small", "a small result stays in its record")

	var inlined struct {
		Result struct {
			Vectors [][]float64 `json:"vectors"`
		} `json:"result"`
		ResultURL string `json:"result_url"`
	}
	getJSON(t, s.url+"/background/tasks/"+rec.TaskID, &inlined)
	require.Len(t, inlined.Result.Vectors, 64, "a status read inlines it")
	require.Empty(t, inlined.ResultURL)
	var linked map[string]any
	getJSON(t, s.url+"/background/tasks/"+rec.TaskID+"?result=link", &linked)
	require.Nil(t, linked["result"])
	require.Equal(t, "/background/tasks/"+rec.TaskID, linked["result_url"])
	var page struct {
		Tasks []map[string]any `json:"tasks"`
	}
	getJSON(t, s.url+"/background/tasks?type=embed", &page)
	require.Len(t, page.Tasks, 1)
	require.Nil(t, page.Tasks[0]["result"], "listings never inline it")
	require.NotEmpty(t, page.Tasks[0]["result_url"])
}
