package routing_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/provider/openai"
	"github.com/siganteng/siganteng/internal/provider/providertest"
	"github.com/siganteng/siganteng/internal/redistest"
	"github.com/siganteng/siganteng/internal/routing"
)

// clock is a test's time, moved by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// flaky is an OpenAI fake that answers status until healthy is set.
func flaky(t *testing.T, status int) (*providertest.OpenAIFake, *atomic.Bool) {
	var healthy atomic.Bool
	var fake *providertest.OpenAIFake
	fake = providertest.NewOpenAIFake(providertest.WithFailures(func(int) *providertest.Reply {
		if healthy.Load() {
			return nil
		}
		r := fake.ErrorReply(status, "the fake is down", 0)
		return &r
	}))
	t.Cleanup(fake.Close)
	return fake, &healthy
}

func healthy(t *testing.T) *providertest.OpenAIFake {
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	return fake
}

// setup parses a routing file and builds a router whose deployments are
// OpenAI adapters, with breakers on a real Redis and the clock given.
func setup(t *testing.T, yaml string, c *clock) (*routing.Router, *routing.File, func() *routing.Breakers) {
	t.Helper()
	f, err := routing.Parse([]byte(yaml), env(nil), known)
	require.NoError(t, err)
	rdb := redistest.Client(t, redistest.URL(t))
	newBreakers := func() *routing.Breakers {
		return routing.NewBreakers(rdb, f.Breaker, routing.DeploymentIDs(f), c.now)
	}
	r, err := routing.New(f, func(d routing.Deployment, _ string) (any, error) {
		return openai.New(openai.Config{BaseURL: d.BaseURL, HTTPClient: http.DefaultClient}), nil
	}, func(f *routing.File) *routing.Breakers {
		return routing.NewBreakers(rdb, f.Breaker, routing.DeploymentIDs(f), c.now) // the file being put in service
	})
	require.NoError(t, err)
	return r, f, newBreakers
}

// generate makes one routed call and returns its text, the deployment
// that served it, and each call's "deployment outcome".
func generate(t *testing.T, r *routing.Router, model string) (string, string, []string, error) {
	t.Helper()
	out, err := r.LLM().GenerateText(context.Background(), provider.TextRequest{Prompt: "hi", Model: model})
	tried := provider.CallsOf(err) // a failure carries the calls it tried
	servedBy := ""
	if out.Route != nil { // a success, what served it and every call on the way
		tried, servedBy = out.Route.Calls, out.Route.Deployment
	}
	var calls []string
	for _, c := range tried {
		calls = append(calls, c.Deployment+" "+c.Outcome)
	}
	return out.Text, servedBy, calls, err
}

func TestFirstDownFallsBackThenBreakerOpensAndCloses(t *testing.T) {
	down, recovered := flaky(t, http.StatusServiceUnavailable)
	up := healthy(t)
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	r, _, newBreakers := setup(t, fmt.Sprintf(`
breaker: {failures: 3, cooldown: 30s}
models:
  - name: chat
    capability: generate_text
    deployments:
      - {provider: openai, model: primary, base_url: %q}
      - {provider: openai, model: backup, base_url: %q, weight: 0}
`, down.URL(), up.URL()), c)

	for i := range 3 {
		text, served, calls, err := generate(t, r, "chat")
		require.NoError(t, err, "call %d", i)
		require.Equal(t, "echo: hi", text)
		require.Equal(t, "chat/2", served)
		require.Equal(t, []string{"chat/1 provider_unavailable", "chat/2 success"}, calls)
	}
	require.Equal(t, "backup", up.Calls()[0].Model, "the deployment's own model is sent")

	// Three failures in a row: chat/1 is skipped, by this worker and by
	// another one reading the same Redis.
	_, served, calls, err := generate(t, r, "")
	require.NoError(t, err)
	require.Equal(t, "chat/2", served)
	require.Equal(t, []string{"chat/2 success"}, calls)
	require.Len(t, down.Calls(), 3)
	other := newBreakers().States(context.Background())
	require.True(t, other["chat/1"].Open(c.now()), "%+v", other)
	require.Equal(t, 3, other["chat/1"].Failures)
	require.False(t, other["chat/2"].Open(c.now()))

	// After the cool-down one call is let through; failing, it reopens the
	// breaker at once.
	c.add(31 * time.Second)
	_, _, calls, _ = generate(t, r, "chat")
	require.Equal(t, []string{"chat/1 provider_unavailable", "chat/2 success"}, calls)
	_, _, calls, _ = generate(t, r, "chat")
	require.Equal(t, []string{"chat/2 success"}, calls, "reopened after one failure")

	// Recovered: after the next cool-down it serves again and its breaker
	// closes.
	recovered.Store(true)
	c.add(31 * time.Second)
	_, served, calls, err = generate(t, r, "chat")
	require.NoError(t, err)
	require.Equal(t, "chat/1", served)
	require.Equal(t, []string{"chat/1 success"}, calls)
	c.add(2 * time.Second) // past the other worker's cached copy
	s := newBreakers().States(context.Background())["chat/1"]
	require.Equal(t, routing.BreakerState{}, s, "closed and reset")
}

func TestRejectedRequestDoesNotMove(t *testing.T) {
	bad, _ := flaky(t, http.StatusBadRequest)
	up := healthy(t)
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	r, _, newBreakers := setup(t, fmt.Sprintf(`
models:
  - name: chat
    capability: generate_text
    deployments:
      - {provider: openai, model: a, base_url: %q}
      - {provider: openai, model: b, base_url: %q, weight: 0}
`, bad.URL(), up.URL()), c)
	_, _, calls, err := generate(t, r, "chat")
	var perr *provider.Error
	require.ErrorAs(t, err, &perr)
	require.Equal(t, provider.KindRejected, perr.Kind)
	require.Equal(t, []string{"chat/1 provider_rejected"}, calls)
	require.Empty(t, up.Calls(), "another deployment would refuse it too")
	require.Zero(t, newBreakers().States(context.Background())["chat/1"].Failures, "the request's fault, not the deployment's")
}

func TestEveryDeploymentOpenWaitsForTheFirstToReopen(t *testing.T) {
	down, _ := flaky(t, http.StatusTooManyRequests)
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	r, _, _ := setup(t, fmt.Sprintf(`
breaker: {failures: 1, cooldown: 45s}
models:
  - name: chat
    capability: generate_text
    deployments:
      - {provider: openai, model: a, base_url: %q}
`, down.URL()), c)
	_, _, _, err := generate(t, r, "chat")
	require.Error(t, err)
	c.add(5 * time.Second)
	_, _, calls, err := generate(t, r, "chat")
	var perr *provider.Error
	require.ErrorAs(t, err, &perr)
	require.True(t, perr.Transient(), "the task retries later")
	require.Equal(t, 40*time.Second, perr.RetryAfter)
	require.Empty(t, calls)
	require.Len(t, down.Calls(), 1, "an open breaker spares the provider")
}

func TestWeightsSpreadTheLoad(t *testing.T) {
	a, b := healthy(t), healthy(t)
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	r, _, _ := setup(t, fmt.Sprintf(`
models:
  - name: chat
    capability: generate_text
    deployments:
      - {provider: openai, model: a, base_url: %q, weight: 3}
      - {provider: openai, model: b, base_url: %q, weight: 1}
`, a.URL(), b.URL()), c)
	const n = 400
	for range n {
		_, _, _, err := generate(t, r, "chat")
		require.NoError(t, err)
	}
	// 300 expected; the standard deviation is under 9.
	require.InDelta(t, 300, len(a.Calls()), 45, "a took %d, b %d", len(a.Calls()), len(b.Calls()))
	require.Equal(t, n, len(a.Calls())+len(b.Calls()))
}

// brokenStream sends part of an answer and then fails as a dropped
// connection would.
type brokenStream struct{ calls *atomic.Int32 }

func (brokenStream) Name() string { return "broken" }
func (b brokenStream) GenerateText(context.Context, provider.TextRequest) (provider.TextResponse, error) {
	b.calls.Add(1)
	return provider.TextResponse{}, &provider.Error{Provider: "broken", Kind: provider.KindUnavailable, Message: "reset"}
}
func (b brokenStream) StreamText(_ context.Context, _ provider.TextRequest, onText func(string)) (provider.TextResponse, error) {
	b.calls.Add(1)
	onText("Once upon")
	return provider.TextResponse{}, &provider.Error{Provider: "broken", Kind: provider.KindUnavailable, Message: "reset"}
}

func TestStreamMovesOnlyBeforeTextWasSent(t *testing.T) {
	f, err := routing.Parse([]byte(`
models:
  - name: chat
    capability: generate_text
    deployments:
      - {provider: ollama, model: a}
      - {provider: ollama, model: b, weight: 0}
`), env(nil), known)
	require.NoError(t, err)
	var first, second atomic.Int32
	r, err := routing.New(f, func(d routing.Deployment, _ string) (any, error) {
		if d.ID == "chat/1" {
			return brokenStream{&first}, nil
		}
		return brokenStream{&second}, nil
	}, nil)
	require.NoError(t, err)
	var got []string
	streamer := r.LLM().(provider.TextStreamer)
	_, err = streamer.StreamText(context.Background(), provider.TextRequest{Model: "chat"}, func(s string) { got = append(got, s) })
	require.Error(t, err)
	require.Equal(t, []string{"Once upon"}, got, "the client saw one answer begin; another would not continue it")
	require.Equal(t, int32(0), second.Load())

	// Without streaming the same failure moves on.
	_, err = r.LLM().GenerateText(context.Background(), provider.TextRequest{Model: "chat"})
	require.Error(t, err)
	require.Equal(t, int32(1), second.Load())
}

// hanging answers only when its context ends, with the context's error.
type hanging struct{}

func (hanging) Name() string { return "hanging" }
func (hanging) GenerateText(ctx context.Context, _ provider.TextRequest) (provider.TextResponse, error) {
	<-ctx.Done()
	return provider.TextResponse{}, ctx.Err()
}

func TestHangingDeploymentOpensItsBreakerButARevocationDoesNot(t *testing.T) {
	f, err := routing.Parse([]byte(`
breaker: {failures: 1, cooldown: 1m}
models:
  - name: chat
    capability: generate_text
    deployments:
      - {provider: ollama, model: a}
`), env(nil), known)
	require.NoError(t, err)
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	rdb := redistest.Client(t, redistest.URL(t))
	breakers := func() *routing.Breakers { return routing.NewBreakers(rdb, f.Breaker, routing.DeploymentIDs(f), c.now) }
	r, err := routing.New(f, func(routing.Deployment, string) (any, error) { return hanging{}, nil },
		func(*routing.File) *routing.Breakers { return breakers() })
	require.NoError(t, err)

	revoked, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	_, err = r.LLM().GenerateText(revoked, provider.TextRequest{Model: "chat"})
	require.ErrorIs(t, err, context.Canceled)
	require.Zero(t, breakers().States(context.Background())["chat/1"].Failures, "a revoked attempt says nothing of the deployment")

	ctx, stop := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer stop()
	_, err = r.LLM().GenerateText(ctx, provider.TextRequest{Model: "chat"})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Equal(t, "timeout", provider.CallsOf(err)[0].Outcome)
	require.True(t, breakers().States(context.Background())["chat/1"].Open(c.now()), "a deployment that hangs is skipped like one that fails")
}

func TestReloadMovesNewCallsAndRefusesAChangeOfCapabilities(t *testing.T) {
	a, b := healthy(t), healthy(t)
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	file := func(url string) string {
		return fmt.Sprintf("models:\n  - name: chat\n    capability: generate_text\n    deployments:\n      - {provider: openai, model: m, base_url: %q}\n", url)
	}
	r, _, _ := setup(t, file(a.URL()), c)
	_, _, _, err := generate(t, r, "chat")
	require.NoError(t, err)

	next, err := routing.Parse([]byte(file(b.URL())), env(nil), known)
	require.NoError(t, err)
	require.NoError(t, r.Reload(next))
	_, _, _, err = generate(t, r, "chat")
	require.NoError(t, err)
	require.Len(t, a.Calls(), 1)
	require.Len(t, b.Calls(), 1, "calls after the reload go to the new deployment")

	embedOnly, err := routing.Parse([]byte(fmt.Sprintf("models:\n  - name: e\n    capability: embed\n    deployments:\n      - {provider: openai, model: m, base_url: %q}\n", a.URL())), env(nil), known)
	require.NoError(t, err)
	require.ErrorContains(t, r.Reload(embedOnly), "changes whether generate_text is routed; that takes a restart")
	_, _, _, err = generate(t, r, "chat")
	require.NoError(t, err)
	require.Len(t, b.Calls(), 2, "a refused reload leaves the routes in service")
}
