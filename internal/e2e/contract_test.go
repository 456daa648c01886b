package e2e_test

// What the README promises, where the program did otherwise (issue 14).

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider/providertest"
	"github.com/siganteng/siganteng/internal/redistest"
)

// closedPort is an address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// With no provider at all, every kind of text work says how to configure
// one, at once, instead of retrying "connection refused".
func TestNoProviderSaysHowToConfigureOne(t *testing.T) {
	t.Parallel()
	env := map[string]string{"OLLAMA_BASE_URL": "http://" + closedPort(t)} // the embedded default, nothing configured
	s := start(t, "serve", env)
	for typ, body := range map[string]string{
		"generate_text":  `{"prompt":"p"}`,
		"describe_image": `{"image_url":"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="}`,
		"embed":          `{"input":["kucing"]}`,
	} {
		rec, _ := submitTo(t, s.url, typ, body)
		final, _ := await(t, s.url, rec.TaskID, 10*time.Second)
		require.Equal(t, "FAILURE", final.Status, typ)
		require.Equal(t, "provider_not_configured", final.Error.Code, typ)
		require.Contains(t, final.Error.Message, "Set OPENAI_API_KEY", typ)
		require.Equal(t, 1, final.Attempts, "%s: not retried", typ)

		res, raw := call(t, http.MethodPost, s.url+"/"+typ, "", body)
		require.Equal(t, http.StatusBadGateway, res.StatusCode, "%s: %s", typ, raw)
		require.Contains(t, string(raw), "Set OPENAI_API_KEY", typ)
	}
}

// A routed deployment without base_url goes where the environment points
// its provider, not to the provider's public host with a key meant for a
// local server.
func TestRoutedDeploymentWithoutBaseURLUsesTheEnvironments(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	routes := filepath.Join(t.TempDir(), "routes.yaml")
	require.NoError(t, os.WriteFile(routes, []byte(`
models:
  - name: chat
    capability: generate_text
    deployments:
      - {provider: openai, model: local-model, api_key_env: OPENAI_API_KEY}
`), 0o600))
	env := openAIEnv(t, fake, redistest.URL(t))
	env["ROUTES_FILE"] = routes
	s := start(t, "serve", env)
	rec, _ := submit(t, s.url, `{"prompt":"stay local","model":"chat"}`)
	final, _ := await(t, s.url, rec.TaskID, 10*time.Second)
	require.Equal(t, "SUCCESS", final.Status, "%+v", final.Error)
	require.Len(t, fake.Calls(), 1, "the call went to OPENAI_BASE_URL")
	require.Equal(t, "local-model", fake.Calls()[0].Model)
}

// A server without GET /v1/models is reachable: the start-up probe must not
// say generate_text will fail.
func TestProbeTakesA404ModelListingAsReachable(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	target, err := url.Parse(strings.TrimSuffix(fake.URL(), "/v1"))
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(target)
	noModels := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/models" {
			http.NotFound(w, r)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(noModels.Close)
	env := openAIEnv(t, fake, redistest.URL(t))
	env["OPENAI_BASE_URL"] = noModels.URL + "/v1"
	s := start(t, "serve", env)
	require.Eventually(t, func() bool { return strings.Contains(s.logs.String(), "LLM provider reachable") }, 10*time.Second, 10*time.Millisecond)
	require.NotContains(t, s.logs.String(), "not reachable")
	rec, _ := submit(t, s.url, `{"prompt":"works"}`)
	final, _ := await(t, s.url, rec.TaskID, 10*time.Second)
	require.Equal(t, "SUCCESS", final.Status)
}

// A Prefer: wait that runs out answers the task as it is then, not as it
// was at submit.
func TestPreferWaitThatRunsOutAnswersTheCurrentRecord(t *testing.T) {
	t.Parallel()
	var failing *providertest.OpenAIFake
	failing = providertest.NewOpenAIFake(providertest.WithFailures(func(int) *providertest.Reply {
		r := failing.ErrorReply(http.StatusServiceUnavailable, "overloaded", 0)
		return &r
	}))
	t.Cleanup(failing.Close)
	env := openAIEnv(t, failing, redistest.URL(t))
	env["RETRY_BASE_DELAY"] = "10s" // the task sits in RETRY while the wait runs out
	env["RETRY_MAX_DELAY"] = "10s"
	s := start(t, "serve", env)
	res, raw := call(t, http.MethodPost, s.url+"/background/generate_text", "", `{"prompt":"p"}`, "Prefer", "wait=2")
	require.Equal(t, http.StatusAccepted, res.StatusCode, "%s", raw)
	require.Contains(t, string(raw), `"status":"RETRY"`)
	require.Contains(t, string(raw), `"attempts":1`)
}

// The access log is there at the default level.
func TestAccessLinesAtTheDefaultLevel(t *testing.T) {
	t.Parallel()
	s := start(t, "serve", map[string]string{"LOG_LEVEL": "info"})
	res, _ := call(t, http.MethodGet, s.url+"/background/tasks", "", "", "X-Request-ID", "readme-42")
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Eventually(t, func() bool {
		return strings.Contains(s.logs.String(), `msg="http request"`) && strings.Contains(s.logs.String(), "request_id=readme-42")
	}, 5*time.Second, 10*time.Millisecond, fmt.Sprint("logs: ", s.logs.String()))
}
