package e2e_test

import (
	"bytes"
	"context"
	"io"
	"net/http/httptest"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/cli"
	"github.com/siganteng/siganteng/internal/loadtest"
	"github.com/siganteng/siganteng/internal/redistest"
)

// The load tool against a real server and its own instant provider, with a
// 30% error rate (500s and 429s): every task still ends SUCCESS through
// retries, and the report adds up.
func TestLoadToolMeasuresARunningServer(t *testing.T) {
	t.Parallel()
	prov := httptest.NewServer(loadtest.Provider{ErrorRate: 0.3}.Handler())
	t.Cleanup(prov.Close)
	s := start(t, "serve", benchEnv(redistest.URL(t), prov.URL, "LOG_LEVEL", "warn", "RETRY_BASE_DELAY", "100ms", "TASK_MAX_RETRY", "10"))
	var out bytes.Buffer
	err := cli.Run(context.Background(), []string{"siganteng", "bench", "run", "--url", s.url, "--tasks", "200", "--clients", "8"},
		func(string) string { return "" }, &out, io.Discard)
	require.NoError(t, err, "%s", out.String())
	report := out.String()
	require.Contains(t, report, "map[SUCCESS:200], 0 not ended in time", report)
	require.Regexp(t, `submit:\s+\d+ accepted/s \(200 in`, report)
	require.Regexp(t, `latency:\s+p50 \S+\s+p95 \S+\s+p99 \S+`, report)
	rss := regexp.MustCompile(`server RSS:\s+([\d.]+) MB`).FindStringSubmatch(report)
	require.NotNil(t, rss, "the open API's /metrics gives the server's memory: %s", report)
	mb, _ := strconv.ParseFloat(rss[1], 64)
	require.Greater(t, mb, 1.0)

	out.Reset()
	err = cli.Run(context.Background(), []string{"siganteng", "bench", "latency", "--url", s.url, "--tasks", "20"},
		func(string) string { return "" }, &out, io.Discard)
	require.NoError(t, err, "%s", out.String())
	require.Contains(t, out.String(), "SUCCESS:20")

	out.Reset()
	err = cli.Run(context.Background(), []string{"siganteng", "bench", "status", "--url", s.url, "--clients", "4", "--duration", "500ms"},
		func(string) string { return "" }, &out, io.Discard)
	require.NoError(t, err, "%s", out.String())
	reads := regexp.MustCompile(`reads:\s+(\d+)/s \((\d+) answered 200\), 0 errors`).FindStringSubmatch(out.String())
	require.NotNil(t, reads, out.String())
	n, _ := strconv.Atoi(reads[2])
	require.Greater(t, n, 10, "4 clients read for half a second")
}

// With a plain key (50 requests a second) the tool is paced by the key's
// limit instead of failing; without a key where one is needed it says why.
func TestLoadToolUnderAKeysLimit(t *testing.T) {
	t.Parallel()
	prov := httptest.NewServer(loadtest.Provider{}.Handler())
	t.Cleanup(prov.Close)
	redisURL := redistest.URL(t)
	key := createKey(t, redisURL, "--name", "plain", "--rps", "20")
	s := start(t, "serve", benchEnv(redisURL, prov.URL, "LOG_LEVEL", "warn"))

	var out bytes.Buffer
	err := cli.Run(context.Background(), []string{"siganteng", "bench", "status", "--url", s.url, "--key", key, "--clients", "8", "--duration", "1s"},
		func(string) string { return "" }, &out, io.Discard)
	require.NoError(t, err, "429s are the key's pace, not failures: %s", out.String())
	require.Regexp(t, `reads:\s+\d+/s \(\d+ answered 200\), 0 errors`, out.String())
	require.Contains(t, out.String(), "rate limited:")
	require.Contains(t, out.String(), "server RSS:  unknown (/metrics needs an admin key, or METRICS_ADDR)")

	out.Reset()
	err = cli.Run(context.Background(), []string{"siganteng", "bench", "run", "--url", s.url, "--tasks", "5", "--clients", "2"},
		func(string) string { return "" }, &out, io.Discard)
	require.ErrorContains(t, err, "no task was accepted: submit answered 401: an API key is needed")
}
