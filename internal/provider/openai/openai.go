// Package openai is the LLM adapter for OpenAI and for any server that speaks
// OpenAI's chat completions API (vLLM, llama.cpp's server, LM Studio, TGI, the
// Hugging Face router), on the official openai-go client.
package openai

import (
	"context"
	"net/http"
	"strings"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/param"

	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/task"
)

// DefaultBaseURL is OpenAI's own API.
const DefaultBaseURL = "https://api.openai.com/v1"

// DefaultModel is used when neither LLM_MODEL nor the request names one.
const DefaultModel = "gpt-4o-mini"

// Config configures an adapter. Only Name, BaseURL and APIKey differ between
// OpenAI and compatible servers.
type Config struct {
	Name         string // shown to clients; "openai" when empty
	BaseURL      string // DefaultBaseURL when empty
	APIKey       string
	DefaultModel string // DefaultModel when empty
	// SpeechModel is the text-to-speech model; DefaultSpeechModel when empty.
	SpeechModel string
	// VisionModel is the model for images; DefaultVisionModel when empty.
	VisionModel string
	// EmbedModel is the embeddings model; DefaultEmbedModel when empty.
	EmbedModel string
	// TranscribeModel is the speech-to-text model; DefaultTranscribeModel
	// when empty.
	TranscribeModel string
	// LegacyMaxTokens sends max_tokens instead of max_completion_tokens, for
	// compatible servers that only know the older field.
	LegacyMaxTokens bool
	HTTPClient      *http.Client // http.DefaultClient when nil
}

// Adapter implements provider.LLM over chat completions and provider.TTS
// over audio speech.
type Adapter struct {
	name            string
	model           string
	speechModel     string
	visionModel     string
	embedModel      string
	transcribeModel string
	key             string
	legacy          bool
	client          openai.Client
}

var (
	_ provider.LLM          = (*Adapter)(nil)
	_ provider.TextStreamer = (*Adapter)(nil)
	_ provider.Pinger       = (*Adapter)(nil)
)

// New returns an adapter. It does no I/O.
func New(cfg Config) *Adapter {
	if cfg.Name == "" {
		cfg.Name = "openai"
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	if cfg.DefaultModel == "" {
		cfg.DefaultModel = DefaultModel
	}
	if cfg.SpeechModel == "" {
		cfg.SpeechModel = DefaultSpeechModel
	}
	if cfg.VisionModel == "" {
		cfg.VisionModel = DefaultVisionModel
	}
	if cfg.EmbedModel == "" {
		cfg.EmbedModel = DefaultEmbedModel
	}
	if cfg.TranscribeModel == "" {
		cfg.TranscribeModel = DefaultTranscribeModel
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	a := &Adapter{name: cfg.Name, model: cfg.DefaultModel, speechModel: cfg.SpeechModel, visionModel: cfg.VisionModel, embedModel: cfg.EmbedModel, transcribeModel: cfg.TranscribeModel, key: cfg.APIKey, legacy: cfg.LegacyMaxTokens}
	a.client = openai.NewClient(
		option.WithBaseURL(strings.TrimRight(cfg.BaseURL, "/")+"/"),
		option.WithAPIKey(cfg.APIKey),
		option.WithHTTPClient(cfg.HTTPClient),
		// The queue retries with backoff across workers and restarts; retrying
		// inside one attempt as well would multiply calls and hide Retry-After.
		option.WithMaxRetries(0),
		option.WithMiddleware(a.classifyErrors),
	)
	return a
}

// Name implements provider.LLM.
func (a *Adapter) Name() string { return a.name }

// GenerateText implements provider.LLM with one chat completion.
func (a *Adapter) GenerateText(ctx context.Context, req provider.TextRequest) (provider.TextResponse, error) {
	return a.complete(ctx, a.chatParams(req))
}

// chatParams builds the chat completion request for req. The domain's
// messages, tools and formats are OpenAI's own shapes, so they are sent as
// they are.
func (a *Adapter) chatParams(req provider.TextRequest) openai.ChatCompletionNewParams {
	model := req.Model
	if model == "" {
		model = a.model
	}
	conversation := req.Conversation()
	messages := make([]openai.ChatCompletionMessageParamUnion, len(conversation))
	for i, m := range conversation {
		messages[i] = param.Override[openai.ChatCompletionMessageParamUnion](m)
	}
	params := openai.ChatCompletionNewParams{Model: model, Messages: messages}
	a.setMaxTokens(&params, req.MaxTokens)
	if req.Temperature != nil {
		params.Temperature = openai.Float(*req.Temperature)
	}
	for _, t := range req.Tools {
		params.Tools = append(params.Tools, param.Override[openai.ChatCompletionToolUnionParam](t))
	}
	if len(req.ToolChoice) > 0 {
		params.ToolChoice = param.Override[openai.ChatCompletionToolChoiceOptionUnionParam](req.ToolChoice)
	}
	if req.ResponseFormat != nil {
		params.ResponseFormat = param.Override[openai.ChatCompletionNewParamsResponseFormatUnion](req.ResponseFormat)
	}
	if len(req.Stop) > 0 {
		params.Stop = openai.ChatCompletionNewParamsStopUnion{OfStringArray: req.Stop}
	}
	if req.Seed != nil {
		params.Seed = openai.Int(*req.Seed)
	}
	if req.TopP != nil {
		params.TopP = openai.Float(*req.TopP)
	}
	if req.PresencePenalty != nil {
		params.PresencePenalty = openai.Float(*req.PresencePenalty)
	}
	if req.FrequencyPenalty != nil {
		params.FrequencyPenalty = openai.Float(*req.FrequencyPenalty)
	}
	if req.User != "" {
		params.User = openai.String(req.User)
	}
	return params
}

// StreamText implements provider.TextStreamer with a streamed chat
// completion (server-sent chat.completion.chunk events), asking for the
// usage in the last chunk.
func (a *Adapter) StreamText(ctx context.Context, req provider.TextRequest, onText func(string)) (provider.TextResponse, error) {
	params := a.chatParams(req)
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := a.client.Chat.Completions.NewStreaming(ctx, params)
	defer stream.Close()
	var (
		out   provider.TextResponse
		text  strings.Builder
		calls toolCalls
	)
	for stream.Next() {
		chunk := stream.Current()
		if chunk.Model != "" {
			out.Model = chunk.Model
		}
		if chunk.JSON.Usage.Valid() {
			out.Usage = provider.Usage{PromptTokens: chunk.Usage.PromptTokens, CompletionTokens: chunk.Usage.CompletionTokens, TotalTokens: chunk.Usage.TotalTokens}
		}
		if len(chunk.Choices) == 0 {
			continue
		}
		choice := chunk.Choices[0]
		if choice.FinishReason != "" {
			out.FinishReason = choice.FinishReason
		}
		if piece := choice.Delta.Content; piece != "" {
			text.WriteString(piece)
			onText(piece)
		}
		for _, d := range choice.Delta.ToolCalls {
			calls.add(d)
		}
	}
	if err := stream.Err(); err != nil {
		return provider.TextResponse{}, a.transportError(ctx, err)
	}
	out.Text = text.String()
	out.ToolCalls = calls.list
	return out, nil
}

// toolCalls puts together the tool calls a stream sends in pieces: the
// first piece of each has its index, id and name, the rest more arguments.
type toolCalls struct{ list []task.ToolCall }

func (c *toolCalls) add(d openai.ChatCompletionChunkChoiceDeltaToolCall) {
	i := int(d.Index)
	if i < 0 || i > 1024 {
		return
	}
	for len(c.list) <= i {
		c.list = append(c.list, task.ToolCall{Type: "function"})
	}
	call := &c.list[i]
	if d.ID != "" {
		call.ID = d.ID
	}
	if d.Function.Name != "" {
		call.Function.Name = d.Function.Name
	}
	call.Function.Arguments += d.Function.Arguments
}

func (a *Adapter) setMaxTokens(params *openai.ChatCompletionNewParams, n int) {
	switch {
	case n <= 0:
	case a.legacy:
		params.MaxTokens = openai.Int(int64(n))
	default:
		params.MaxCompletionTokens = openai.Int(int64(n))
	}
}

// complete sends one chat completion and reads its first choice.
func (a *Adapter) complete(ctx context.Context, params openai.ChatCompletionNewParams) (provider.TextResponse, error) {
	completion, err := a.client.Chat.Completions.New(ctx, params)
	if err != nil {
		return provider.TextResponse{}, a.transportError(ctx, err)
	}
	if len(completion.Choices) == 0 {
		return provider.TextResponse{}, &provider.Error{Provider: a.name, Kind: provider.KindBadResponse, Message: "the answer has no choices"}
	}
	choice := completion.Choices[0]
	var calls []task.ToolCall
	for _, c := range choice.Message.ToolCalls {
		calls = append(calls, task.ToolCall{ID: c.ID, Type: "function",
			Function: task.FunctionCall{Name: c.Function.Name, Arguments: c.Function.Arguments}})
	}
	return provider.TextResponse{
		ToolCalls:    calls,
		Text:         choice.Message.Content,
		Model:        completion.Model,
		FinishReason: choice.FinishReason,
		Usage: provider.Usage{
			PromptTokens:     completion.Usage.PromptTokens,
			CompletionTokens: completion.Usage.CompletionTokens,
			TotalTokens:      completion.Usage.TotalTokens,
		},
	}, nil
}

// Ping lists models: it needs a valid key and spends nothing.
func (a *Adapter) Ping(ctx context.Context) error {
	_, err := a.client.Models.List(ctx)
	return a.transportError(ctx, err)
}

// classifyErrors turns every non-2xx answer into a *provider.Error before the
// SDK reads it, so that all the providers' error body shapes, Retry-After and
// redaction are handled in one place.
func (a *Adapter) classifyErrors(req *http.Request, next option.MiddlewareNext) (*http.Response, error) {
	res, err := next(req)
	if err != nil || res.StatusCode < 400 {
		return res, err
	}
	defer res.Body.Close()
	return nil, provider.ErrorFromResponse(a.name, res, a.key)
}

func (a *Adapter) transportError(ctx context.Context, err error) error {
	return provider.ErrorFromTransport(ctx, a.name, err, a.key)
}
