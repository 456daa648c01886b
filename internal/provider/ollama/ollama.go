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

	"github.com/siganteng/siganteng/internal/provider"
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
	Role    string   `json:"role"`
	Content string   `json:"content"`
	Images  []string `json:"images,omitempty"` // base64, for vision models
}

type chatOptions struct {
	NumPredict  int      `json:"num_predict,omitempty"`
	Temperature *float64 `json:"temperature,omitempty"`
}

type chatRequest struct {
	Model    string        `json:"model"`
	Messages []chatMessage `json:"messages"`
	Stream   bool          `json:"stream"`
	Options  *chatOptions  `json:"options,omitempty"`
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

// textBody is the chat request for req, not streamed.
func (a *Adapter) textBody(req provider.TextRequest) chatRequest {
	body := chatRequest{Model: req.Model, Stream: false}
	if body.Model == "" {
		body.Model = a.model
	}
	if req.System != "" {
		body.Messages = append(body.Messages, chatMessage{Role: "system", Content: req.System})
	}
	body.Messages = append(body.Messages, chatMessage{Role: "user", Content: req.Prompt})
	if req.MaxTokens > 0 || req.Temperature != nil {
		body.Options = &chatOptions{NumPredict: req.MaxTokens, Temperature: req.Temperature}
	}
	return body
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
	var text strings.Builder
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
		if chunk.Done {
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
	return provider.TextResponse{
		Text:         out.Message.Content,
		Model:        out.Model,
		FinishReason: out.DoneReason,
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
