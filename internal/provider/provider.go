// Package provider defines the capabilities SIGANTENG asks of AI providers,
// one small interface per kind of work, and the error every adapter returns,
// so that the layers above can retry or fail without knowing any provider.
package provider

import (
	"context"
)

// TextRequest asks an LLM for one completion.
type TextRequest struct {
	Prompt      string
	System      string
	Model       string // empty: the adapter's configured default
	MaxTokens   int    // 0: the provider's default
	Temperature *float64
}

// TextResponse is one completion.
type TextResponse struct {
	Text         string
	Model        string
	FinishReason string
	Usage        Usage
}

// LLM generates text.
type LLM interface {
	// Name is the provider's name as shown to clients ("openai", "ollama").
	Name() string
	// GenerateText returns the completion, or an *Error that says whether a
	// retry can help. A cancelled or expired ctx gives an *Error of kind
	// KindTimeout or the context's own error.
	GenerateText(ctx context.Context, req TextRequest) (TextResponse, error)
}

// Pinger is implemented by adapters that can check, cheaply and without
// spending tokens, that their provider is reachable with the credentials given.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Usage counts tokens in the provider's own units.
type Usage struct {
	PromptTokens     int64
	CompletionTokens int64
	TotalTokens      int64
}
