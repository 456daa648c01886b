package providertest

import (
	"context"
	"encoding/base64"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider"
)

// PNG1x1 is a valid 1×1 PNG image.
var PNG1x1, _ = base64.StdEncoding.DecodeString("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=")

// VisionHarness describes a vision adapter to the conformance suite.
type VisionHarness struct {
	Name         string
	NewFake      func(t *testing.T) Fake
	NewAdapter   func(baseURL, key string) provider.Vision
	Key          string
	ChatPath     string
	DefaultModel string
}

// RunVision runs the conformance suite for vision adapters: the prompt and
// the image reach the provider in its format, the answer is read, and
// errors are classified.
func RunVision(t *testing.T, h VisionHarness) {
	t.Helper()
	setup := func(t *testing.T) (Fake, provider.Vision) {
		t.Helper()
		fake := h.NewFake(t)
		t.Cleanup(fake.Close)
		return fake, h.NewAdapter(fake.URL(), h.Key)
	}
	ctx := context.Background()

	t.Run("SendsPromptAndImage", func(t *testing.T) {
		t.Parallel()
		fake, v := setup(t)
		fake.Script(fake.TextReply("A single grey pixel.", "seen-by", 90, 6))
		out, err := v.DescribeImage(ctx, provider.VisionRequest{Prompt: "What is this?", Image: PNG1x1, MediaType: "image/png", Model: "vl-model", MaxTokens: 40})
		require.NoError(t, err)
		require.Equal(t, "A single grey pixel.", out.Text)
		require.Equal(t, provider.Usage{PromptTokens: 90, CompletionTokens: 6, TotalTokens: 96}, out.Usage)
		call := fake.Calls()[0]
		require.Equal(t, h.ChatPath, call.Path)
		require.Equal(t, "vl-model", call.Model)
		require.Equal(t, []Message{{Role: "user", Content: "What is this?"}}, call.Messages)
		require.Equal(t, [][]byte{PNG1x1}, call.Images)
		require.Equal(t, 40, *call.MaxTokens)
		if h.Key != "" {
			require.Equal(t, "Bearer "+h.Key, call.Authorization)
		}
	})

	t.Run("DefaultModel", func(t *testing.T) {
		t.Parallel()
		fake, v := setup(t)
		_, err := v.DescribeImage(ctx, provider.VisionRequest{Prompt: "p", Image: PNG1x1, MediaType: "image/png"})
		require.NoError(t, err)
		require.Equal(t, h.DefaultModel, fake.Calls()[0].Model)
	})

	t.Run("RateLimited", func(t *testing.T) {
		t.Parallel()
		fake, v := setup(t)
		fake.Script(fake.ErrorReply(http.StatusTooManyRequests, "slow down", 2*time.Second))
		_, err := v.DescribeImage(ctx, provider.VisionRequest{Prompt: "p", Image: PNG1x1, MediaType: "image/png"})
		var perr *provider.Error
		require.ErrorAs(t, err, &perr)
		require.Equal(t, provider.KindRateLimited, perr.Kind)
		require.Equal(t, 2*time.Second, perr.RetryAfter)
		require.Equal(t, h.Name, perr.Provider)
	})

	t.Run("ModelCannotSee", func(t *testing.T) {
		t.Parallel()
		fake, v := setup(t)
		fake.Script(fake.ErrorReply(http.StatusBadRequest, "this model does not support image input", 0))
		_, err := v.DescribeImage(ctx, provider.VisionRequest{Prompt: "p", Image: PNG1x1, MediaType: "image/png"})
		var perr *provider.Error
		require.ErrorAs(t, err, &perr)
		require.Equal(t, provider.KindRejected, perr.Kind)
		require.Contains(t, perr.Message, "image input")
	})
}
