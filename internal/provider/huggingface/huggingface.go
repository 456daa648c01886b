// Package huggingface is the LLM adapter for Hugging Face Inference
// Providers. The router speaks OpenAI's chat completions wire format, so the
// adapter is the OpenAI-compatible one with Hugging Face's name, address and
// token.
package huggingface

import (
	"net/http"

	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/provider/openai"
)

// DefaultBaseURL is the Inference Providers router's OpenAI-compatible API.
const DefaultBaseURL = "https://router.huggingface.co/v1"

// DefaultModel is used when neither LLM_MODEL nor the request names one.
const DefaultModel = "meta-llama/Llama-3.1-8B-Instruct"

// DefaultVisionModel is a vision-language model the router serves.
const DefaultVisionModel = "Qwen/Qwen2.5-VL-7B-Instruct"

// Config configures the adapter.
type Config struct {
	BaseURL      string // DefaultBaseURL when empty
	Token        string // HF_TOKEN
	DefaultModel string // DefaultModel when empty
	VisionModel  string // DefaultVisionModel when empty
	HTTPClient   *http.Client
}

var (
	_ provider.LLM    = (*openai.Adapter)(nil)
	_ provider.Vision = (*openai.Adapter)(nil)
)

// New returns the adapter. It does no I/O.
func New(cfg Config) *openai.Adapter {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	if cfg.DefaultModel == "" {
		cfg.DefaultModel = DefaultModel
	}
	if cfg.VisionModel == "" {
		cfg.VisionModel = DefaultVisionModel
	}
	return openai.New(openai.Config{
		Name:         "huggingface",
		BaseURL:      cfg.BaseURL,
		APIKey:       cfg.Token,
		DefaultModel: cfg.DefaultModel,
		VisionModel:  cfg.VisionModel,
		// The router passes max_tokens to every backend; not all of them know
		// max_completion_tokens.
		LegacyMaxTokens: true,
		HTTPClient:      cfg.HTTPClient,
	})
}
