package task

import (
	"strings"
	"unicode/utf8"
)

// Limits on a generate_text request. The HTTP schema states the same numbers,
// so the documented contract and the checks cannot disagree for long.
const (
	MaxPromptChars = 200_000
	MaxSystemChars = 50_000
	MaxModelChars  = 256
	MaxTokensLimit = 131_072
)

// GenerateTextInput is a request for text from an LLM.
type GenerateTextInput struct {
	Options
	Prompt      string   `json:"prompt" minLength:"1" maxLength:"200000" doc:"The user's message." example:"Write a haiku about queues."`
	System      string   `json:"system,omitempty" maxLength:"50000" doc:"Optional system instruction."`
	Model       string   `json:"model,omitempty" maxLength:"256" doc:"Provider model; LLM_MODEL when empty." example:"gpt-4o-mini"`
	MaxTokens   *int     `json:"max_tokens,omitempty" minimum:"1" maximum:"131072" doc:"Upper bound on generated tokens."`
	Temperature *float64 `json:"temperature,omitempty" minimum:"0" maximum:"2" doc:"Sampling temperature."`
	Stream      bool     `json:"stream,omitempty" doc:"Background tasks only: send the text as the provider produces it, as delta events on /background/tasks/{task_id}/events, and progress on the record. Providers that cannot stream answer at once at the end."`
}

// Validate checks what a schema cannot express, and the schema's own limits
// for callers that do not come through HTTP.
func (in GenerateTextInput) Validate() error {
	switch {
	case strings.TrimSpace(in.Prompt) == "":
		return Invalid("prompt", "prompt must not be empty or blank")
	case utf8.RuneCountInString(in.Prompt) > MaxPromptChars:
		return Invalid("prompt", "prompt is longer than 200000 characters")
	case utf8.RuneCountInString(in.System) > MaxSystemChars:
		return Invalid("system", "system is longer than 50000 characters")
	case len(in.Model) > MaxModelChars:
		return Invalid("model", "model is longer than 256 characters")
	case in.MaxTokens != nil && (*in.MaxTokens < 1 || *in.MaxTokens > MaxTokensLimit):
		return Invalid("max_tokens", "max_tokens must be between 1 and 131072")
	case in.Temperature != nil && (*in.Temperature < 0 || *in.Temperature > 2):
		return Invalid("temperature", "temperature must be between 0 and 2")
	}
	return nil
}

// Summary is what the record keeps of the input: enough to recognise the
// task, never the prompt itself.
func (in GenerateTextInput) Summary() any {
	return GenerateTextSummary{
		Stream:      in.Stream,
		Model:       in.Model,
		PromptChars: utf8.RuneCountInString(in.Prompt),
		MaxTokens:   in.MaxTokens,
		Temperature: in.Temperature,
	}
}

// GenerateTextSummary is the input summary stored on a generate_text record.
type GenerateTextSummary struct {
	Stream      bool     `json:"stream,omitempty"`
	Model       string   `json:"model,omitempty"`
	PromptChars int      `json:"prompt_chars"`
	MaxTokens   *int     `json:"max_tokens,omitempty"`
	Temperature *float64 `json:"temperature,omitempty"`
}

// TextResult is the result of generate_text.
type TextResult struct {
	Text         string `json:"text"`
	Model        string `json:"model" doc:"The model that answered, as the provider names it."`
	Provider     string `json:"provider"`
	FinishReason string `json:"finish_reason,omitempty"`
	Usage        Usage  `json:"usage"`
	// Route is what served it through a routing file; never shown.
	Route *Route `json:"-"`
}
