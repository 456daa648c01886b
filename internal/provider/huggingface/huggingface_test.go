package huggingface_test

import (
	"strings"
	"testing"

	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/provider/huggingface"
	"github.com/siganteng/siganteng/internal/provider/providertest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	providertest.RunLLM(t, providertest.LLMHarness{
		Name:     "huggingface",
		ChatPath: "/v1/chat/completions",
		Key:      "hf_testtoken1234567890",
		NewFake:  func(*testing.T) providertest.Fake { return providertest.NewOpenAIFake() },
		NewAdapter: func(baseURL, key, model string) provider.LLM {
			return huggingface.New(huggingface.Config{BaseURL: baseURL, Token: key, DefaultModel: model})
		},
	})
}

// The router's backends do not all know max_completion_tokens.
func TestSendsLegacyMaxTokens(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	defer fake.Close()
	llm := huggingface.New(huggingface.Config{BaseURL: fake.URL(), Token: "hf_x"})
	_, err := llm.GenerateText(t.Context(), provider.TextRequest{Prompt: "hi", MaxTokens: 5})
	if err != nil {
		t.Fatal(err)
	}
	raw := string(fake.Calls()[0].Raw)
	if want := `"max_tokens":5`; !strings.Contains(raw, want) {
		t.Fatalf("request %s lacks %s", raw, want)
	}
	if strings.Contains(raw, "max_completion_tokens") {
		t.Fatalf("request %s sends max_completion_tokens", raw)
	}
	if got := fake.Calls()[0].Model; got != huggingface.DefaultModel {
		t.Fatalf("model = %q, want the documented default %q", got, huggingface.DefaultModel)
	}
}

func TestVisionConformance(t *testing.T) {
	t.Parallel()
	providertest.RunVision(t, providertest.VisionHarness{
		Name:         "huggingface",
		ChatPath:     "/v1/chat/completions",
		Key:          "hf_testtoken1234567890",
		DefaultModel: huggingface.DefaultVisionModel,
		NewFake:      func(*testing.T) providertest.Fake { return providertest.NewOpenAIFake() },
		NewAdapter: func(baseURL, key string) provider.Vision {
			return huggingface.New(huggingface.Config{BaseURL: baseURL, Token: key})
		},
	})
}

func TestEmbedConformance(t *testing.T) {
	t.Parallel()
	providertest.RunEmbed(t, providertest.EmbedHarness{
		Name:         "huggingface",
		Key:          "hf_testtoken1234567890",
		Path:         func(model string) string { return "/models/" + model + "/pipeline/feature-extraction" },
		DefaultModel: huggingface.DefaultEmbedModel,
		NewFake:      func(*testing.T) providertest.EmbedFake { return providertest.NewHFInferenceFake() },
		NewAdapter: func(baseURL, key string) provider.Embedder {
			return huggingface.NewEmbedder(huggingface.InferenceConfig{InferenceURL: baseURL, Token: key})
		},
	})
}

func TestSTTConformance(t *testing.T) {
	t.Parallel()
	providertest.RunSTT(t, providertest.STTHarness{
		Name:         "huggingface",
		Key:          "hf_testtoken1234567890",
		Path:         func(model string) string { return "/models/" + model },
		DefaultModel: huggingface.DefaultASRModel,
		NewFake:      func(*testing.T) providertest.STTFake { return providertest.NewHFInferenceFake() },
		NewAdapter: func(baseURL, key string) provider.STT {
			return huggingface.NewASR(huggingface.InferenceConfig{InferenceURL: baseURL, Token: key})
		},
	})
}

func TestTTSConformance(t *testing.T) {
	t.Parallel()
	providertest.RunTTS(t, providertest.TTSHarness{
		Name:    "huggingface",
		Key:     "hf_testtoken1234567890",
		Path:    func(model string) string { return "/models/" + model },
		Format:  "flac",
		NewFake: func(*testing.T) providertest.SpeechFake { return providertest.NewHFInferenceFake() },
		NewAdapter: func(baseURL, key string) provider.TTS {
			return huggingface.NewTTS(huggingface.InferenceConfig{InferenceURL: baseURL, Token: key})
		},
	})
}
