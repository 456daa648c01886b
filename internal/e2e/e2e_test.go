package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/redis/go-redis/v9"

	"github.com/siganteng/siganteng/internal/auth"
	"github.com/siganteng/siganteng/internal/cli"
	"github.com/siganteng/siganteng/internal/provider/providertest"
	"github.com/siganteng/siganteng/internal/redistest"
	"github.com/siganteng/siganteng/internal/task"
)

// TestMain lets the test binary stand in for the siganteng binary, so the
// separate-process tests run the real program without building it.
func TestMain(m *testing.M) {
	if args := os.Getenv("SIGANTENG_TEST_CHILD"); args != "" {
		err := cli.Run(context.Background(), append([]string{"siganteng"}, strings.Fields(args)...), os.Getenv, os.Stdout, os.Stderr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "siganteng:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const testKey = "sk-e2e-secret-0123456789abcdef"

// syncBuffer collects a server's log lines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// server is a siganteng running in this process.
type server struct {
	url  string
	logs *syncBuffer
	done chan error
	stop context.CancelFunc
}

// start runs `siganteng <cmd>` in-process with env and waits until it serves.
func start(t testing.TB, cmd string, env map[string]string) *server {
	t.Helper()
	addr := freeAddr(t)
	vars := map[string]string{"HTTP_ADDR": addr, "LOG_LEVEL": "debug", "WORKER_POLL_INTERVAL": "2ms",
		"RETRY_POLL_INTERVAL": "100ms", "RETRY_BASE_DELAY": "100ms", "SHUTDOWN_TIMEOUT": "5s", "ARTIFACT_DIR": t.TempDir()}
	for k, v := range env {
		vars[k] = v
	}
	openWhenKeyless(t, vars)
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{url: "http://" + addr, logs: &syncBuffer{}, done: make(chan error, 1), stop: cancel}
	go func() {
		s.done <- cli.Run(ctx, []string{"siganteng", cmd}, func(k string) string { return vars[k] }, io.Discard, s.logs)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			t.Error("server did not stop within 10s")
		}
	})
	if cmd != "worker" {
		waitHealthy(t, s.url, s.done)
	}
	return s
}

// openWhenKeyless sets AUTH_DISABLED=true for a server on a real Redis that
// holds no API key and whose test says nothing of AUTH_DISABLED: with a
// real Redis the API is never open by itself, and most tests are not about
// keys. Tests about keys create them first, or set AUTH_DISABLED.
func openWhenKeyless(t testing.TB, env map[string]string) {
	t.Helper()
	if _, set := env["AUTH_DISABLED"]; set || env["REDIS_URL"] == "" ||
		strings.Contains(env["REDIS_URL"], "master_name=") || strings.Contains(env["REDIS_URL"], "cluster=true") {
		return // Sentinel and Cluster tests say what they want
	}
	opts, err := redis.ParseURL(env["REDIS_URL"])
	require.NoError(t, err)
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	anyKeys, err := auth.NewStore(rdb).Any(context.Background())
	require.NoError(t, err)
	if !anyKeys {
		env["AUTH_DISABLED"] = "true"
	}
}

func waitHealthy(t testing.TB, url string, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("server exited before serving: %v", err)
		default:
		}
		res, err := http.Get(url + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s did not become healthy", url)
}

type record struct {
	TaskID   string `json:"task_id"`
	Type     string `json:"type"`
	Status   string `json:"status"`
	Attempts int    `json:"attempts"`
	Provider string `json:"provider"`
	Result   *struct {
		Text  string `json:"text"`
		Model string `json:"model"`
		Usage struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
			TotalTokens      int `json:"total_tokens"`
		} `json:"usage"`
	} `json:"result"`
	Error *struct {
		Code     string `json:"code"`
		Message  string `json:"message"`
		Provider string `json:"provider"`
	} `json:"error"`
	NextAttemptAt *time.Time    `json:"next_attempt_at"`
	StartedAt     *time.Time    `json:"started_at"`
	ScheduledAt   *time.Time    `json:"scheduled_at"`
	DeadlineAt    *time.Time    `json:"deadline_at"`
	Deployment    string        `json:"deployment"`
	Usage         *task.Metered `json:"usage"`
	Calls         []task.Call   `json:"calls"`
	Waiting       *task.Waiting `json:"waiting"`
}

func submit(t testing.TB, base, body string) (record, *http.Response) {
	t.Helper()
	return submitTo(t, base, "generate_text", body)
}

func submitTo(t testing.TB, base, typ, body string) (record, *http.Response) {
	t.Helper()
	res, err := http.Post(base+"/background/"+typ, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	require.Equal(t, http.StatusAccepted, res.StatusCode, "%s", raw)
	var rec record
	require.NoError(t, json.Unmarshal(raw, &rec))
	return rec, res
}

// get reads a task's record, with the API key given, if any.
func get(t testing.TB, base, id string, key ...string) record {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/background/tasks/"+id, nil)
	require.NoError(t, err)
	if len(key) > 0 {
		req.Header.Set("X-API-Key", key[0])
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	require.Equal(t, http.StatusOK, res.StatusCode, "%s", raw)
	var rec record
	require.NoError(t, json.Unmarshal(raw, &rec))
	return rec
}

// await polls every 2 ms until the task ends; it returns the final record
// and each status seen, in order.
func await(t testing.TB, base, id string, within time.Duration, key ...string) (record, []string) {
	t.Helper()
	var seen []string
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		rec := get(t, base, id, key...)
		if len(seen) == 0 || seen[len(seen)-1] != rec.Status {
			seen = append(seen, rec.Status)
		}
		switch rec.Status {
		case "SUCCESS", "FAILURE", "REVOKED":
			return rec, seen
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("task %s did not end within %s; saw %v", id, within, seen)
	return record{}, nil
}

func openAIEnv(t testing.TB, fake *providertest.OpenAIFake, redisURL string) map[string]string {
	return map[string]string{
		"REDIS_URL": redisURL, "LLM_PROVIDER": "openai", "OPENAI_BASE_URL": fake.URL(), "OPENAI_API_KEY": testKey,
		"LLM_MODEL": "gpt-test", "ARTIFACT_DIR": t.TempDir(),
	}
}

func TestSubmitThenSuccess(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	s := start(t, "serve", openAIEnv(t, fake, redistest.URL(t)))

	rec, res := submit(t, s.url, `{"prompt":"hello queue","system":"be brief","max_tokens":20}`)
	require.Equal(t, "PENDING", rec.Status)
	require.Equal(t, "/background/tasks/"+rec.TaskID, res.Header.Get("Location"))

	final, _ := await(t, s.url, rec.TaskID, 10*time.Second)
	require.Equal(t, "SUCCESS", final.Status)
	require.Equal(t, 1, final.Attempts)
	require.Equal(t, "openai", final.Provider)
	require.Equal(t, "echo: hello queue", final.Result.Text)
	require.Equal(t, "gpt-test", final.Result.Model)
	require.Equal(t, 2, final.Result.Usage.PromptTokens)
	require.Equal(t, 3, final.Result.Usage.CompletionTokens)

	calls := fake.Calls()
	require.Len(t, calls, 1)
	require.Equal(t, "Bearer "+testKey, calls[0].Authorization)
	require.Equal(t, "gpt-test", calls[0].Model)
	require.NotContains(t, s.logs.String(), testKey, "the API key must never be logged")
}

// A 429 is flow control (issue 16): the task waits for the pause the
// provider asked for, without using up an attempt, and then succeeds.
func TestRateLimitedWaitsThenSucceeds(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	fake.Script(fake.ErrorReply(http.StatusTooManyRequests, "Rate limit reached for gpt-test", 3*time.Second))
	env := openAIEnv(t, fake, redistest.URL(t))
	env["TASK_MAX_RETRY"] = "0" // a wait is not a retry: none is needed
	s := start(t, "serve", env)

	rec, _ := submit(t, s.url, `{"prompt":"hi"}`)
	var waiting *task.Waiting
	require.Eventually(t, func() bool {
		r := get(t, s.url, rec.TaskID)
		waiting = r.Waiting
		return r.Status == "PENDING" && r.Waiting != nil
	}, 5*time.Second, 20*time.Millisecond, "the record says the task waits")
	require.Equal(t, "provider", waiting.Reason)
	require.Equal(t, "openai", waiting.Deployment)
	require.False(t, waiting.Since.IsZero())
	require.WithinDuration(t, waiting.Since.Add(3*time.Second), waiting.Until, 1500*time.Millisecond, "until the provider's Retry-After")
	final, seen := await(t, s.url, rec.TaskID, 15*time.Second)
	require.Equal(t, "SUCCESS", final.Status, "seen %v", seen)
	require.Equal(t, 1, final.Attempts, "a wait uses up no attempt")
	require.NotContains(t, seen, "RETRY")
	require.Len(t, fake.Calls(), 2)
}

func TestProviderRejectionFailsWithoutRetry(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	fake.Script(fake.ErrorReply(http.StatusBadRequest, "Invalid value for 'model'", 0))
	s := start(t, "serve", openAIEnv(t, fake, redistest.URL(t)))

	rec, _ := submit(t, s.url, `{"prompt":"hi"}`)
	final, seen := await(t, s.url, rec.TaskID, 10*time.Second)
	require.Equal(t, "FAILURE", final.Status)
	require.NotContains(t, seen, "RETRY")
	require.Equal(t, 1, final.Attempts)
	require.Equal(t, "provider_rejected", final.Error.Code)
	require.Equal(t, "openai", final.Error.Provider)
	require.Contains(t, final.Error.Message, "Invalid value for 'model'")
	time.Sleep(300 * time.Millisecond)
	require.Len(t, fake.Calls(), 1)
}

func TestWrongKeyNeverShows(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	fake.Script(fake.ErrorReply(http.StatusUnauthorized, "Incorrect API key provided: "+testKey+".", 0))
	s := start(t, "serve", openAIEnv(t, fake, redistest.URL(t)))

	rec, _ := submit(t, s.url, `{"prompt":"hi"}`)
	final, _ := await(t, s.url, rec.TaskID, 10*time.Second)
	require.Equal(t, "FAILURE", final.Status)
	require.Equal(t, "provider_auth", final.Error.Code)
	require.NotContains(t, final.Error.Message, testKey)
	require.NotContains(t, s.logs.String(), testKey)
}

func TestSynchronousGenerateText(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	s := start(t, "serve", openAIEnv(t, fake, redistest.URL(t)))
	res, err := http.Post(s.url+"/generate_text", "application/json", strings.NewReader(`{"prompt":"now please"}`))
	require.NoError(t, err)
	defer res.Body.Close()
	var out struct {
		Text     string `json:"text"`
		Provider string `json:"provider"`
	}
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.NoError(t, json.NewDecoder(res.Body).Decode(&out))
	require.Equal(t, "echo: now please", out.Text)
	require.Equal(t, "openai", out.Provider)
}

func TestEmbeddedDefaultRunsWithoutRedis(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOllamaFake()
	t.Cleanup(fake.Close)
	s := start(t, "serve", map[string]string{"OLLAMA_BASE_URL": fake.URL()})
	require.Contains(t, s.logs.String(), "embedded in-memory Redis")
	require.Contains(t, s.logs.String(), "REDIS_URL")

	rec, _ := submit(t, s.url, `{"prompt":"local"}`)
	final, _ := await(t, s.url, rec.TaskID, 10*time.Second)
	require.Equal(t, "SUCCESS", final.Status)
	require.Equal(t, "ollama", final.Provider)
	require.Equal(t, "echo: local", final.Result.Text)
	require.NotNil(t, final.Usage, "the embedded Redis runs the usage scripts too")
	var usage struct {
		Total struct {
			Tasks        int `json:"tasks"`
			OutputTokens int `json:"output_tokens"`
		} `json:"total"`
	}
	getJSON(t, s.url+"/usage", &usage)
	require.Equal(t, 1, usage.Total.Tasks)
	require.Equal(t, int(final.Usage.OutputTokens), usage.Total.OutputTokens)
}

func TestNothingConfiguredSaysHowToConfigure(t *testing.T) {
	t.Parallel()
	closed := freeAddr(t) // nothing listens there
	s := start(t, "serve", map[string]string{"OLLAMA_BASE_URL": "http://" + closed})
	rec, _ := submit(t, s.url, `{"prompt":"anyone?"}`)
	final, _ := await(t, s.url, rec.TaskID, 10*time.Second)
	require.Equal(t, "FAILURE", final.Status)
	require.Equal(t, "provider_not_configured", final.Error.Code)
	for _, hint := range []string{"OPENAI_API_KEY", "HF_TOKEN", "OLLAMA_BASE_URL", "LLM_PROVIDER"} {
		require.Contains(t, final.Error.Message, hint)
	}
	require.Equal(t, 1, final.Attempts, "retrying cannot configure a provider")
}

func TestUnknownTaskIs404(t *testing.T) {
	t.Parallel()
	s := start(t, "serve", map[string]string{"REDIS_URL": redistest.URL(t)})
	res, err := http.Get(s.url + "/background/tasks/6f1c1d2e-0000-4000-8000-000000000000")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusNotFound, res.StatusCode)
	require.Equal(t, "application/problem+json", res.Header.Get("Content-Type"))
}

func TestRedisDownMeansFast503(t *testing.T) {
	t.Parallel()
	redis := redistest.StartServer(t)
	s := start(t, "api", map[string]string{"REDIS_URL": "redis://" + redis.Addr})
	redis.Kill()

	for _, probe := range []func() (*http.Response, error){
		func() (*http.Response, error) {
			return http.Post(s.url+"/background/generate_text", "application/json", strings.NewReader(`{"prompt":"x"}`))
		},
		func() (*http.Response, error) { return http.Get(s.url + "/readyz") },
		func() (*http.Response, error) { return http.Get(s.url + "/background/tasks/abc") },
	} {
		begin := time.Now()
		res, err := probe()
		require.NoError(t, err)
		res.Body.Close()
		require.Equal(t, http.StatusServiceUnavailable, res.StatusCode)
		require.Equal(t, "application/problem+json", res.Header.Get("Content-Type"))
		require.Less(t, time.Since(begin), 2*time.Second)
	}
}

// child starts the test binary as `siganteng args` in its own process.
func child(t *testing.T, args string, env map[string]string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SIGANTENG_TEST_CHILD="+args)
	env = maps.Clone(env)
	openWhenKeyless(t, env)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	return cmd, logs
}

func TestAPIAndWorkersInSeparateProcesses(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	env := openAIEnv(t, fake, redistest.URL(t))
	env["WORKER_POLL_INTERVAL"] = "2ms"
	env["LOG_FORMAT"] = "json"
	apiAddr, api2Addr := freeAddr(t), freeAddr(t)
	env["HTTP_ADDR"] = apiAddr
	api, apiLogs := child(t, "api", env)
	env2 := maps.Clone(env)
	env2["HTTP_ADDR"] = api2Addr
	api2, api2Logs := child(t, "api", env2)
	worker1, w1Logs := child(t, "worker", env)
	worker2, w2Logs := child(t, "worker", env)
	bases := []string{"http://" + apiAddr, "http://" + api2Addr}
	for _, base := range bases {
		waitHealthy(t, base, nil)
	}
	for _, logs := range []*syncBuffer{w1Logs, w2Logs} {
		require.Eventually(t, func() bool { return strings.Contains(logs.String(), "worker started") }, 15*time.Second, 10*time.Millisecond)
	}

	// Two API instances and two workers on one Redis: tasks submitted to
	// either are seen by both, and each runs exactly once.
	var ids []string
	for i := range 40 {
		rec, _ := submit(t, bases[i%2], fmt.Sprintf(`{"prompt":"task %d"}`, i))
		ids = append(ids, rec.TaskID)
	}
	for i, id := range ids {
		final, _ := await(t, bases[(i+1)%2], id, 15*time.Second)
		require.Equal(t, "SUCCESS", final.Status)
		require.Equal(t, fmt.Sprintf("echo: task %d", i), final.Result.Text)
		require.Equal(t, 1, final.Attempts)
	}
	require.Len(t, fake.Calls(), 40, "every task ran exactly once")
	require.Contains(t, w1Logs.String(), "task succeeded")
	require.Contains(t, w2Logs.String(), "task succeeded", "both workers took tasks")
	require.NotContains(t, apiLogs.String()+api2Logs.String(), "task succeeded", "the API processes run no tasks")

	// SIGTERM: each process stops taking work, finishes, and exits 0.
	procs := []*exec.Cmd{api, api2, worker1, worker2}
	for _, p := range procs {
		require.NoError(t, p.Process.Signal(syscall.SIGTERM))
	}
	for _, p := range procs {
		waited := make(chan error, 1)
		go func() { waited <- p.Wait() }()
		select {
		case err := <-waited:
			require.NoError(t, err, "exit status after SIGTERM")
		case <-time.After(15 * time.Second):
			t.Fatal("process did not exit after SIGTERM")
		}
	}
	require.NotContains(t, apiLogs.String()+api2Logs.String()+w1Logs.String()+w2Logs.String(), testKey)
}

func TestSIGTERMLetsRunningTaskFinish(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake(providertest.WithDelay(time.Second))
	t.Cleanup(fake.Close)
	redisURL := redistest.URL(t)
	env := openAIEnv(t, fake, redisURL)
	env["SHUTDOWN_TIMEOUT"] = "10s"
	s := start(t, "api", env)
	worker, _ := child(t, "worker", env)

	rec, _ := submit(t, s.url, `{"prompt":"slow one"}`)
	require.Eventually(t, func() bool { return len(fake.Calls()) == 1 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, worker.Process.Signal(syscall.SIGTERM))
	require.NoError(t, worker.Wait())
	final := get(t, s.url, rec.TaskID)
	require.Equal(t, "SUCCESS", final.Status, "a task shorter than the grace period finishes before exit")
	require.Len(t, fake.Calls(), 1)
}

func getJSON(t testing.TB, url string, into any) {
	t.Helper()
	res, err := http.Get(url)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.NoError(t, json.NewDecoder(res.Body).Decode(into))
}

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

func TestUnreachableS3StopsStartup(t *testing.T) {
	t.Parallel()
	closed := freeAddr(t)
	err := cli.Run(context.Background(), []string{"siganteng", "api"}, func(k string) string {
		return map[string]string{"REDIS_URL": redistest.URL(t), "S3_BUCKET": "artifacts", "S3_ENDPOINT": "http://" + closed,
			"AWS_ACCESS_KEY_ID": "AKIATEST", "AWS_SECRET_ACCESS_KEY": "s3-secret-never-shown"}[k]
	}, io.Discard, io.Discard)
	require.ErrorContains(t, err, "S3_BUCKET")
	require.NotContains(t, err.Error(), "s3-secret-never-shown")
}
