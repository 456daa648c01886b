// Package ollama is the LLM adapter for Ollama's native chat API
// (POST /api/chat), which exposes Ollama's own options and token counts.
package ollama

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/google/uuid"

	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/task"
)

// DefaultBaseURL is where a local Ollama listens.
const DefaultBaseURL = "http://127.0.0.1:11434"

// DefaultModel is used when neither LLM_MODEL nor the request names one.
const DefaultModel = "llama3.2"

// DefaultVisionModel is Ollama's best-known vision model.
const DefaultVisionModel = "llava"

// DefaultEmbedModel is a small embedding model Ollama serves.
const DefaultEmbedModel = "nomic-embed-text"

// maxAnswer bounds a chat answer: far above any completion, small enough that
// a misbehaving server cannot exhaust a worker's memory.
const maxAnswer = 32 << 20

// Config configures the adapter.
type Config struct {
	BaseURL      string // DefaultBaseURL when empty
	DefaultModel string // DefaultModel when empty
	VisionModel  string // DefaultVisionModel when empty
	EmbedModel   string // DefaultEmbedModel when empty
	HTTPClient   *http.Client
}

// Adapter implements provider.LLM on Ollama.
type Adapter struct {
	base        string
	model       string
	visionModel string
	embedModel  string
	client      *http.Client
}

var (
	_ provider.LLM          = (*Adapter)(nil)
	_ provider.Vision       = (*Adapter)(nil)
	_ provider.Embedder     = (*Adapter)(nil)
	_ provider.TextStreamer = (*Adapter)(nil)
	_ provider.Pinger       = (*Adapter)(nil)
	_ provider.TextChecker  = (*Adapter)(nil)
)

// New returns the adapter. It does no I/O.
func New(cfg Config) *Adapter {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	if cfg.DefaultModel == "" {
		cfg.DefaultModel = DefaultModel
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.VisionModel == "" {
		cfg.VisionModel = DefaultVisionModel
	}
	if cfg.EmbedModel == "" {
		cfg.EmbedModel = DefaultEmbedModel
	}
	return &Adapter{base: strings.TrimRight(cfg.BaseURL, "/"), model: cfg.DefaultModel, visionModel: cfg.VisionModel,
		embedModel: cfg.EmbedModel, client: cfg.HTTPClient}
}

// Name implements provider.LLM.
func (a *Adapter) Name() string { return "ollama" }

type chatMessage struct {
	Role      string         `json:"role"`
	Content   string         `json:"content"`
	Images    []string       `json:"images,omitempty"` // base64, for vision models
	ToolCalls []chatToolCall `json:"tool_calls,omitempty"`
	ToolName  string         `json:"tool_name,omitempty"` // a tool message: the function that answered
}

// chatToolCall is a tool call as Ollama writes it: arguments as an object.
type chatToolCall struct {
	ID       string `json:"id,omitempty"`
	Function struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	} `json:"function"`
}

type chatOptions struct {
	NumPredict       int      `json:"num_predict,omitempty"`
	Temperature      *float64 `json:"temperature,omitempty"`
	TopP             *float64 `json:"top_p,omitempty"`
	Stop             []string `json:"stop,omitempty"`
	Seed             *int64   `json:"seed,omitempty"`
	PresencePenalty  *float64 `json:"presence_penalty,omitempty"`
	FrequencyPenalty *float64 `json:"frequency_penalty,omitempty"`
}

type chatRequest struct {
	Model    string          `json:"model"`
	Messages []chatMessage   `json:"messages"`
	Stream   bool            `json:"stream"`
	Tools    []task.Tool     `json:"tools,omitempty"`
	Format   json.RawMessage `json:"format,omitempty"` // "json", or a JSON schema
	Options  *chatOptions    `json:"options,omitempty"`
}

type chatResponse struct {
	Model           string      `json:"model"`
	Message         chatMessage `json:"message"`
	Done            bool        `json:"done"`
	DoneReason      string      `json:"done_reason"`
	PromptEvalCount int64       `json:"prompt_eval_count"`
	EvalCount       int64       `json:"eval_count"`
}

// GenerateText implements provider.LLM with one non-streaming chat call.
func (a *Adapter) GenerateText(ctx context.Context, req provider.TextRequest) (provider.TextResponse, error) {
	return a.chat(ctx, a.textBody(req))
}

// textBody is the chat request for req, not streamed. CheckText has
// refused what it cannot carry.
func (a *Adapter) textBody(req provider.TextRequest) chatRequest {
	body := chatRequest{Model: req.Model, Stream: false}
	if body.Model == "" {
		body.Model = a.model
	}
	names := map[string]string{} // tool call id → function, for the tool messages
	for _, m := range req.Conversation() {
		msg := chatMessage{Role: m.Role, Content: m.Text()}
		if m.Role == task.RoleDeveloper {
			msg.Role = task.RoleSystem
		}
		parts, _ := m.Parts()
		for _, p := range parts {
			if p.Type == "image_url" && p.ImageURL != nil {
				if _, data, ok := strings.Cut(p.ImageURL.URL, ";base64,"); ok {
					msg.Images = append(msg.Images, data)
				}
			}
		}
		for _, c := range m.ToolCalls {
			var call chatToolCall
			call.Function.Name, call.Function.Arguments = c.Function.Name, arguments(c.Function.Arguments)
			msg.ToolCalls = append(msg.ToolCalls, call)
			names[c.ID] = c.Function.Name
		}
		if m.Role == task.RoleTool {
			msg.ToolName = names[m.ToolCallID]
		}
		body.Messages = append(body.Messages, msg)
	}
	if word, _, _ := task.ToolChoiceOf(req.ToolChoice); word != task.ToolChoiceNone {
		body.Tools = req.Tools
	}
	if f := req.ResponseFormat; f != nil {
		switch f.Type {
		case "json_object":
			body.Format = json.RawMessage(`"json"`)
		case "json_schema":
			body.Format = f.JSONSchema.Schema
		}
	}
	o := chatOptions{NumPredict: req.MaxTokens, Temperature: req.Temperature, TopP: req.TopP, Stop: req.Stop, Seed: req.Seed,
		PresencePenalty: req.PresencePenalty, FrequencyPenalty: req.FrequencyPenalty}
	if o.NumPredict > 0 || o.Temperature != nil || o.TopP != nil || len(o.Stop) > 0 || o.Seed != nil || o.PresencePenalty != nil || o.FrequencyPenalty != nil {
		body.Options = &o
	}
	return body
}

// arguments is a tool call's arguments as the object Ollama wants; text
// that is not JSON goes as a string, for the model to read.
func arguments(s string) json.RawMessage {
	if json.Valid([]byte(s)) {
		return json.RawMessage(s)
	}
	b, _ := json.Marshal(s)
	return b
}

// CheckText implements provider.TextChecker: Ollama cannot be made to call
// a tool, and reads images only inline. The user field is an identifier
// for the provider's abuse monitoring, which Ollama has none of; it is
// dropped.
func (a *Adapter) CheckText(req provider.TextRequest) error {
	word, function, _ := task.ToolChoiceOf(req.ToolChoice)
	if word == task.ToolChoiceRequired || function != "" {
		return provider.Unsupported(a.Name(), "tool_choice", "Ollama lets the model choose whether to call a tool; send tool_choice auto or none")
	}
	for i, m := range req.Messages {
		parts, _ := m.Parts()
		for j, p := range parts {
			if p.Type == "image_url" && p.ImageURL != nil && !strings.HasPrefix(p.ImageURL.URL, "data:") {
				return provider.Unsupported(a.Name(), fmt.Sprintf("messages[%d].content[%d].image_url.url", i, j),
					"Ollama takes images inline; send the image as a data: URL")
			}
		}
	}
	return nil
}

// StreamText implements provider.TextStreamer with a streamed chat: Ollama
// answers with one JSON object per line, each holding the next piece of the
// message, and a last one with done true and the counts.
func (a *Adapter) StreamText(ctx context.Context, req provider.TextRequest, onText func(string)) (provider.TextResponse, error) {
	body := a.textBody(req)
	body.Stream = true
	res, err := a.send(ctx, http.MethodPost, "/api/chat", body)
	if err != nil {
		return provider.TextResponse{}, err
	}
	defer res.Body.Close()
	dec := json.NewDecoder(io.LimitReader(res.Body, maxAnswer))
	var (
		text  strings.Builder
		calls []chatToolCall
	)
	for {
		var chunk struct {
			chatResponse
			Error string `json:"error"`
		}
		if err := dec.Decode(&chunk); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // the stream ended before done
			}
			return provider.TextResponse{}, a.readError(ctx, err)
		}
		if chunk.Error != "" {
			return provider.TextResponse{}, &provider.Error{Provider: a.Name(), Kind: provider.KindUnavailable, Message: chunk.Error}
		}
		if piece := chunk.Message.Content; piece != "" {
			text.WriteString(piece)
			onText(piece)
		}
		calls = append(calls, chunk.Message.ToolCalls...)
		if chunk.Done {
			chunk.Message.ToolCalls = calls
			out := textResponse(chunk.chatResponse)
			out.Text = text.String()
			return out, nil
		}
	}
}

// DescribeImage implements provider.Vision: the image travels base64 in the
// user message's images, as Ollama's chat API documents.
func (a *Adapter) DescribeImage(ctx context.Context, req provider.VisionRequest) (provider.TextResponse, error) {
	body := chatRequest{Model: req.Model, Stream: false, Messages: []chatMessage{{
		Role: "user", Content: req.Prompt, Images: []string{base64.StdEncoding.EncodeToString(req.Image)},
	}}}
	if body.Model == "" {
		body.Model = a.visionModel
	}
	if req.MaxTokens > 0 {
		body.Options = &chatOptions{NumPredict: req.MaxTokens}
	}
	return a.chat(ctx, body)
}

func (a *Adapter) chat(ctx context.Context, body chatRequest) (provider.TextResponse, error) {
	var out chatResponse
	if err := a.do(ctx, http.MethodPost, "/api/chat", body, &out); err != nil {
		return provider.TextResponse{}, err
	}
	return textResponse(out), nil
}

func textResponse(out chatResponse) provider.TextResponse {
	finish := out.DoneReason
	var calls []task.ToolCall
	for _, c := range out.Message.ToolCalls {
		id := c.ID
		if id == "" {
			id = "call_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:24]
		}
		args := string(c.Function.Arguments)
		if args == "" || args == "null" {
			args = "{}"
		}
		calls = append(calls, task.ToolCall{ID: id, Type: "function", Function: task.FunctionCall{Name: c.Function.Name, Arguments: args}})
	}
	if len(calls) > 0 {
		finish = "tool_calls"
	}
	return provider.TextResponse{
		ToolCalls:    calls,
		Text:         out.Message.Content,
		Model:        out.Model,
		FinishReason: finish,
		Usage: provider.Usage{
			PromptTokens:     out.PromptEvalCount,
			CompletionTokens: out.EvalCount,
			TotalTokens:      out.PromptEvalCount + out.EvalCount,
		},
	}
}

// Embed implements provider.Embedder with POST /api/embed.
func (a *Adapter) Embed(ctx context.Context, req provider.EmbedRequest) (provider.EmbedResponse, error) {
	body := struct {
		Model      string   `json:"model"`
		Input      []string `json:"input"`
		Dimensions int      `json:"dimensions,omitempty"`
	}{Model: req.Model, Input: req.Input, Dimensions: req.Dimensions}
	if body.Model == "" {
		body.Model = a.embedModel
	}
	var out struct {
		Model           string      `json:"model"`
		Embeddings      [][]float64 `json:"embeddings"`
		PromptEvalCount int64       `json:"prompt_eval_count"`
	}
	if err := a.do(ctx, http.MethodPost, "/api/embed", body, &out); err != nil {
		return provider.EmbedResponse{}, err
	}
	if len(out.Embeddings) != len(req.Input) {
		return provider.EmbedResponse{}, &provider.Error{Provider: a.Name(), Kind: provider.KindBadResponse,
			Message: "the answer does not have one vector per input"}
	}
	return provider.EmbedResponse{Vectors: out.Embeddings, Model: out.Model,
		Usage: provider.Usage{PromptTokens: out.PromptEvalCount, TotalTokens: out.PromptEvalCount}}, nil
}

// Ping asks for the server's version.
func (a *Adapter) Ping(ctx context.Context) error {
	var out struct {
		Version string `json:"version"`
	}
	return a.do(ctx, http.MethodGet, "/api/version", nil, &out)
}

func (a *Adapter) do(ctx context.Context, method, path string, in, out any) error {
	res, err := a.send(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if err := json.NewDecoder(io.LimitReader(res.Body, maxAnswer)).Decode(out); err != nil {
		return a.readError(ctx, err)
	}
	return nil
}

// send makes one call and returns a successful answer for the caller to
// read and close.
func (a *Adapter) send(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		buf, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("ollama: encode request: %w", err)
		}
		body = bytes.NewReader(buf)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
	if err != nil {
		return nil, &provider.Error{Provider: a.Name(), Kind: provider.KindNotConfigured, Message: "invalid OLLAMA_BASE_URL"}
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := a.client.Do(req)
	if err != nil {
		return nil, provider.ErrorFromTransport(ctx, a.Name(), err)
	}
	if res.StatusCode >= 300 {
		defer res.Body.Close()
		return nil, provider.ErrorFromResponse(a.Name(), res)
	}
	return res, nil
}

// readError classifies a failure to read an answer.
func (a *Adapter) readError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return provider.ErrorFromTransport(ctx, a.Name(), ctx.Err())
	}
	return provider.Unreadable(a.Name(), err)
}
