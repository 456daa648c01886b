package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/cli"
	"github.com/siganteng/siganteng/internal/provider/providertest"
	"github.com/siganteng/siganteng/internal/redistest"
)

// TestRoutedModelFallsBackCountsUsageAndKeepsBudgets runs the whole
// routing path through the API and a worker: two local OpenAI fakes behind
// one model name, the first down. Tasks end SUCCESS on the second and their
// records say so; the first's breaker opens after two failures and shows on
// /models, /readyz and /metrics; usage sums match the tokens the fake
// reported exactly; and a key past its daily token budget is refused.
func TestRoutedModelFallsBackCountsUsageAndKeepsBudgets(t *testing.T) {
	t.Parallel()
	var down *providertest.OpenAIFake
	down = providertest.NewOpenAIFake(providertest.WithFailures(func(int) *providertest.Reply {
		r := down.ErrorReply(http.StatusServiceUnavailable, "overloaded", 0)
		return &r
	}))
	t.Cleanup(down.Close)
	up := providertest.NewOpenAIFake()
	t.Cleanup(up.Close)
	routes := filepath.Join(t.TempDir(), "routes.yaml")
	require.NoError(t, os.WriteFile(routes, []byte(fmt.Sprintf(`
breaker: {failures: 2, cooldown: 10m}
models:
  - name: chat
    capability: generate_text
    deployments:
      - {provider: openai, model: primary, base_url: %q, api_key_env: PRIMARY_KEY}
      - provider: openai
        model: backup
        base_url: %q
        weight: 0
        price: {input_per_million_tokens: 1.5, output_per_million_tokens: 4}
  - name: chat-b
    capability: generate_text
    deployments:
      - {provider: openai, model: b, base_url: %q}
`, down.URL(), up.URL(), up.URL())), 0o600))

	redisURL := redistest.URL(t)
	env := openAIEnv(t, up, redisURL)
	env["ROUTES_FILE"] = routes
	env["PRIMARY_KEY"] = "sk-primary-secret-0000"
	prompts := []string{"one", "one two", "one two three", "one two three four", "one two three four five"}
	budget := 0
	for _, p := range prompts {
		budget += len(strings.Fields(p)) + 3 // the fake reports a word a token, and 3 tokens of answer
	}
	key := createKey(t, redisURL, "--name", "app", "--daily-tokens", fmt.Sprint(budget))
	admin := createKey(t, redisURL, "--name", "ops", "--admin")
	s := start(t, "serve", env)
	require.Contains(t, s.logs.String(), "routing models from ROUTES_FILE")

	wantIn, wantOut, wantCost := 0, 0, 0.0
	for i, p := range prompts {
		res, raw := call(t, http.MethodPost, s.url+"/background/generate_text", key, fmt.Sprintf(`{"prompt":%q,"model":"chat"}`, p))
		require.Equal(t, http.StatusAccepted, res.StatusCode, "%s", raw)
		var rec record
		require.NoError(t, json.Unmarshal(raw, &rec))
		final, _ := await(t, s.url, rec.TaskID, 10*time.Second, key)
		require.Equal(t, "SUCCESS", final.Status)
		require.Equal(t, "echo: "+p, final.Result.Text)
		require.Equal(t, "chat/2", final.Deployment)
		require.Equal(t, "openai", final.Provider)
		var calls []string
		for _, c := range final.Calls {
			calls = append(calls, c.Deployment+" "+c.Outcome)
		}
		if i < 2 {
			require.Equal(t, []string{"chat/1 provider_unavailable", "chat/2 success"}, calls, "task %d", i)
			require.Equal(t, http.StatusServiceUnavailable, final.Calls[0].StatusCode)
		} else {
			require.Equal(t, []string{"chat/2 success"}, calls, "task %d: chat/1's breaker is open", i)
		}
		in, out := int64(len(strings.Fields(p))), int64(3)
		require.Equal(t, in, final.Usage.InputTokens)
		require.Equal(t, out, final.Usage.OutputTokens)
		require.NotNil(t, final.Usage.CostUSD)
		require.InDelta(t, float64(in)*1.5/1e6+float64(out)*4/1e6, float64(*final.Usage.CostUSD), 1e-12)
		wantIn, wantOut = wantIn+int(in), wantOut+int(out)
		wantCost += float64(in)*1.5/1e6 + float64(out)*4/1e6
	}
	require.Len(t, down.Calls(), 2, "the open breaker spared the provider that was down")
	require.Equal(t, "Bearer sk-primary-secret-0000", down.Calls()[0].Authorization, "the key from api_key_env")
	require.Equal(t, "backup", up.Calls()[0].Model)

	// Usage, summed by the worker per key and day.
	var usage struct {
		Days []struct {
			KeyID string `json:"key_id"`
			Tasks int    `json:"tasks"`
		} `json:"days"`
		Total struct {
			Tasks        int     `json:"tasks"`
			InputTokens  int     `json:"input_tokens"`
			OutputTokens int     `json:"output_tokens"`
			CostUSD      float64 `json:"cost_usd"`
		} `json:"total"`
	}
	res, raw := call(t, http.MethodGet, s.url+"/usage", key, "")
	require.Equal(t, http.StatusOK, res.StatusCode, "%s", raw)
	require.NoError(t, json.Unmarshal(raw, &usage))
	require.Equal(t, len(prompts), usage.Total.Tasks)
	require.Equal(t, wantIn, usage.Total.InputTokens)
	require.Equal(t, wantOut, usage.Total.OutputTokens)
	require.InDelta(t, wantCost, usage.Total.CostUSD, 1e-9)
	require.Len(t, usage.Days, 1)
	res, raw = call(t, http.MethodGet, s.url+"/usage", admin, "")
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.NoError(t, json.Unmarshal(raw, &usage))
	require.Equal(t, len(prompts), usage.Total.Tasks, "the admin sees every key's; its own is empty")
	require.NotEqual(t, usage.Days[0].KeyID, "")

	// The budget is used up: the next submit is refused and says why.
	res, raw = call(t, http.MethodPost, s.url+"/background/generate_text", key, `{"prompt":"one more"}`)
	require.Equal(t, http.StatusTooManyRequests, res.StatusCode, "%s", raw)
	require.Contains(t, string(raw), fmt.Sprintf("daily budget of %d tokens", budget))
	require.NotEmpty(t, res.Header.Get("Retry-After"))
	res, raw = call(t, http.MethodPost, s.url+"/generate_text", key, `{"prompt":"one more"}`)
	require.Equal(t, http.StatusTooManyRequests, res.StatusCode, "synchronous calls too: %s", raw)
	res, raw = call(t, http.MethodPost, s.url+"/background/generate_text", admin, `{"prompt":"one more"}`)
	require.Equal(t, http.StatusAccepted, res.StatusCode, "other keys are not limited by it")
	var adminTask record
	require.NoError(t, json.Unmarshal(raw, &adminTask))
	final, _ := await(t, s.url, adminTask.TaskID, 10*time.Second, admin)
	require.Equal(t, "SUCCESS", final.Status)

	// A model the file does not name is a 422 naming the ones it does.
	res, raw = call(t, http.MethodPost, s.url+"/background/generate_text", admin, `{"prompt":"x","model":"gpt-x"}`)
	require.Equal(t, http.StatusUnprocessableEntity, res.StatusCode, "%s", raw)
	require.Contains(t, string(raw), `no model \"gpt-x\" for generate_text; the models are: chat`)
	require.Contains(t, string(raw), `"location":"body.model"`)

	// Synchronous calls go through the same router and checks.
	res, raw = call(t, http.MethodPost, s.url+"/generate_text", admin, `{"prompt":"now","model":"chat"}`)
	require.Equal(t, http.StatusOK, res.StatusCode, "%s", raw)
	require.Contains(t, string(raw), `"text":"echo: now"`)
	require.Contains(t, string(raw), `"provider":"openai"`)
	res, _ = call(t, http.MethodPost, s.url+"/generate_text", admin, `{"prompt":"now","model":"gpt-x"}`)
	require.Equal(t, http.StatusUnprocessableEntity, res.StatusCode)
	res, raw = call(t, http.MethodGet, s.url+"/usage?key_id="+admin[:16], admin, "")
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.NoError(t, json.Unmarshal(raw, &usage))
	require.Equal(t, 2, usage.Total.Tasks, "the admin's task, and its synchronous call: %s", raw)
	require.Equal(t, 2+1, usage.Total.InputTokens, "one more, now")
	require.Equal(t, 3+3, usage.Total.OutputTokens)

	// The breaker's state, where operators look.
	var models struct {
		Models []struct {
			Name        string `json:"name"`
			Capability  string `json:"capability"`
			Provider    string `json:"provider"`
			Deployments []struct {
				ID, Breaker string
			} `json:"deployments"`
		} `json:"models"`
	}
	res, raw = call(t, http.MethodGet, s.url+"/models", key, "")
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.NoError(t, json.Unmarshal(raw, &models))
	require.Equal(t, "chat", models.Models[0].Name)
	require.Equal(t, "open", models.Models[0].Deployments[0].Breaker)
	require.Equal(t, "closed", models.Models[0].Deployments[1].Breaker)
	require.Equal(t, "chat-b", models.Models[1].Name)
	require.Equal(t, "embed", models.Models[3].Capability, "capabilities without routes are listed from the environment")
	require.Equal(t, "openai", models.Models[3].Provider)
	require.NotContains(t, string(raw), "sk-primary", "no key in the listing")
	require.NotContains(t, string(raw), down.URL(), "no internal address either")
	res, raw = call(t, http.MethodGet, s.url+"/readyz", "", "")
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Contains(t, string(raw), `"open_breakers":["chat/1"]`)
	res, raw = call(t, http.MethodGet, s.url+"/metrics", admin, "")
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Contains(t, string(raw), `siganteng_deployment_breaker_open{deployment="chat/1"} 1`)
	require.Contains(t, string(raw), `siganteng_deployment_breaker_open{deployment="chat/2"} 0`)
	require.NotContains(t, s.logs.String(), "sk-primary-secret", "no key in the logs")

	// A key limited to some models: the others do not exist for it.
	limited := createKey(t, redisURL, "--name", "limited", "--models", "chat-b")
	for _, body := range []string{`{"prompt":"x","model":"chat"}`, `{"prompt":"x"}`} {
		res, raw = call(t, http.MethodPost, s.url+"/background/generate_text", limited, body)
		require.Equal(t, http.StatusUnprocessableEntity, res.StatusCode, "%s", raw)
		require.Contains(t, string(raw), `this API key may not use model \"chat\"; it may use: chat-b`)
	}
	res, raw = call(t, http.MethodPost, s.url+"/background/generate_text", limited, `{"prompt":"allowed","model":"chat-b"}`)
	require.Equal(t, http.StatusAccepted, res.StatusCode, "%s", raw)
	var allowed record
	require.NoError(t, json.Unmarshal(raw, &allowed))
	final, _ = await(t, s.url, allowed.TaskID, 10*time.Second, limited)
	require.Equal(t, "chat-b/1", final.Deployment)
	res, raw = call(t, http.MethodGet, s.url+"/models", limited, "")
	require.Equal(t, http.StatusOK, res.StatusCode)
	models.Models = nil
	require.NoError(t, json.Unmarshal(raw, &models))
	var routed []string
	for _, m := range models.Models {
		if len(m.Deployments) > 0 {
			routed = append(routed, m.Name)
		}
	}
	require.Equal(t, []string{"chat-b"}, routed, "a limited key sees only its models")

	// keys create checks --models against the routing file.
	var out bytes.Buffer
	err := cli.Run(context.Background(), []string{"siganteng", "keys", "create", "--name", "x", "--models", "chat,gpt-x"},
		func(k string) string { return env[k] }, &out, io.Discard)
	require.ErrorContains(t, err, `ROUTES_FILE names no model "gpt-x"; it names: chat, chat-b`)
}

// TestSIGHUPReloadsTheRoutingFile changes the routing file under a running
// worker process and sends it SIGHUP: new tasks go to the new deployment,
// and a file that would change which capabilities are routed is refused.
func TestSIGHUPReloadsTheRoutingFile(t *testing.T) {
	t.Parallel()
	first, second := providertest.NewOpenAIFake(), providertest.NewOpenAIFake()
	t.Cleanup(first.Close)
	t.Cleanup(second.Close)
	routes := filepath.Join(t.TempDir(), "routes.yaml")
	write := func(capability, url string) {
		require.NoError(t, os.WriteFile(routes, []byte(fmt.Sprintf(
			"models:\n  - name: chat\n    capability: %s\n    deployments:\n      - {provider: openai, model: m, base_url: %q}\n", capability, url)), 0o600))
	}
	write("generate_text", first.URL())
	env := openAIEnv(t, first, redistest.URL(t))
	env["ROUTES_FILE"] = routes
	api := start(t, "api", env)
	worker, logs := child(t, "worker", env)
	run := func() record {
		rec, _ := submit(t, api.url, `{"prompt":"which"}`)
		final, _ := await(t, api.url, rec.TaskID, 10*time.Second)
		require.Equal(t, "SUCCESS", final.Status)
		return final
	}
	run()
	require.Len(t, first.Calls(), 1)

	write("generate_text", second.URL())
	require.NoError(t, worker.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "ROUTES_FILE reloaded") }, 10*time.Second, 10*time.Millisecond)
	run()
	require.Len(t, second.Calls(), 1, "after the reload, tasks go to the new deployment")
	require.Len(t, first.Calls(), 1)

	write("embed", first.URL())
	require.NoError(t, worker.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "ROUTES_FILE not reloaded") }, 10*time.Second, 10*time.Millisecond)
	require.Contains(t, logs.String(), "changes whether generate_text is routed")
	run()
	require.Len(t, second.Calls(), 2, "a refused file leaves the routes in service")
}
