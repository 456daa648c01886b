package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/cli"
	"github.com/siganteng/siganteng/internal/provider/providertest"
	"github.com/siganteng/siganteng/internal/redistest"
)

// createKey runs `siganteng keys create` and returns the key it prints.
func createKey(t testing.TB, redisURL string, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	err := cli.Run(context.Background(), append([]string{"siganteng", "keys", "create"}, args...),
		func(k string) string { return map[string]string{"REDIS_URL": redisURL}[k] }, &out, io.Discard)
	require.NoError(t, err)
	key, _, _ := strings.Cut(out.String(), "\n")
	require.True(t, strings.HasPrefix(key, "sgk_"), "%s", out.String())
	require.Contains(t, out.String(), "shown only now")
	return key
}

// call makes one request with key (none when "") and returns the answer.
func call(t *testing.T, method, url, key, body string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return res, raw
}

func TestAttacksOnKeysAndTenants(t *testing.T) {
	t.Parallel()
	redisURL := redistest.URL(t)
	alice := createKey(t, redisURL, "--name", "alice")
	bob := createKey(t, redisURL, "--name", "bob")
	admin := createKey(t, redisURL, "--name", "ops", "--admin")
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	s := start(t, "serve", openAIEnv(t, fake, redisURL))
	submitURL := s.url + "/background/generate_text"

	// Missing, malformed, wrong and mis-sent keys: 401, problem+json.
	forged := "sgk_" + strings.Repeat("A", 50)
	for _, tc := range []struct {
		name   string
		header []string
		detail string
	}{
		{"none", nil, "an API key is needed"},
		{"malformed", []string{"Authorization", "Bearer sk-not-ours"}, "malformed"},
		{"bad checksum", []string{"X-API-Key", forged}, "malformed"},
		{"other scheme", []string{"Authorization", "Basic YWxpY2U6cHc="}, "Bearer"},
		{"two keys", []string{"Authorization", "Bearer " + alice, "X-API-Key", bob}, "different keys"},
		{"typo", []string{"X-API-Key", alice[:10] + flip(alice[10]) + alice[11:]}, "malformed"},
	} {
		res, raw := call(t, http.MethodPost, submitURL, "", `{"prompt":"p"}`, tc.header...)
		require.Equal(t, http.StatusUnauthorized, res.StatusCode, "%s: %s", tc.name, raw)
		require.Equal(t, "application/problem+json", res.Header.Get("Content-Type"), tc.name)
		require.Contains(t, string(raw), tc.detail, tc.name)
		if tc.name == "none" {
			require.Equal(t, `Bearer realm="siganteng"`, res.Header.Get("WWW-Authenticate"))
		}
	}
	res, _ := call(t, http.MethodGet, s.url+"/healthz", "", "")
	require.Equal(t, http.StatusOK, res.StatusCode, "health needs no key")
	res, raw := call(t, http.MethodGet, s.url+"/openapi.json", "", "")
	require.Equal(t, http.StatusOK, res.StatusCode, "neither does the API's description")
	require.NotContains(t, string(raw), testKey, "which holds no secret")

	// Alice's task is unknown to Bob on every per-task endpoint, and the
	// answer is exactly the one for a task that does not exist.
	res, raw = call(t, http.MethodPost, submitURL, alice, `{"prompt":"alice's secret plan"}`)
	require.Equal(t, http.StatusAccepted, res.StatusCode, "%s", raw)
	var rec record
	require.NoError(t, json.Unmarshal(raw, &rec))
	await(t, s.url, rec.TaskID, 10*time.Second, alice)
	unknown := "6f1c1d2e-0000-4000-8000-000000000000"
	for _, path := range []string{"", "/events", "/artifact"} {
		for _, method := range []string{http.MethodGet} {
			resB, rawB := call(t, method, s.url+"/background/tasks/"+rec.TaskID+path, bob, "")
			resU, rawU := call(t, method, s.url+"/background/tasks/"+unknown+path, bob, "")
			require.Equal(t, http.StatusNotFound, resB.StatusCode, "%s %s: %s", method, path, rawB)
			require.Equal(t, resU.StatusCode, resB.StatusCode)
			require.Equal(t, strings.ReplaceAll(string(rawU), unknown, "ID"), strings.ReplaceAll(string(rawB), rec.TaskID, "ID"), "indistinguishable from an unknown id")
		}
	}
	res, _ = call(t, http.MethodPost, s.url+"/background/tasks/"+rec.TaskID+"/cancel", bob, "")
	require.Equal(t, http.StatusNotFound, res.StatusCode)
	var page struct {
		Tasks []record `json:"tasks"`
	}
	_, raw = call(t, http.MethodGet, s.url+"/background/tasks", bob, "")
	require.NoError(t, json.Unmarshal(raw, &page))
	require.Empty(t, page.Tasks, "Bob's list holds only Bob's tasks")
	_, raw = call(t, http.MethodGet, s.url+"/background/tasks", alice, "")
	require.NoError(t, json.Unmarshal(raw, &page))
	require.Len(t, page.Tasks, 1)
	res, raw = call(t, http.MethodGet, s.url+"/background/tasks/"+rec.TaskID, admin, "")
	require.Equal(t, http.StatusOK, res.StatusCode, "an admin sees every task: %s", raw)

	// Oversized and malformed bodies are 4xx, never 5xx.
	// generate_text's bound is MAX_BODY_BYTES and room for one inline image
	// of MAX_UPLOAD_BYTES (10 MiB, a third more in base64): about 14.4 MB.
	huge := `{"prompt":"` + strings.Repeat("x", 15<<20) + `"}`
	res, _ = call(t, http.MethodPost, submitURL, alice, huge)
	require.Equal(t, http.StatusRequestEntityTooLarge, res.StatusCode)
	for _, body := range []string{`{`, `[]`, `{"prompt":12}`, `{"prompt":"p","max_tokens":"many"}`, "\x00\xff", `{"prompt":"p","max_tokens":99999999}`} {
		res, raw := call(t, http.MethodPost, submitURL, alice, body)
		require.True(t, res.StatusCode >= 400 && res.StatusCode < 500, "%q: %d %s", body, res.StatusCode, raw)
	}
	res, raw = call(t, http.MethodPost, submitURL, alice, `{"prompt":"p","max_tokens":20000}`)
	require.Equal(t, http.StatusUnprocessableEntity, res.StatusCode)
	require.Contains(t, string(raw), "MAX_OUTPUT_TOKENS")

	// Revoked: refused everywhere within the cache's 5 seconds.
	var out bytes.Buffer
	require.NoError(t, cli.Run(context.Background(), []string{"siganteng", "keys", "revoke", bob[:16]},
		func(k string) string { return map[string]string{"REDIS_URL": redisURL}[k] }, &out, io.Discard))
	require.Eventually(t, func() bool {
		res, _ := call(t, http.MethodGet, s.url+"/background/tasks", bob, "")
		return res.StatusCode == http.StatusUnauthorized
	}, 7*time.Second, 100*time.Millisecond)

	// No key, or part of one, ever reaches the logs.
	for _, k := range []string{alice, bob, admin} {
		require.NotContains(t, s.logs.String(), k[16:40])
	}
	require.NotContains(t, s.logs.String(), "secret plan")
}

func flip(c byte) string {
	if c == 'a' {
		return "b"
	}
	return "a"
}

func TestHeaderInjectionGoesNowhere(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	s := start(t, "serve", openAIEnv(t, fake, redistest.URL(t)))
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	// A header value with a bare CR and another with a control character:
	// the server must refuse or ignore them, and never echo a new header.
	body := `{"prompt":"p"}`
	fmt.Fprintf(conn, "POST /background/generate_text HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
		"Idempotency-Key: a\rX-Injected: yes\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer res.Body.Close()
	require.True(t, res.StatusCode >= 400 && res.StatusCode < 500, "status %d", res.StatusCode)
	require.Empty(t, res.Header.Get("X-Injected"))
}

func TestRateLimitIsSharedAcrossInstances(t *testing.T) {
	t.Parallel()
	redisURL := redistest.URL(t)
	key := createKey(t, redisURL, "--name", "bursty", "--rps", "5")
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	env := openAIEnv(t, fake, redisURL)
	a := start(t, "api", env)
	b := start(t, "api", env)
	begin := time.Now()
	allowed, limited := 0, 0
	var last *http.Response
	for i := range 40 {
		base := a.url
		if i%2 == 1 {
			base = b.url
		}
		res, raw := call(t, http.MethodGet, base+"/background/tasks", key, "")
		switch res.StatusCode {
		case http.StatusOK:
			allowed++
			require.NotEmpty(t, res.Header.Get("RateLimit-Remaining"))
		case http.StatusTooManyRequests:
			limited++
			last = res
			require.Equal(t, "application/problem+json", res.Header.Get("Content-Type"))
			require.Contains(t, string(raw), "5 requests per second")
		default:
			t.Fatalf("status %d: %s", res.StatusCode, raw)
		}
	}
	elapsed := time.Since(begin)
	require.NotZero(t, limited, "40 requests at once exceed 5 per second with bursts of 10")
	require.LessOrEqual(t, float64(allowed), 10+5*elapsed.Seconds()+1, "one budget for both instances: %d allowed in %s", allowed, elapsed)
	require.NotEmpty(t, last.Header.Get("Retry-After"))
	require.Equal(t, "10", last.Header.Get("RateLimit-Limit"))
	require.Equal(t, "5;w=1;burst=10", last.Header.Get("RateLimit-Policy"))
}

func TestUnfinishedLimitPerKey(t *testing.T) {
	t.Parallel()
	redisURL := redistest.URL(t)
	key := createKey(t, redisURL, "--name", "batch", "--max-unfinished", "1")
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	api := start(t, "api", openAIEnv(t, fake, redisURL)) // no worker: tasks stay PENDING
	res, raw := call(t, http.MethodPost, api.url+"/background/generate_text", key, `{"prompt":"one"}`)
	require.Equal(t, http.StatusAccepted, res.StatusCode, "%s", raw)
	res, raw = call(t, http.MethodPost, api.url+"/background/generate_text", key, `{"prompt":"two"}`)
	require.Equal(t, http.StatusTooManyRequests, res.StatusCode, "%s", raw)
	require.Contains(t, string(raw), "1 unfinished tasks")
	require.NotEmpty(t, res.Header.Get("Retry-After"))
}

func TestCORSIsClosedUnlessOriginsAreNamed(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	closed := start(t, "serve", openAIEnv(t, fake, redistest.URL(t)))
	env := openAIEnv(t, fake, redistest.URL(t))
	env["CORS_ORIGINS"] = "https://app.example.com"
	open := start(t, "serve", env)
	preflight := func(base, origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, base+"/background/generate_text", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		return res
	}
	require.Empty(t, preflight(closed.url, "https://app.example.com").Header.Get("Access-Control-Allow-Origin"))
	require.Equal(t, "https://app.example.com", preflight(open.url, "https://app.example.com").Header.Get("Access-Control-Allow-Origin"))
	require.Empty(t, preflight(open.url, "https://evil.example").Header.Get("Access-Control-Allow-Origin"))

	res, _ := call(t, http.MethodGet, closed.url+"/docs", "", "")
	require.Equal(t, "nosniff", res.Header.Get("X-Content-Type-Options"))
	require.Equal(t, "DENY", res.Header.Get("X-Frame-Options"))
	require.Contains(t, res.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'")
}
