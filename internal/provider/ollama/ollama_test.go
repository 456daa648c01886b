package ollama_test

import (
	"testing"

	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/provider/ollama"
	"github.com/siganteng/siganteng/internal/provider/providertest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	providertest.RunLLM(t, providertest.LLMHarness{
		Name:     "ollama",
		ChatPath: "/api/chat",
		NewFake:  func(*testing.T) providertest.Fake { return providertest.NewOllamaFake() },
		NewAdapter: func(baseURL, _, model string) provider.LLM {
			return ollama.New(ollama.Config{BaseURL: baseURL, DefaultModel: model})
		},
	})
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
