package providertest

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider"
)

// LLMHarness describes one adapter to the conformance suite.
type LLMHarness struct {
	// Name is what the adapter's Name must return.
	Name string
	// NewFake starts a fake speaking the adapter's wire format.
	NewFake func(t *testing.T) Fake
	// NewAdapter builds the adapter against baseURL with key and default model.
	NewAdapter func(baseURL, key, defaultModel string) provider.LLM
	// Key is the credential to configure; empty for keyless providers.
	Key string
	// ChatPath is the path the adapter must call, relative to the server root.
	ChatPath string
}

// setup starts a fake, closed with the test, and the adapter against it.
func (h LLMHarness) setup(t *testing.T) (Fake, provider.LLM) {
	t.Helper()
	fake := h.NewFake(t)
	t.Cleanup(fake.Close)
	return fake, h.NewAdapter(fake.URL(), h.Key, "default-model")
}

// RunLLM runs the conformance suite: what the adapter sends, how it reads
// answers, and how it classifies each kind of failure.
func RunLLM(t *testing.T, h LLMHarness) {
	t.Helper()
	setup := h.setup
	ctx := context.Background()
	temp := 0.25

	t.Run("Name", func(t *testing.T) {
		t.Parallel()
		_, llm := setup(t)
		require.Equal(t, h.Name, llm.Name())
	})

	t.Run("SendsRequestAndReadsAnswer", func(t *testing.T) {
		t.Parallel()
		fake, llm := setup(t)
		fake.Script(fake.TextReply("Queues wait; / workers wake.", "served-model", 11, 7))

		out, err := llm.GenerateText(ctx, provider.TextRequest{
			Prompt: "Write a haiku", System: "You are terse.", Model: "asked-model", MaxTokens: 64, Temperature: &temp,
		})
		require.NoError(t, err)
		require.Equal(t, "Queues wait; / workers wake.", out.Text)
		require.Equal(t, "served-model", out.Model)
		require.Equal(t, provider.Usage{PromptTokens: 11, CompletionTokens: 7, TotalTokens: 18}, out.Usage)
		require.Equal(t, "stop", out.FinishReason)

		calls := fake.Calls()
		require.Len(t, calls, 1)
		call := calls[0]
		require.Equal(t, http.MethodPost, call.Method)
		require.Equal(t, h.ChatPath, call.Path)
		if h.Key != "" {
			require.Equal(t, "Bearer "+h.Key, call.Authorization)
		} else {
			require.Empty(t, call.Authorization)
		}
		require.Equal(t, "asked-model", call.Model)
		require.Equal(t, []Message{{Role: "system", Content: "You are terse."}, {Role: "user", Content: "Write a haiku"}}, call.Messages)
		require.NotNil(t, call.MaxTokens)
		require.Equal(t, 64, *call.MaxTokens)
		require.NotNil(t, call.Temperature)
		require.InDelta(t, 0.25, *call.Temperature, 1e-9)
		require.False(t, call.Stream, "one answer was asked for, not a stream")
	})

	t.Run("StreamsTextInPieces", func(t *testing.T) {
		t.Parallel()
		fake, llm := setup(t)
		streamer, ok := llm.(provider.TextStreamer)
		require.True(t, ok, "the adapter streams")
		fake.Script(fake.TextReply("Queues wait; workers wake.", "served-model", 11, 7))
		var pieces []string
		out, err := streamer.StreamText(ctx, provider.TextRequest{Prompt: "Write a haiku", Model: "asked-model"},
			func(s string) { pieces = append(pieces, s) })
		require.NoError(t, err)
		require.Greater(t, len(pieces), 1, "the text came in pieces: %q", pieces)
		require.Equal(t, "Queues wait; workers wake.", strings.Join(pieces, ""))
		require.Equal(t, "Queues wait; workers wake.", out.Text)
		require.Equal(t, "served-model", out.Model)
		require.Equal(t, "stop", out.FinishReason)
		require.Equal(t, provider.Usage{PromptTokens: 11, CompletionTokens: 7, TotalTokens: 18}, out.Usage)
		calls := fake.Calls()
		require.Len(t, calls, 1)
		require.True(t, calls[0].Stream)
		require.Equal(t, "asked-model", calls[0].Model)
	})

	t.Run("StreamRateLimited", func(t *testing.T) {
		t.Parallel()
		fake, llm := setup(t)
		fake.Script(fake.ErrorReply(http.StatusTooManyRequests, "Rate limit reached for requests", 3*time.Second))
		_, err := llm.(provider.TextStreamer).StreamText(ctx, provider.TextRequest{Prompt: "hi"}, func(string) {})
		var perr *provider.Error
		require.ErrorAs(t, err, &perr)
		require.Equal(t, provider.KindRateLimited, perr.Kind)
		require.Equal(t, 3*time.Second, perr.RetryAfter)
	})

	t.Run("DefaultModelAndNoOptions", func(t *testing.T) {
		t.Parallel()
		fake, llm := setup(t)
		_, err := llm.GenerateText(ctx, provider.TextRequest{Prompt: "hi"})
		require.NoError(t, err)
		call := fake.Calls()[0]
		require.Equal(t, "default-model", call.Model)
		require.Equal(t, []Message{{Role: "user", Content: "hi"}}, call.Messages)
		require.Nil(t, call.MaxTokens)
		require.Nil(t, call.Temperature)
	})

	t.Run("RateLimitedWithRetryAfter", func(t *testing.T) {
		t.Parallel()
		fake, llm := setup(t)
		fake.Script(fake.ErrorReply(http.StatusTooManyRequests, "Rate limit reached for requests", 7*time.Second))
		perr := requireProviderError(t, llm, provider.KindRateLimited)
		require.True(t, perr.Transient())
		require.Equal(t, 7*time.Second, perr.RetryAfter)
		require.Equal(t, http.StatusTooManyRequests, perr.StatusCode)
		require.Contains(t, perr.Message, "Rate limit reached")
	})

	for _, status := range []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable} {
		t.Run("ServerError"+http.StatusText(status), func(t *testing.T) {
			t.Parallel()
			fake, llm := setup(t)
			fake.Script(fake.ErrorReply(status, "The server had an error while processing your request.", 0))
			perr := requireProviderError(t, llm, provider.KindUnavailable)
			require.True(t, perr.Transient())
			require.Equal(t, status, perr.StatusCode)
		})
	}

	t.Run("ProxyPageInsteadOfJSON", func(t *testing.T) {
		t.Parallel()
		fake, llm := setup(t)
		fake.Script(Reply{Status: http.StatusBadGateway, Header: http.Header{"Content-Type": {"text/html"}}, Body: []byte("<html><body>502 Bad Gateway</body></html>")})
		perr := requireProviderError(t, llm, provider.KindUnavailable)
		require.True(t, perr.Transient())
	})

	for _, status := range []int{http.StatusBadRequest, http.StatusNotFound, http.StatusUnprocessableEntity} {
		t.Run("Rejected"+http.StatusText(status), func(t *testing.T) {
			t.Parallel()
			fake, llm := setup(t)
			fake.Script(fake.ErrorReply(status, "The model `nope` does not exist", 0))
			perr := requireProviderError(t, llm, provider.KindRejected)
			require.False(t, perr.Transient())
			require.Contains(t, perr.Message, "does not exist")
		})
	}

	for _, status := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		t.Run("AuthFailureHidesKey"+http.StatusText(status), func(t *testing.T) {
			t.Parallel()
			fake, llm := setup(t)
			echoed := "Incorrect API key provided: " + h.Key + " and sk-proj-abcdefghijkl"
			fake.Script(fake.ErrorReply(status, echoed, 0))
			perr := requireProviderError(t, llm, provider.KindAuth)
			require.False(t, perr.Transient())
			require.NotContains(t, perr.Message, "sk-proj-abcdefghijkl")
			if h.Key != "" {
				require.NotContains(t, perr.Message, h.Key)
				require.NotContains(t, perr.Error(), h.Key)
			}
		})
	}

	t.Run("ConnectionRefused", func(t *testing.T) {
		t.Parallel()
		fake, llm := setup(t)
		fake.Close()
		perr := requireProviderError(t, llm, provider.KindUnavailable)
		require.True(t, perr.Transient())
	})

	t.Run("ConnectionDropped", func(t *testing.T) {
		t.Parallel()
		fake, llm := setup(t)
		fake.Script(Reply{Hangup: true})
		perr := requireProviderError(t, llm, provider.KindUnavailable)
		require.True(t, perr.Transient())
	})

	t.Run("DeadlineIsTimeout", func(t *testing.T) {
		t.Parallel()
		fake, llm := setup(t)
		fake.Script(Reply{Delay: 5 * time.Second})
		ctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		_, err := llm.GenerateText(ctx, provider.TextRequest{Prompt: "slow"})
		var perr *provider.Error
		require.ErrorAs(t, err, &perr)
		require.Equal(t, provider.KindTimeout, perr.Kind)
		require.True(t, perr.Transient())
	})

	t.Run("CancelIsNotAProviderFault", func(t *testing.T) {
		t.Parallel()
		fake, llm := setup(t)
		fake.Script(Reply{Delay: 5 * time.Second})
		ctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(50*time.Millisecond, cancel)
		_, err := llm.GenerateText(ctx, provider.TextRequest{Prompt: "slow"})
		require.ErrorIs(t, err, context.Canceled)
		var perr *provider.Error
		require.False(t, errors.As(err, &perr), "a cancelled call must not look like a provider failure: %v", err)
	})

	t.Run("Ping", func(t *testing.T) {
		t.Parallel()
		fake, llm := setup(t)
		p, ok := llm.(provider.Pinger)
		if !ok {
			t.Skip("adapter does not implement Pinger")
		}
		require.NoError(t, p.Ping(ctx))
		fake.Close()
		require.Error(t, p.Ping(ctx))
	})
}

func requireProviderError(t *testing.T, llm provider.LLM, kind provider.Kind) *provider.Error {
	t.Helper()
	_, err := llm.GenerateText(context.Background(), provider.TextRequest{Prompt: "hello"})
	var perr *provider.Error
	require.ErrorAs(t, err, &perr)
	require.Equal(t, kind, perr.Kind, "error: %v", err)
	require.Equal(t, llm.Name(), perr.Provider)
	require.False(t, strings.Contains(perr.Message, "Bearer "), "message leaks an authorization header: %s", perr.Message)
	return perr
}
