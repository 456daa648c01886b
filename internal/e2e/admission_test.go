package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/loadtest"
	"github.com/siganteng/siganteng/internal/redistest"
	"github.com/siganteng/siganteng/internal/store"
)

// submitAs submits n generate_text tasks at once with key and returns
// their ids.
func submitAs(t *testing.T, base, key string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			res, body := call(t, http.MethodPost, base+"/background/generate_text", key, fmt.Sprintf(`{"prompt":"task %d","max_tokens":8}`, i))
			require.Equal(t, http.StatusAccepted, res.StatusCode, "%s", body)
			var rec record
			require.NoError(t, json.Unmarshal(body, &rec))
			ids[i] = rec.TaskID
		})
	}
	wg.Wait()
	return ids
}

// awaitWindow waits for a worker to have said how many slots it has.
func awaitWindow(t *testing.T, redisURL string) {
	t.Helper()
	opts, err := redis.ParseURL(redisURL)
	require.NoError(t, err)
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	require.Eventually(t, func() bool {
		return rdb.Exists(context.Background(), store.AdmitWindowKey).Val() == 1
	}, 10*time.Second, 20*time.Millisecond, "no worker set the keys' window")
}

// keyShareRun has key A submit a burst of 60 tasks to a provider with no
// limit that takes 300 ms a call, through workers of 4 slots each, then
// key B submit one task, and returns how long B's took and how many of
// A's waited in A's line.
func keyShareRun(t *testing.T, env map[string]string) (took time.Duration, lined int) {
	t.Helper()
	prov := httptest.NewServer(loadtest.Provider{Delay: 300 * time.Millisecond}.Handler())
	t.Cleanup(prov.Close)
	redisURL := redistest.URL(t)
	a, b := createKey(t, redisURL, "--name", "a", "--rps", "100000"), createKey(t, redisURL, "--name", "b", "--rps", "100000")
	admin := createKey(t, redisURL, "--name", "ops", "--admin")
	vars := benchEnv(redisURL, prov.URL, "LOG_LEVEL", "warn", "ARTIFACT_DIR", t.TempDir(), "WORKER_CONCURRENCY", "4")
	for k, v := range env {
		vars[k] = v
	}
	s := start(t, "api", vars)
	child(t, "worker", vars)
	awaitWindow(t, redisURL)
	burst := submitAs(t, s.url, a, 60)
	// Scraped at once, while the line is at its longest: reading the 60
	// records first took long enough beside the suite under -race for the
	// line to have drained.
	res, metrics := call(t, http.MethodGet, s.url+"/metrics", admin, "")
	require.Equal(t, http.StatusOK, res.StatusCode)
	for _, id := range burst {
		if r := get(t, s.url, id, a); r.Waiting != nil && r.Waiting.Reason == "key_share" {
			lined++
		}
	}
	if lined > 0 { // and /metrics counted them, under the key's id
		require.Regexp(t, `siganteng_key_line_tasks\{key="[^"]+"\} [1-9]`, string(metrics))
	}
	require.Eventually(t, func() bool { n, _ := providerCalls(t, prov); return n >= 4 }, 10*time.Second, 10*time.Millisecond)
	began := time.Now()
	mine := submitAs(t, s.url, b, 1)[0]
	final, _ := await(t, s.url, mine, 30*time.Second, b)
	took = time.Since(began)
	require.Equal(t, "SUCCESS", final.Status)
	for _, id := range burst {
		final, _ := await(t, s.url, id, time.Minute, a)
		require.Equal(t, "SUCCESS", final.Status, "every task of the burst succeeds")
	}
	t.Logf("key B's task took %s behind key A's burst of 60 (%d of them waited in A's line)", took.Round(time.Millisecond), lined)
	return took, lined
}

// TestAKeysBurstLeavesAnotherKeyTheNextSlot is issue 16's last case: on a
// deployment with no limit, configured or learned, a burst took the
// worker slots first in, first out, and another key's task waited behind
// all of it (here 60 tasks at 300 ms on 4 slots: 4.5 s; with
// MAX_QUEUED_PER_KEY set past the burst it still does). Each key now has
// at most the workers' slots and an eighth queued; the rest waits in its
// line, so B's task is queued behind one task of A's at most.
func TestAKeysBurstLeavesAnotherKeyTheNextSlot(t *testing.T) {
	t.Parallel()
	took, lined := keyShareRun(t, nil)
	require.GreaterOrEqual(t, lined, 50, "the burst past the window (4 slots and 1) waits in its key's line, and says so")
	require.Less(t, took, 2*time.Second, "key B's task went in at the next free slot (the burst takes 4.5 s)")
}

// TestAWorkerKilledWhileTasksWaitInTheirLineLosesNone SIGKILLs the only
// worker while a key's burst waits in its line: the line is in Redis, and
// the next worker lets it in; every task succeeds, and the places of the
// tasks the dead worker ran are not lost for good.
func TestAWorkerKilledWhileTasksWaitInTheirLineLosesNone(t *testing.T) {
	t.Parallel()
	prov := httptest.NewServer(loadtest.Provider{Delay: 100 * time.Millisecond}.Handler())
	t.Cleanup(prov.Close)
	redisURL := redistest.URL(t)
	key := createKey(t, redisURL, "--name", "a", "--rps", "100000")
	env := benchEnv(redisURL, prov.URL, "LOG_LEVEL", "warn", "ARTIFACT_DIR", t.TempDir(), "WORKER_CONCURRENCY", "4", "TASK_TIMEOUT", "5s")
	s := start(t, "api", env)
	victim, _ := child(t, "worker", env)
	awaitWindow(t, redisURL)
	ids := submitAs(t, s.url, key, 40)
	require.Eventually(t, func() bool { n, _ := providerCalls(t, prov); return n >= 8 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, victim.Process.Signal(syscall.SIGKILL))
	_, _ = victim.Process.Wait()
	lined := 0
	for _, id := range ids {
		if r := get(t, s.url, id, key); r.Waiting != nil && r.Waiting.Reason == "key_share" {
			lined++
		}
	}
	require.Positive(t, lined, "tasks were in line at the kill")
	child(t, "worker", env)
	// The tasks the dead worker was running come back once asynq's lease
	// on them lapses (30 s, then its recoverer's minute).
	for _, id := range ids {
		final, _ := await(t, s.url, id, 3*time.Minute, key)
		require.Equal(t, "SUCCESS", final.Status)
	}
	answered, _ := providerCalls(t, prov)
	require.LessOrEqual(t, answered, int64(len(ids)+4), "at most the calls in flight at the kill are made twice")
}
