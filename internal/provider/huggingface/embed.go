package huggingface

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/siganteng/siganteng/internal/provider"
)

// DefaultInferenceURL is the router's route to Hugging Face's own inference
// (hf-inference), which serves the task pipelines such as
// feature-extraction.
const DefaultInferenceURL = "https://router.huggingface.co/hf-inference"

// DefaultEmbedModel is a small sentence-embedding model hf-inference serves.
const DefaultEmbedModel = "sentence-transformers/all-MiniLM-L6-v2"

// maxAnswer bounds a pipeline answer.
const maxAnswer = 64 << 20

// Embedder implements provider.Embedder with the feature-extraction pipeline:
// POST {inference}/models/{model}/pipeline/feature-extraction with
// {"inputs": [...]} answers one vector per input.
type Embedder struct {
	base   string
	token  string
	model  string
	client *http.Client
}

var _ provider.Embedder = (*Embedder)(nil)

// EmbedConfig configures the Embedder.
type EmbedConfig struct {
	InferenceURL string // DefaultInferenceURL when empty
	Token        string
	DefaultModel string // DefaultEmbedModel when empty
	HTTPClient   *http.Client
}

// NewEmbedder returns the adapter. It does no I/O.
func NewEmbedder(cfg EmbedConfig) *Embedder {
	if cfg.InferenceURL == "" {
		cfg.InferenceURL = DefaultInferenceURL
	}
	if cfg.DefaultModel == "" {
		cfg.DefaultModel = DefaultEmbedModel
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	return &Embedder{base: strings.TrimRight(cfg.InferenceURL, "/"), token: cfg.Token, model: cfg.DefaultModel, client: cfg.HTTPClient}
}

// Name implements provider.Embedder.
func (e *Embedder) Name() string { return "huggingface" }

// Embed implements provider.Embedder.
func (e *Embedder) Embed(ctx context.Context, req provider.EmbedRequest) (provider.EmbedResponse, error) {
	model := req.Model
	if model == "" {
		model = e.model
	}
	if req.Dimensions > 0 {
		return provider.EmbedResponse{}, &provider.Error{Provider: e.Name(), Kind: provider.KindRejected,
			Message: "the feature-extraction pipeline cannot shorten vectors; leave dimensions out"}
	}
	body, _ := json.Marshal(map[string]any{"inputs": req.Input})
	path := "/models/" + escapeModel(model) + "/pipeline/feature-extraction"
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, e.base+path, bytes.NewReader(body))
	if err != nil {
		return provider.EmbedResponse{}, &provider.Error{Provider: e.Name(), Kind: provider.KindNotConfigured, Message: "invalid HF_INFERENCE_URL"}
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Authorization", "Bearer "+e.token)
	res, err := e.client.Do(hreq)
	if err != nil {
		return provider.EmbedResponse{}, provider.ErrorFromTransport(ctx, e.Name(), err, e.token)
	}
	defer res.Body.Close()
	if res.StatusCode >= 300 {
		return provider.EmbedResponse{}, provider.ErrorFromResponse(e.Name(), res, e.token)
	}
	var vectors [][]float64
	if err := json.NewDecoder(io.LimitReader(res.Body, maxAnswer)).Decode(&vectors); err != nil {
		if ctx.Err() != nil {
			return provider.EmbedResponse{}, provider.ErrorFromTransport(ctx, e.Name(), ctx.Err())
		}
		return provider.EmbedResponse{}, &provider.Error{Provider: e.Name(), Kind: provider.KindBadResponse,
			Message: fmt.Sprintf("the answer is not one vector per input (a model that does not pool tokens?): %v", err)}
	}
	if len(vectors) != len(req.Input) {
		return provider.EmbedResponse{}, &provider.Error{Provider: e.Name(), Kind: provider.KindBadResponse,
			Message: "the answer does not have one vector per input"}
	}
	return provider.EmbedResponse{Vectors: vectors, Model: model}, nil
}

// escapeModel keeps the "/" between owner and name and escapes the rest.
func escapeModel(model string) string {
	parts := strings.Split(model, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}
