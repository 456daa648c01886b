package e2e_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/loadtest"
	"github.com/siganteng/siganteng/internal/redistest"
	"github.com/siganteng/siganteng/internal/task"
)

// limitedProvider is the load tool's provider enforcing rpm requests a
// minute the way OpenAI does.
func limitedProvider(t *testing.T, limits loadtest.Limits) *httptest.Server {
	t.Helper()
	prov := httptest.NewServer(loadtest.Provider{Delay: 20 * time.Millisecond, Limits: limits}.Handler())
	t.Cleanup(prov.Close)
	return prov
}

// providerCalls reads the load tool provider's counts.
func providerCalls(t *testing.T, prov *httptest.Server) (answered, refused int64) {
	t.Helper()
	res, err := http.Get(prov.URL + "/stats")
	require.NoError(t, err)
	defer res.Body.Close()
	var s struct{ Answered, Refused int64 }
	require.NoError(t, json.NewDecoder(res.Body).Decode(&s))
	return s.Answered, s.Refused
}

// burst submits n tasks at once and returns their ids.
func burst(t *testing.T, base string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec, _ := submit(t, base, fmt.Sprintf(`{"prompt":"burst %d","max_tokens":8}`, i))
			ids[i] = rec.TaskID
		}()
	}
	wg.Wait()
	return ids
}

// awaitAll waits for every task and counts their final statuses.
func awaitAll(t *testing.T, base string, ids []string, within time.Duration) map[string]int {
	t.Helper()
	statuses := map[string]int{}
	for _, id := range ids {
		final, _ := await(t, base, id, within)
		statuses[final.Status]++
	}
	return statuses
}

// flowRun is one burst against a provider allowing 1,200 requests a
// minute (20 a second, and one second's worth at once), through an API
// and two worker processes on one Redis, which share the budget. The
// provider says its limits unless retryAfterOnly.
func flowRun(t *testing.T, retryAfterOnly bool, limitEnv ...string) (elapsed, ideal time.Duration, answered, refused int64) {
	t.Helper()
	const rpm, tasks = 1200, 200
	prov := limitedProvider(t, loadtest.Limits{RPM: rpm, RetryAfterOnly: retryAfterOnly})
	env := benchEnv(redistest.URL(t), prov.URL, append([]string{"LOG_LEVEL", "warn", "ARTIFACT_DIR", t.TempDir()}, limitEnv...)...)
	s := start(t, "api", env)
	child(t, "worker", env)
	child(t, "worker", env)
	began := time.Now()
	ids := burst(t, s.url, tasks)
	// The last tasks wait for budget, and their records say so.
	require.Eventually(t, func() bool {
		r := get(t, s.url, ids[len(ids)-1])
		return r.Status == "SUCCESS" || (r.Waiting != nil && r.Waiting.Deployment == "openai")
	}, 10*time.Second, 20*time.Millisecond)
	statuses := awaitAll(t, s.url, ids, time.Minute)
	elapsed = time.Since(began)
	require.Equal(t, map[string]int{"SUCCESS": tasks}, statuses, "every task of the burst succeeds")
	answered, refused = providerCalls(t, prov)
	// The provider takes 21 at once, then 20 a second.
	ideal = time.Duration(float64(tasks-21) / float64(rpm/60) * float64(time.Second))
	t.Logf("%d tasks against %d rpm: %s (ideal %s), %d provider calls, %d refused with 429",
		tasks, rpm, elapsed.Round(10*time.Millisecond), ideal.Round(10*time.Millisecond), answered+refused, refused)
	require.Greater(t, elapsed, ideal*8/10, "the pace is the provider's, not faster")
	// GET /models shows the limit, configured or learned.
	res, err := http.Get(s.url + "/models")
	require.NoError(t, err)
	defer res.Body.Close()
	var models struct {
		Models []task.ModelInfo `json:"models"`
	}
	require.NoError(t, json.NewDecoder(res.Body).Decode(&models))
	require.NotEmpty(t, models.Models)
	shown := models.Models[0].Flow
	require.NotNil(t, shown, "%+v", models.Models[0])
	if retryAfterOnly {
		require.Positive(t, shown.PacedRPM, "flow %+v: paced, at a rate learned from 429s", shown)
		// and /metrics shows the pace as a limit of its own source
		res, err := http.Get(s.url + "/metrics")
		require.NoError(t, err)
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		require.Contains(t, string(body), `siganteng_deployment_limit{deployment="openai",kind="rpm",source="paced"}`)
	} else {
		require.True(t, shown.RPM == rpm || shown.LearnedRPM == rpm, "flow %+v", shown)
	}
	return elapsed, ideal, answered, refused
}

func TestABurstAgainstAConfiguredLimitAllSucceedsAtThatPace(t *testing.T) {
	t.Parallel()
	elapsed, ideal, answered, refused := flowRun(t, false, "OPENAI_LIMIT_RPM", "1200")
	require.LessOrEqual(t, refused*100, answered+refused, "at most 1%% of calls refused")
	// The drain time is a figure for the load tool (README, Performance);
	// here, beside the rest of the suite under -race, only a gross bound:
	// no task waited far past its turn.
	require.Less(t, elapsed, ideal*3, "drained within three times the ideal")
}

func TestABurstAgainstALearnedLimitAllSucceeds(t *testing.T) {
	t.Parallel()
	elapsed, ideal, answered, refused := flowRun(t, false)
	require.LessOrEqual(t, refused*100, 10*(answered+refused), "at most 10%% of calls refused while the limit is learned")
	require.Less(t, elapsed, ideal*3, "drained within three times the ideal (a gross bound; the figure is the load tool's)")
}

// A provider that says nothing of its limits but a 429's Retry-After is
// paced at a rate learned from its 429s, not only paused at each: before
// that, three calls in four were refused (77% with the load tool).
func TestABurstAgainstAProviderThatSaysOnlyRetryAfterIsPaced(t *testing.T) {
	t.Parallel()
	elapsed, ideal, answered, refused := flowRun(t, true)
	// The pace is found from the first burst's refusals, 10 to 26 of the
	// 200 tasks' calls beside the rest of the suite under -race (6 to 12%),
	// so a run this short bounds them loosely; the load tool's 20,000
	// tasks measure the figure (0.35 to 0.45%). Unpaced, 61% were refused.
	require.LessOrEqual(t, refused*100, 15*(answered+refused), "at most 15%% of calls refused while the pace is learned")
	require.Less(t, elapsed, ideal*3, "drained within three times the ideal (a gross bound; the figure is the load tool's)")
}

// TestAWorkerKilledWhileTasksWaitLosesNone SIGKILLs one of two worker
// processes while a burst waits for budget: every task still succeeds,
// each provider call at most once more than the tasks (asynq's
// at-least-once for the one the dead worker had in flight), and the
// budget the dead worker had reserved is not lost for good: the burst
// still drains.
func TestAWorkerKilledWhileTasksWaitLosesNone(t *testing.T) {
	t.Parallel()
	const tasks = 100
	prov := limitedProvider(t, loadtest.Limits{RPM: 1200})
	env := benchEnv(redistest.URL(t), prov.URL, "LOG_LEVEL", "warn", "ARTIFACT_DIR", t.TempDir(), "OPENAI_LIMIT_RPM", "1200", "OPENAI_LIMIT_CONCURRENT", "4", "TASK_TIMEOUT", "5s")
	s := start(t, "api", env)
	victim, _ := child(t, "worker", env)
	ids := burst(t, s.url, tasks)
	require.Eventually(t, func() bool { a, _ := providerCalls(t, prov); return a >= 30 }, 20*time.Second, 10*time.Millisecond)
	require.NoError(t, victim.Process.Signal(syscall.SIGKILL))
	_, _ = victim.Process.Wait()
	killed := time.Now()
	child(t, "worker", env)
	statuses := awaitAll(t, s.url, ids, 3*time.Minute)
	require.Equal(t, map[string]int{"SUCCESS": tasks}, statuses)
	answered, refused := providerCalls(t, prov)
	t.Logf("worker killed mid-burst: all %d succeeded %s after the kill; %d provider calls answered, %d refused",
		tasks, time.Since(killed).Round(time.Second), answered, refused)
	require.LessOrEqual(t, answered, int64(tasks+4), "at most the calls in flight at the kill are made twice")
}

// TestABudgetHoldsUnderConcurrency sends 200 submits, and then 200
// synchronous calls with another key, all at once, against a daily budget
// that covers 20 calls: each is charged its estimate when admitted and its
// usage when it ends, so the key spends at most its budget and one call's
// estimate.
func TestABudgetHoldsUnderConcurrency(t *testing.T) {
	t.Parallel()
	prov := httptest.NewServer(loadtest.Provider{Delay: 50 * time.Millisecond}.Handler()) // 2 tokens a call
	t.Cleanup(prov.Close)
	redisURL := redistest.URL(t)
	const budget, estimate = 40, 8 // a one-letter prompt and max_tokens 8
	queued := createKey(t, redisURL, "--name", "queued", "--daily-tokens", fmt.Sprint(budget), "--rps", "100000")
	synced := createKey(t, redisURL, "--name", "synced", "--daily-tokens", fmt.Sprint(budget), "--rps", "100000")
	s := start(t, "serve", benchEnv(redisURL, prov.URL, "LOG_LEVEL", "warn"))
	fire := func(key, path string) (statuses map[int]int, ids []string) {
		statuses = map[int]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range 200 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, raw := call(t, http.MethodPost, s.url+path, key, `{"prompt":"x","max_tokens":8}`)
				mu.Lock()
				defer mu.Unlock()
				statuses[res.StatusCode]++
				var rec record
				if res.StatusCode == http.StatusAccepted && json.Unmarshal(raw, &rec) == nil {
					ids = append(ids, rec.TaskID)
				}
			}()
		}
		wg.Wait()
		return statuses, ids
	}
	spent := func(key string) int {
		_, raw := call(t, http.MethodGet, s.url+"/usage", key, "")
		var usage struct {
			Total struct {
				InputTokens  int `json:"input_tokens"`
				OutputTokens int `json:"output_tokens"`
			} `json:"total"`
		}
		require.NoError(t, json.Unmarshal(raw, &usage), "%s", raw)
		return usage.Total.InputTokens + usage.Total.OutputTokens
	}
	statuses, ids := fire(queued, "/background/generate_text")
	for _, id := range ids {
		final, _ := await(t, s.url, id, 30*time.Second, queued)
		require.Equal(t, "SUCCESS", final.Status)
	}
	t.Logf("200 concurrent submits: %v; %d tokens spent of a budget of %d", statuses, spent(queued), budget)
	require.Equal(t, 200, statuses[http.StatusAccepted]+statuses[http.StatusTooManyRequests], "%v", statuses)
	require.LessOrEqual(t, spent(queued), budget+estimate)
	require.Equal(t, 2*statuses[http.StatusAccepted], spent(queued), "the usage read is the calls'")

	statuses, _ = fire(synced, "/generate_text")
	t.Logf("200 concurrent synchronous calls: %v; %d tokens spent of a budget of %d", statuses, spent(synced), budget)
	require.Equal(t, 200, statuses[http.StatusOK]+statuses[http.StatusTooManyRequests], "%v", statuses)
	require.LessOrEqual(t, spent(synced), budget+estimate)
	require.Equal(t, 2*statuses[http.StatusOK], spent(synced), "the usage read is the calls'")

	// Nothing is left held: once the calls have ended, what the budget has
	// left can be used.
	res, raw := call(t, http.MethodPost, s.url+"/generate_text", synced, `{"prompt":"x","max_tokens":8}`)
	if spent(synced) < budget {
		require.Equal(t, http.StatusOK, res.StatusCode, "%s", raw)
	} else {
		require.Equal(t, http.StatusTooManyRequests, res.StatusCode, "%s", raw)
	}
}

// TestAKeysWaitingConnectionsAreBounded: with --max-waiting 2, a key's
// third event stream at once is refused with a 429, on any API process,
// and its Prefer: wait is answered at once instead of holding a third
// connection; a stream closed gives its hold back to every process.
func TestAKeysWaitingConnectionsAreBounded(t *testing.T) {
	t.Parallel()
	redisURL := redistest.URL(t)
	key := createKey(t, redisURL, "--name", "streams", "--max-waiting", "2")
	env := benchEnv(redisURL, "http://127.0.0.1:9", "LOG_LEVEL", "warn", "ARTIFACT_DIR", t.TempDir())
	s := start(t, "api", env) // no worker: the task stays PENDING
	other := start(t, "api", env)
	res, raw := call(t, http.MethodPost, s.url+"/background/generate_text", key, `{"prompt":"p"}`)
	require.Equal(t, http.StatusAccepted, res.StatusCode, "%s", raw)
	var rec record
	require.NoError(t, json.Unmarshal(raw, &rec))
	open := func(base string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, base+"/background/tasks/"+rec.TaskID+"/events", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		t.Cleanup(func() { res.Body.Close() })
		return res
	}
	first := open(s.url)
	require.Equal(t, http.StatusOK, first.StatusCode)
	require.Equal(t, http.StatusOK, open(s.url).StatusCode)
	third := open(other.url)
	body, _ := io.ReadAll(third.Body)
	require.Equal(t, http.StatusTooManyRequests, third.StatusCode, "the other API process counts the same holds: %s", body)
	require.Contains(t, string(body), "waiting connections")
	first.Body.Close() // its hold is given back when the server sees it gone
	require.Eventually(t, func() bool {
		res := open(other.url)
		if res.StatusCode != http.StatusOK {
			res.Body.Close()
			return false
		}
		return true // kept open: the key holds two again
	}, 20*time.Second, 50*time.Millisecond, "a closed stream's hold is free for any process")

	began := time.Now()
	res, raw = call(t, http.MethodPost, s.url+"/background/generate_text", key, `{"prompt":"p"}`, "Prefer", "wait=5")
	require.Less(t, res.StatusCode, 300, "%s", raw)
	require.Less(t, time.Since(began), 2*time.Second, "Prefer: wait is answered at once while the key holds its waiting connections")
}
