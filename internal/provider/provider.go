// Package provider defines the capabilities SIGANTENG asks of AI providers,
// one small interface per kind of work, and the error every adapter returns,
// so that the layers above can retry or fail without knowing any provider.
package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/siganteng/siganteng/internal/task"
)

// TextRequest asks an LLM for one completion: of Prompt (with System), or
// of the conversation in Messages.
type TextRequest struct {
	Prompt      string
	System      string
	Messages    []task.Message // when set, Prompt and System are empty
	Model       string         // empty: the adapter's configured default
	MaxTokens   int            // 0: the provider's default
	Temperature *float64

	// The chat options, as OpenAI defines them; zero values are not sent.
	Tools            []task.Tool
	ToolChoice       json.RawMessage
	ResponseFormat   *task.ResponseFormat
	Stop             []string
	Seed             *int64
	TopP             *float64
	PresencePenalty  *float64
	FrequencyPenalty *float64
	User             string
}

// Input is req as the domain's input, for its conversation and estimates.
func (req TextRequest) Input() task.GenerateTextInput {
	return task.GenerateTextInput{Prompt: req.Prompt, System: req.System, Messages: req.Messages, Tools: req.Tools,
		MaxTokens: &req.MaxTokens}
}

// Conversation is the request as messages.
func (req TextRequest) Conversation() []task.Message { return req.Input().Conversation() }

// EstimatedTokens is what the call is estimated to use before it runs.
func (req TextRequest) EstimatedTokens() int64 { return req.Input().EstimatedTokens() }

// TextChecker is implemented by LLMs that cannot honour every field of a
// TextRequest, so a request asking for one is refused before it is queued.
type TextChecker interface {
	// CheckText returns a task.Invalid error naming the first field of req
	// the provider cannot honour, and the provider; nil when it can.
	CheckText(req TextRequest) error
}

// CheckText is llm's CheckText, or nil for an LLM that takes every field.
func CheckText(llm LLM, req TextRequest) error {
	if c, ok := llm.(TextChecker); ok {
		return c.CheckText(req)
	}
	return nil
}

// Unsupported is the error for a field provider cannot honour.
func Unsupported(provider, field, why string) error {
	return task.Invalid(field, fmt.Sprintf("%s cannot serve %s: %s", provider, field, why))
}

// TextResponse is one completion.
type TextResponse struct {
	Text         string
	Model        string
	FinishReason string
	ToolCalls    []task.ToolCall
	Usage        Usage
	// Route is set by the router: what served the call.
	Route *task.Route
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

// TextStreamer is implemented by LLM adapters whose provider can hand over
// text as it is produced.
type TextStreamer interface {
	// StreamText is GenerateText that calls onText with each piece of text
	// as it arrives, in order; the response holds the whole text. onText
	// runs on the caller's goroutine and should not block for long.
	StreamText(ctx context.Context, req TextRequest, onText func(string)) (TextResponse, error)
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

// SpeechRequest asks for text to be spoken.
type SpeechRequest struct {
	Text   string
	Voice  string  // empty: the adapter's default
	Format string  // mp3, wav, opus, aac, flac or pcm; empty: the adapter's default
	Model  string  // empty: the adapter's default
	Speed  float64 // 0: normal speed; else 0.25 to 4
}

// Audio is spoken text, streamed: the caller reads Body and closes it.
type Audio struct {
	Body        io.ReadCloser
	ContentType string
	Format      string // the format actually produced
	Voice       string // the voice actually used
	Model       string
	// Route is set by the router: what served the call.
	Route *task.Route
}

// TTS turns text into speech.
type TTS interface {
	// Name is the provider's name as shown to clients ("openai", "espeak").
	Name() string
	// Synthesize starts producing audio. Errors are *Error; a format the
	// provider does not offer is KindRejected.
	Synthesize(ctx context.Context, req SpeechRequest) (Audio, error)
}

// AudioContentType is the media type of each audio format.
func AudioContentType(format string) string {
	switch format {
	case "mp3":
		return "audio/mpeg"
	case "wav":
		return "audio/wav"
	case "opus":
		return "audio/ogg" // OpenAI's opus comes in an Ogg container
	case "aac":
		return "audio/aac"
	case "flac":
		return "audio/flac"
	}
	return "application/octet-stream" // pcm: raw samples
}

// VisionRequest asks a vision model about one image.
type VisionRequest struct {
	Prompt    string
	Image     []byte
	MediaType string // image/png, image/jpeg, image/gif or image/webp
	Model     string // empty: the adapter's default
	MaxTokens int    // 0: the provider's default
}

// Vision answers questions about images.
type Vision interface {
	Name() string
	// DescribeImage returns the model's answer; errors as LLM's.
	DescribeImage(ctx context.Context, req VisionRequest) (TextResponse, error)
}

// EmbedRequest asks for one vector per input string.
type EmbedRequest struct {
	Input      []string
	Model      string // empty: the adapter's default
	Dimensions int    // 0: the model's own; only some models can shorten
}

// EmbedResponse holds the vectors, in the order of the inputs.
type EmbedResponse struct {
	Vectors [][]float64
	Model   string
	Usage   Usage
	// Route is set by the router: what served the call.
	Route *task.Route
}

// Embedder turns text into vectors.
type Embedder interface {
	Name() string
	// Embed returns one vector per input; errors as LLM's.
	Embed(ctx context.Context, req EmbedRequest) (EmbedResponse, error)
}

// TranscribeRequest asks for the words in one audio file.
type TranscribeRequest struct {
	Audio     io.Reader
	Filename  string // providers guess the format from its extension too
	MediaType string // as sniffed: audio/wav, audio/mpeg, audio/flac, audio/ogg, audio/webm, audio/mp4
	Model     string // empty: the adapter's default
	Language  string // ISO-639-1 hint, or empty
	Prompt    string // spelling and style hint, or empty
}

// Segment is a timed piece of a transcript.
type Segment struct {
	Start float64 `json:"start"` // seconds
	End   float64 `json:"end"`
	Text  string  `json:"text"`
}

// Transcript is what was said.
type Transcript struct {
	Text     string
	Language string
	Duration float64   // seconds, where the provider says
	Segments []Segment // where the provider returns them
	Model    string
	// Route is set by the router: what served the call.
	Route *task.Route
}

// STT turns speech into text.
type STT interface {
	Name() string
	// Transcribe returns the transcript; errors as LLM's.
	Transcribe(ctx context.Context, req TranscribeRequest) (Transcript, error)
}
