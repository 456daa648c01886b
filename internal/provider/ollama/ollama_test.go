package ollama_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/provider/ollama"
	"github.com/siganteng/siganteng/internal/provider/providertest"
	"github.com/siganteng/siganteng/internal/task"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	harness := providertest.LLMHarness{
		Name:     "ollama",
		ChatPath: "/api/chat",
		NewFake:  func(*testing.T) providertest.Fake { return providertest.NewOllamaFake() },
		NewAdapter: func(baseURL, _, model string) provider.LLM {
			return ollama.New(ollama.Config{BaseURL: baseURL, DefaultModel: model})
		},
	}
	providertest.RunLLM(t, harness)
	providertest.RunChat(t, harness)
}

func TestWhatOllamaCannotDoIsRefusedNamingTheField(t *testing.T) {
	t.Parallel()
	a := ollama.New(ollama.Config{})
	tools := []task.Tool{{Type: "function", Function: task.FunctionDef{Name: "f"}}}
	require.NoError(t, a.CheckText(provider.TextRequest{Prompt: "x", Tools: tools, ToolChoice: json.RawMessage(`"auto"`)}))
	err := a.CheckText(provider.TextRequest{Prompt: "x", Tools: tools, ToolChoice: json.RawMessage(`"required"`)})
	require.Equal(t, "tool_choice", task.FieldOf(err))
	require.Contains(t, err.Error(), "ollama")
	image := json.RawMessage(`[{"type":"text","text":"what is it?"},{"type":"image_url","image_url":{"url":"https://example.com/cat.png"}}]`)
	err = a.CheckText(provider.TextRequest{Messages: []task.Message{{Role: "user", Content: image}}})
	require.Equal(t, "messages[0].content[1].image_url.url", task.FieldOf(err))
}

func TestVisionConformance(t *testing.T) {
	t.Parallel()
	providertest.RunVision(t, providertest.VisionHarness{
		Name:         "ollama",
		ChatPath:     "/api/chat",
		DefaultModel: ollama.DefaultVisionModel,
		NewFake:      func(*testing.T) providertest.Fake { return providertest.NewOllamaFake() },
		NewAdapter: func(baseURL, _ string) provider.Vision {
			return ollama.New(ollama.Config{BaseURL: baseURL})
		},
	})
}

func TestEmbedConformance(t *testing.T) {
	t.Parallel()
	providertest.RunEmbed(t, providertest.EmbedHarness{
		Name:         "ollama",
		Path:         func(string) string { return "/api/embed" },
		DefaultModel: ollama.DefaultEmbedModel,
		Dimensions:   true,
		NewFake:      func(*testing.T) providertest.EmbedFake { return providertest.NewOllamaFake() },
		NewAdapter: func(baseURL, _ string) provider.Embedder {
			return ollama.New(ollama.Config{BaseURL: baseURL})
		},
	})
}
