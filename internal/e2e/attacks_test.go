package e2e_test

// The second security review's findings, each tried from outside the way an
// attacker would, against the real program (issue 13). The HTTP layer's own
// share of them is in internal/httpapi/guard_test.go.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/cli"
	"github.com/siganteng/siganteng/internal/provider/providertest"
	"github.com/siganteng/siganteng/internal/queue"
	"github.com/siganteng/siganteng/internal/redistest"
	"github.com/siganteng/siganteng/internal/task"
)

// Finding 2: the shipped layout (API on 127.0.0.1 behind nginx, a real
// Redis) was open to anyone until a key existed, and again once the last
// one was revoked.
func TestProductionLayoutIsClosedWithoutAKey(t *testing.T) {
	t.Parallel()
	redisURL := redistest.URL(t)
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	env := openAIEnv(t, fake, redisURL)
	env["AUTH_DISABLED"] = "false" // as shipped
	env["TRUSTED_PROXIES"] = "127.0.0.1"
	env["GUEST_RATE_LIMIT_RPS"] = "1000" // this test polls; floods are another test's
	api := start(t, "api", env)
	start(t, "worker", env)
	base, _, client := nginxFront(t, api.url)
	require.Contains(t, api.logs.String(), "no API key exists, so the API refuses every request")

	do := func(method, path, key, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Forwarded-For", "8.8.8.8") // a client on the Internet
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		res, err := client.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(raw)
	}
	anonymous := func(paths ...string) {
		t.Helper()
		if len(paths) == 0 {
			paths = []string{"/background/tasks", "/metrics", "/monitoring/", "/models"}
		}
		for _, path := range paths {
			status, body := do(http.MethodGet, path, "", "")
			require.Equal(t, http.StatusUnauthorized, status, "%s: %s", path, body)
		}
		status, body := do(http.MethodPost, "/background/generate_text", "", `{"prompt":"anonymous"}`)
		require.Equal(t, http.StatusUnauthorized, status, body)
	}

	// A fresh install: closed, and the refusal says how to open it.
	anonymous()
	_, body := do(http.MethodGet, "/background/tasks", "", "")
	require.Contains(t, body, "siganteng keys create")

	// With a key: the tenant works, and a stranger still gets nothing.
	key := createKey(t, redisURL, "--name", "tenant")
	status, body := do(http.MethodPost, "/background/generate_text", key, `{"prompt":"the tenant's secret"}`)
	require.Equal(t, http.StatusAccepted, status, body)
	var rec record
	require.NoError(t, json.Unmarshal([]byte(body), &rec))
	require.Eventually(t, func() bool {
		_, body := do(http.MethodGet, "/background/tasks/"+rec.TaskID, key, "")
		return strings.Contains(body, `"SUCCESS"`)
	}, 10*time.Second, 20*time.Millisecond)
	anonymous()
	require.Eventually(t, func() bool {
		anonymous("/background/tasks")
		return strings.Contains(api.logs.String(), "an API key exists now")
	}, 15*time.Second, 250*time.Millisecond, "the instance has seen the key (its view of keys is cached for 5 s)")

	// Revoking the last key closes the door on the tenant; it never opens
	// it to everyone.
	var out bytes.Buffer
	require.NoError(t, cli.Run(context.Background(), []string{"siganteng", "keys", "revoke", key[:16]},
		func(k string) string { return map[string]string{"REDIS_URL": redisURL}[k] }, &out, io.Discard))
	require.Eventually(t, func() bool {
		anonymous("/background/tasks") // at every moment, before and after the instance notices
		status, _ := do(http.MethodGet, "/background/tasks/"+rec.TaskID, key, "")
		return status == http.StatusUnauthorized
	}, 15*time.Second, 250*time.Millisecond, "the revoked key stops working")
	require.Eventually(t, func() bool {
		anonymous("/background/tasks")
		return strings.Contains(api.logs.String(), "the last one was revoked?")
	}, 15*time.Second, 250*time.Millisecond, "the change is logged")
	status, body = do(http.MethodGet, "/background/tasks/"+rec.TaskID, "", "")
	require.Equal(t, http.StatusUnauthorized, status)
	require.NotContains(t, body, "the tenant's secret")
}

// pngOf returns a data: URL of n bytes that sniff as PNG.
func pngOf(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	copy(b, providertest.PNG1x1)
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(b)
}

func usedMemory(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "memory").Result()
	require.NoError(t, err)
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("no used_memory in INFO")
	return 0
}

// Findings 3 and 5: failed tasks were archived by asynq with their whole
// payload (a data: image) for 90 days, and their uploads stayed on disk.
func TestFailedTasksLeaveNothingHeavyBehind(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t) // its own server: memory is measured
	redisURL := "redis://" + srv.Addr
	rdb := redistest.Client(t, redisURL)
	rejecting := providertest.NewOpenAIFake(providertest.WithFailures(func(int) *providertest.Reply {
		return &providertest.Reply{Status: http.StatusBadRequest, Body: []byte(`{"error":{"message":"The model does not exist","type":"invalid_request_error"}}`)}
	}))
	t.Cleanup(rejecting.Close)
	env := openAIEnv(t, rejecting, redisURL)
	env["MAX_UPLOAD_BYTES"] = strconv.Itoa(4 << 20)
	artifacts := env["ARTIFACT_DIR"]
	s := start(t, "serve", env)

	image := pngOf(t, 2<<20)
	warm, _ := submitTo(t, s.url, "describe_image", `{"image_url":"`+image+`"}`)
	final, _ := await(t, s.url, warm.TaskID, 10*time.Second)
	require.Equal(t, "FAILURE", final.Status, "the provider refuses every call")
	before := usedMemory(t, rdb)

	const n = 20
	ids := make([]string, n)
	for i := range ids {
		rec, _ := submitTo(t, s.url, "describe_image", `{"image_url":"`+image+`","prompt":"`+strconv.Itoa(i)+`"}`)
		ids[i] = rec.TaskID
	}
	for _, id := range ids {
		final, _ := await(t, s.url, id, 20*time.Second)
		require.Equal(t, "FAILURE", final.Status)
		require.Equal(t, "provider_rejected", final.Error.Code)
	}
	grown := usedMemory(t, rdb) - before
	t.Logf("Redis grew by %d bytes for %d failed tasks with %d-byte images", grown, n, 2<<20)
	require.Less(t, grown, int64(2<<20), "the failed tasks' %d MB of images are not kept in Redis", n*2)

	inspector := asynq.NewInspectorFromRedisClient(rdb)
	archived, err := inspector.ListArchivedTasks(queue.Name(task.TypeDescribeImage, ""))
	if err != nil {
		require.ErrorIs(t, err, asynq.ErrQueueNotFound)
	}
	require.Empty(t, archived, "the record says FAILURE; the queue keeps no copy")

	entries, err := os.ReadDir(artifacts)
	require.NoError(t, err)
	for _, e := range entries {
		require.NotContains(t, e.Name(), "-input", "uploads of failed tasks are deleted when they end")
	}
}

// Finding 6: a provider's answer had no size bound.
func TestHugeProviderAnswersFailWithoutBeingKept(t *testing.T) {
	t.Parallel()
	var written atomic.Int64
	endless := func(w http.ResponseWriter, prefix string, n int64) {
		_, _ = io.WriteString(w, prefix)
		chunk := bytes.Repeat([]byte("a"), 64<<10)
		for sent := int64(0); sent < n; sent += int64(len(chunk)) {
			k, err := w.Write(chunk)
			written.Add(int64(k))
			if err != nil {
				return
			}
		}
	}
	huge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/chat/completions":
			w.Header().Set("Content-Type", "application/json")
			endless(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-test","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"`, 100<<20)
		case "/v1/audio/speech":
			w.Header().Set("Content-Type", "audio/wav")
			endless(w, "RIFF\x00\x00\x00\x00WAVEfmt ", 200<<20)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(huge.Close)
	redisURL := redistest.URL(t)
	env := map[string]string{
		"REDIS_URL": redisURL, "LLM_PROVIDER": "openai", "TTS_PROVIDER": "openai", "OPENAI_BASE_URL": huge.URL + "/v1",
		"OPENAI_API_KEY": testKey, "LLM_MODEL": "gpt-test", "ARTIFACT_DIR": t.TempDir(),
		"MAX_PROVIDER_RESPONSE_BYTES": strconv.Itoa(1 << 20), "TASK_MAX_RETRY": "0",
	}
	s := start(t, "serve", env)

	rec, _ := submit(t, s.url, `{"prompt":"write forever","max_tokens":50}`)
	final, _ := await(t, s.url, rec.TaskID, 30*time.Second)
	require.Equal(t, "FAILURE", final.Status)
	require.Equal(t, "provider_response_too_large", final.Error.Code, final.Error.Message)
	require.Nil(t, final.Result, "nothing partial is stored")
	raw, err := redistest.Client(t, redisURL).HGetAll(context.Background(), "{siganteng}:task:"+rec.TaskID).Result()
	require.NoError(t, err)
	size := 0
	for k, v := range raw {
		size += len(k) + len(v)
	}
	require.Less(t, size, 8<<10, "the record stays small")

	speech, _ := submitTo(t, s.url, "text_to_speech", `{"text":"speak forever"}`)
	final, _ = await(t, s.url, speech.TaskID, 30*time.Second)
	require.Equal(t, "FAILURE", final.Status)
	require.Equal(t, "provider_response_too_large", final.Error.Code, final.Error.Message)
	entries, err := os.ReadDir(env["ARTIFACT_DIR"])
	require.NoError(t, err)
	require.Empty(t, entries, "no partial audio is left on disk")
	require.Less(t, written.Load(), int64(64<<20), "reading stopped near the limit, not at the 300 MB sent")
}

// Finding 7: negative usage from a provider credited a key's budget.
func TestNegativeUsageIsNotCredited(t *testing.T) {
	t.Parallel()
	redisURL := redistest.URL(t)
	key := createKey(t, redisURL, "--name", "budgeted", "--daily-tokens", "100")
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	s := start(t, "serve", openAIEnv(t, fake, redisURL))

	fake.Script(fake.TextReply("generous", "gpt-test", -1_000_000, 1))
	res, raw := call(t, http.MethodPost, s.url+"/background/generate_text", key, `{"prompt":"p"}`)
	require.Equal(t, http.StatusAccepted, res.StatusCode, "%s", raw)
	var rec record
	require.NoError(t, json.Unmarshal(raw, &rec))
	final, _ := await(t, s.url, rec.TaskID, 10*time.Second, key)
	require.Equal(t, "SUCCESS", final.Status)
	require.Equal(t, int64(0), final.Usage.InputTokens)

	// The budget was not raised: 120 real tokens spend it.
	fake.Script(fake.TextReply("costly", "gpt-test", 100, 20))
	res, raw = call(t, http.MethodPost, s.url+"/background/generate_text", key, `{"prompt":"p"}`)
	require.Equal(t, http.StatusAccepted, res.StatusCode, "%s", raw)
	require.NoError(t, json.Unmarshal(raw, &rec))
	final, _ = await(t, s.url, rec.TaskID, 10*time.Second, key)
	require.Equal(t, "SUCCESS", final.Status)
	res, raw = call(t, http.MethodPost, s.url+"/background/generate_text", key, `{"prompt":"p"}`)
	require.Equal(t, http.StatusTooManyRequests, res.StatusCode, "%s", raw)

	_, raw = call(t, http.MethodGet, s.url+"/usage", key, "")
	var usage struct {
		Total struct {
			InputTokens int64 `json:"input_tokens"`
		} `json:"total"`
	}
	require.NoError(t, json.Unmarshal(raw, &usage), "%s", raw)
	require.Equal(t, int64(100), usage.Total.InputTokens, "%s", raw)
}

// Finding 8: refusals told the client the resolved address.
func TestRefusedFetchesTellAFixedReason(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	s := start(t, "serve", openAIEnv(t, fake, redistest.URL(t)))
	for _, u := range []string{"http://localhost:1/x.png", "http://[::ffff:10.0.0.1]/x.png", "http://[::a00:1]/x.png", "http://127.0.0.2:1/x.png"} {
		res, raw := call(t, http.MethodPost, s.url+"/describe_image", "", `{"image_url":"`+u+`"}`)
		require.Equal(t, http.StatusUnprocessableEntity, res.StatusCode, "%s: %s", u, raw)
		require.Contains(t, string(raw), "does not lead to a public address", u)
		for _, internal := range []string{"127.0.0.1", "10.0.0.1", "reserved range", "::1"} {
			require.NotContains(t, string(raw), internal, u)
		}
	}
	// A host that does not exist is the request's fault, not the server's.
	res, raw := call(t, http.MethodPost, s.url+"/describe_image", "", `{"image_url":"http://2130706433/x.png"}`)
	require.Equal(t, http.StatusUnprocessableEntity, res.StatusCode, "%s", raw)
	require.Contains(t, string(raw), "does not exist")
	require.Contains(t, s.logs.String(), "image URL not fetched", "the details go to the log")
	require.Empty(t, fake.Calls())
}

// dumpRedis returns every value in the database at redisURL, of every type.
func dumpRedis(t *testing.T, rdb *redis.Client) string {
	t.Helper()
	ctx := context.Background()
	var all strings.Builder
	keys, err := rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	for _, k := range keys {
		typ, err := rdb.Type(ctx, k).Result()
		require.NoError(t, err)
		fmt.Fprintf(&all, "%s %s: ", typ, k)
		switch typ {
		case "string":
			v, _ := rdb.Get(ctx, k).Result()
			all.WriteString(v)
		case "hash":
			v, _ := rdb.HGetAll(ctx, k).Result()
			fmt.Fprint(&all, v)
		case "list":
			v, _ := rdb.LRange(ctx, k, 0, -1).Result()
			fmt.Fprint(&all, v)
		case "set":
			v, _ := rdb.SMembers(ctx, k).Result()
			fmt.Fprint(&all, v)
		case "zset":
			v, _ := rdb.ZRange(ctx, k, 0, -1).Result()
			fmt.Fprint(&all, v)
		case "stream":
			v, _ := rdb.XRange(ctx, k, "-", "+").Result()
			fmt.Fprint(&all, v)
		}
		all.WriteString("\n")
	}
	return all.String()
}

// Findings 10 and 11: webhook tokens (in the query or the path) were kept in
// the clear on records, in queued deliveries and in logs.
func TestWebhookTokensAreNeverKeptInTheClear(t *testing.T) {
	t.Parallel()
	var (
		mu    sync.Mutex
		paths []string
		calls atomic.Int32
	)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.RequestURI())
		mu.Unlock()
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable) // the delivery waits for its retry
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rcv.Close)
	redisURL := redistest.URL(t)
	rdb := redistest.Client(t, redisURL)
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	env := openAIEnv(t, fake, redisURL)
	env["WEBHOOK_SECRET"] = testWebhookSecret
	env["FETCH_ALLOW_PRIVATE"] = "true"
	s := start(t, "serve", env)

	hook := rcv.URL + "/services/T000/B000/PATHSECRET?token=QUERYSECRET"
	rec, _ := submit(t, s.url, `{"prompt":"hi","webhook":"`+hook+`"}`)
	final, _ := await(t, s.url, rec.TaskID, 10*time.Second)
	require.Equal(t, "SUCCESS", final.Status)
	require.Eventually(t, func() bool { return calls.Load() >= 1 }, 10*time.Second, 10*time.Millisecond)

	secrets := []string{"PATHSECRET", "QUERYSECRET"}
	check := func(where, text string) {
		t.Helper()
		for _, secret := range secrets {
			require.NotContains(t, text, secret, where)
		}
	}
	// While the delivery waits to be retried, and after it is done.
	check("Redis, delivery pending", dumpRedis(t, rdb))
	require.Eventually(t, func() bool { return calls.Load() >= 2 }, 20*time.Second, 20*time.Millisecond, "the retry is delivered")
	check("Redis, delivered", dumpRedis(t, rdb))
	_, raw := call(t, http.MethodGet, s.url+"/background/tasks/"+rec.TaskID, "", "")
	check("the record", string(raw))
	require.Contains(t, string(raw), rcv.URL+"/…")
	_, raw = call(t, http.MethodGet, s.url+"/background/tasks", "", "")
	check("the listing", string(raw))
	check("the logs", s.logs.String())

	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, "/services/T000/B000/PATHSECRET?token=QUERYSECRET", paths[len(paths)-1], "the receiver is called at the URL as given")
}

// quotaAPI starts an API (no worker: uploads wait for their tasks) whose
// keys may keep 3 MB, and returns it, its environment and a 1.2 MB image.
func quotaAPI(t *testing.T, redisURL string) (*server, map[string]string, string) {
	t.Helper()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	env := openAIEnv(t, fake, redisURL)
	env["MAX_STORED_BYTES_PER_KEY"] = strconv.Itoa(3 << 20)
	env["MAX_UPLOAD_BYTES"] = strconv.Itoa(2 << 20)
	return start(t, "api", env), env, pngOf(t, 1200<<10)
}

// Finding 5's quota: one key cannot fill the artifact store.
func TestStoredBytesAreBoundedPerKey(t *testing.T) {
	t.Parallel()
	redisURL := redistest.URL(t)
	key := createKey(t, redisURL, "--name", "uploader")
	other := createKey(t, redisURL, "--name", "other")
	api, env, image := quotaAPI(t, redisURL)

	accepted := 0
	var refused string
	for range 5 {
		res, raw := call(t, http.MethodPost, api.url+"/background/describe_image", key, `{"image_url":"`+image+`"}`)
		if res.StatusCode == http.StatusTooManyRequests {
			refused = string(raw)
			break
		}
		require.Equal(t, http.StatusAccepted, res.StatusCode, "%s", raw)
		accepted++
	}
	require.Equal(t, 2, accepted, "two 1.2 MB uploads fit in 3 MB, a third does not")
	require.Contains(t, refused, "MAX_STORED_BYTES_PER_KEY")
	res, raw := call(t, http.MethodPost, api.url+"/background/describe_image", other, `{"image_url":"`+image+`"}`)
	require.Equal(t, http.StatusAccepted, res.StatusCode, "another key has its own quota: %s", raw)

	// Cancelling a task deletes its upload and gives the room back.
	var page struct {
		Tasks []record `json:"tasks"`
	}
	_, raw = call(t, http.MethodGet, api.url+"/background/tasks", key, "")
	require.NoError(t, json.Unmarshal(raw, &page))
	require.Len(t, page.Tasks, 2)
	res, _ = call(t, http.MethodPost, api.url+"/background/tasks/"+page.Tasks[0].TaskID+"/cancel", key, "")
	require.Equal(t, http.StatusOK, res.StatusCode)
	_, err := os.Stat(filepath.Join(env["ARTIFACT_DIR"], page.Tasks[0].TaskID+"-input"))
	require.True(t, os.IsNotExist(err), "the cancelled task's upload is gone")
	res, raw = call(t, http.MethodPost, api.url+"/background/describe_image", key, `{"image_url":"`+image+`"}`)
	require.Equal(t, http.StatusAccepted, res.StatusCode, "%s", raw)
}

// Finding 10's dashboard: asynqmon showed every queued payload, prompts and
// images included, undoing the API's care.
func TestDashboardDoesNotShowPayloads(t *testing.T) {
	t.Parallel()
	redisURL := redistest.URL(t)
	admin := createKey(t, redisURL, "--name", "ops", "--admin")
	tenant := createKey(t, redisURL, "--name", "app")
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	api := start(t, "api", openAIEnv(t, fake, redisURL)) // no worker: the task stays queued
	res, raw := call(t, http.MethodPost, api.url+"/background/generate_text", tenant, `{"prompt":"PROMPT-SECRET of a tenant"}`)
	require.Equal(t, http.StatusAccepted, res.StatusCode, "%s", raw)
	var rec record
	require.NoError(t, json.Unmarshal(raw, &rec))

	res, raw = call(t, http.MethodGet, api.url+"/monitoring/api/queues/"+queue.Name(task.TypeGenerateText, "")+"/pending_tasks", admin, "")
	require.Equal(t, http.StatusOK, res.StatusCode, "%s", raw)
	require.Contains(t, string(raw), rec.TaskID, "the dashboard lists the task")
	require.Contains(t, string(raw), "bytes, not shown")
	require.NotContains(t, string(raw), "PROMPT-SECRET")
}

// A submit refused after its upload was stored (here: at the key's limit of
// unfinished tasks) gives the stored bytes back, so refusals cannot use up
// the quota.
func TestRefusedUploadsDoNotUseTheQuota(t *testing.T) {
	t.Parallel()
	redisURL := redistest.URL(t)
	key := createKey(t, redisURL, "--name", "one-at-a-time", "--max-unfinished", "1")
	api, env, image := quotaAPI(t, redisURL) // the first task stays unfinished
	res, raw := call(t, http.MethodPost, api.url+"/background/describe_image", key, `{"image_url":"`+image+`"}`)
	require.Equal(t, http.StatusAccepted, res.StatusCode, "%s", raw)
	var first record
	require.NoError(t, json.Unmarshal(raw, &first))
	for range 4 { // 4 x 1.2 MB would pass the 3 MB quota if they were kept
		res, raw = call(t, http.MethodPost, api.url+"/background/describe_image", key, `{"image_url":"`+image+`"}`)
		require.Equal(t, http.StatusTooManyRequests, res.StatusCode, "%s", raw)
		require.Contains(t, string(raw), "unfinished tasks")
	}
	res, _ = call(t, http.MethodPost, api.url+"/background/tasks/"+first.TaskID+"/cancel", key, "")
	require.Equal(t, http.StatusOK, res.StatusCode)
	res, raw = call(t, http.MethodPost, api.url+"/background/describe_image", key, `{"image_url":"`+image+`"}`)
	require.Equal(t, http.StatusAccepted, res.StatusCode, "the refused uploads took no room: %s", raw)
	entries, err := os.ReadDir(env["ARTIFACT_DIR"])
	require.NoError(t, err)
	require.Len(t, entries, 1, "only the accepted upload is on disk")
}
