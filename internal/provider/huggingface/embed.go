package huggingface

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/siganteng/siganteng/internal/provider"
)

// DefaultEmbedModel is a small sentence-embedding model hf-inference serves.
const DefaultEmbedModel = "sentence-transformers/all-MiniLM-L6-v2"

// Embedder implements provider.Embedder with the feature-extraction pipeline:
// POST {inference}/models/{model}/pipeline/feature-extraction with
// {"inputs": [...]} answers one vector per input.
type Embedder struct{ inference }

var _ provider.Embedder = (*Embedder)(nil)

// NewEmbedder returns the adapter. It does no I/O.
func NewEmbedder(cfg InferenceConfig) *Embedder {
	return &Embedder{newInference(cfg, DefaultEmbedModel)}
}

// Embed implements provider.Embedder.
func (e *Embedder) Embed(ctx context.Context, req provider.EmbedRequest) (provider.EmbedResponse, error) {
	if req.Dimensions > 0 {
		return provider.EmbedResponse{}, &provider.Error{Provider: e.Name(), Kind: provider.KindRejected,
			Message: "the feature-extraction pipeline cannot shorten vectors; leave dimensions out"}
	}
	model := e.modelOr(req.Model)
	body, _ := json.Marshal(map[string]any{"inputs": req.Input})
	res, err := e.post(ctx, model, "/pipeline/feature-extraction", "application/json", bytes.NewReader(body))
	if err != nil {
		return provider.EmbedResponse{}, err
	}
	defer res.Body.Close()
	var vectors [][]float64
	if err := json.NewDecoder(io.LimitReader(res.Body, maxAnswer)).Decode(&vectors); err != nil {
		if ctx.Err() != nil {
			return provider.EmbedResponse{}, provider.ErrorFromTransport(ctx, e.Name(), ctx.Err())
		}
		if errors.Is(err, provider.ErrResponseTooLarge) {
			return provider.EmbedResponse{}, provider.TooLarge(e.Name())
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
