package task

import (
	"encoding/json"
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
	// Clients of the original (Pydantic) API may send fields SIGANTENG does
	// not use; they are ignored, as Pydantic ignored them.
	_                struct{}        `json:"-" additionalProperties:"true"`
	Prompt           string          `json:"prompt,omitempty" maxLength:"200000" doc:"The user's message; or give messages instead." example:"Write a haiku about queues."`
	System           string          `json:"system,omitempty" maxLength:"50000" doc:"Optional system instruction, with prompt."`
	Messages         []Message       `json:"messages,omitempty" maxItems:"2048" doc:"The conversation so far, in OpenAI's chat shape, instead of prompt and system."`
	Model            string          `json:"model,omitempty" maxLength:"256" doc:"Provider model; LLM_MODEL when empty." example:"gpt-4o-mini"`
	MaxTokens        *int            `json:"max_tokens,omitempty" minimum:"1" maximum:"131072" doc:"Upper bound on generated tokens."`
	Temperature      *float64        `json:"temperature,omitempty" minimum:"0" maximum:"2" doc:"Sampling temperature."`
	TopP             *float64        `json:"top_p,omitempty" minimum:"0" maximum:"1" doc:"Nucleus sampling."`
	Stop             []string        `json:"stop,omitempty" maxItems:"4" doc:"Up to four sequences where the model stops."`
	Seed             *int64          `json:"seed,omitempty" doc:"Asks for repeatable sampling, where the provider offers it."`
	PresencePenalty  *float64        `json:"presence_penalty,omitempty" minimum:"-2" maximum:"2"`
	FrequencyPenalty *float64        `json:"frequency_penalty,omitempty" minimum:"-2" maximum:"2"`
	User             string          `json:"user,omitempty" maxLength:"256" doc:"Your end user's id, passed to providers that take one."`
	Tools            []Tool          `json:"tools,omitempty" maxItems:"128" doc:"Functions the model may call; its calls come back in the result's tool_calls."`
	ToolChoice       json.RawMessage `json:"tool_choice,omitempty" doc:"none, auto, required, or {\"type\":\"function\",\"function\":{\"name\":…}}."`
	ResponseFormat   *ResponseFormat `json:"response_format,omitempty" doc:"json_object, or json_schema with a schema the answer follows."`
	// Origin names the front that submitted the task when it was not the
	// native API (OriginResponse, OriginBackgroundResponse), so that front
	// can show the record in its own shape; never taken from a request.
	Origin string `json:"-"`
	Stream bool   `json:"stream,omitempty" doc:"Background tasks only: send the text as the provider produces it, as delta events on /background/tasks/{task_id}/events, and progress on the record. Providers that cannot stream answer at once at the end."`
}

// Validate checks what a schema cannot express, and the schema's own limits
// for callers that do not come through HTTP.
func (in GenerateTextInput) Validate() error {
	switch {
	case len(in.Messages) > 0 && in.Prompt != "":
		return Invalid("messages", "give prompt or messages, not both")
	case len(in.Messages) > 0 && in.System != "":
		return Invalid("system", "with messages, the system instruction is the first message (role system)")
	case len(in.Messages) == 0 && in.Messages != nil:
		return Invalid("messages", "messages must hold at least one message")
	case len(in.Messages) == 0 && strings.TrimSpace(in.Prompt) == "":
		return Invalid("prompt", "prompt (or messages) must not be empty or blank")
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
	if len(in.Messages) > 0 {
		if err := validateConversation(in.Messages, MaxPromptChars+MaxSystemChars); err != nil {
			return err
		}
	}
	if err := in.validateTools(); err != nil {
		return err
	}
	return in.validateSampling()
}

// Summary is what the record keeps of the input: enough to recognise the
// task, never the prompt itself.
func (in GenerateTextInput) Summary() any {
	return GenerateTextSummary{
		Origin:      in.Origin,
		Stream:      in.Stream,
		Model:       in.Model,
		PromptChars: utf8.RuneCountInString(in.Prompt),
		Messages:    len(in.Messages),
		Tools:       len(in.Tools),
		Format:      formatOf(in.ResponseFormat),
		MaxTokens:   in.MaxTokens,
		Temperature: in.Temperature,
	}
}

func formatOf(f *ResponseFormat) string {
	if f == nil || f.Type == "text" {
		return ""
	}
	return f.Type
}

// The origins of tasks made by the OpenAI-compatible front.
const (
	OriginResponse           = "response"
	OriginBackgroundResponse = "background_response"
)

// GenerateTextSummary is the input summary stored on a generate_text record.
type GenerateTextSummary struct {
	Origin      string `json:"origin,omitempty" doc:"response or background_response: made through /v1/responses."`
	Stream      bool   `json:"stream,omitempty"`
	Model       string `json:"model,omitempty"`
	PromptChars int    `json:"prompt_chars"`
	Messages    int    `json:"messages,omitempty"`
	Tools       int    `json:"tools,omitempty"`
	Format      string `json:"response_format,omitempty"`
	// StoredImages counts the images sent inline, kept in the artifact
	// store while the task waits.
	StoredImages int      `json:"stored_images,omitempty"`
	MaxTokens    *int     `json:"max_tokens,omitempty"`
	Temperature  *float64 `json:"temperature,omitempty"`
}

// TextResult is the result of generate_text.
type TextResult struct {
	Text         string     `json:"text"`
	Model        string     `json:"model" doc:"The model that answered, as the provider names it."`
	Provider     string     `json:"provider"`
	FinishReason string     `json:"finish_reason,omitempty" doc:"stop, length (cut at max_tokens), tool_calls or content_filter."`
	ToolCalls    []ToolCall `json:"tool_calls,omitempty" doc:"The functions the model asks to call, when tools were given."`
	Usage        Usage      `json:"usage"`
	// Route is what served it through a routing file; never shown.
	Route *Route `json:"-"`
}
