package openai

import (
	"context"
	"sort"

	"github.com/openai/openai-go/v3"

	"github.com/siganteng/siganteng/internal/provider"
)

// DefaultEmbedModel is used when EMBED_MODEL and the request name none.
const DefaultEmbedModel = "text-embedding-3-small"

var _ provider.Embedder = (*Adapter)(nil)

// Embed implements provider.Embedder with POST /embeddings.
func (a *Adapter) Embed(ctx context.Context, req provider.EmbedRequest) (provider.EmbedResponse, error) {
	model := req.Model
	if model == "" {
		model = a.embedModel
	}
	params := openai.EmbeddingNewParams{
		Input:          openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: req.Input},
		Model:          model,
		EncodingFormat: openai.EmbeddingNewParamsEncodingFormatFloat,
	}
	if req.Dimensions > 0 {
		params.Dimensions = openai.Int(int64(req.Dimensions))
	}
	res, err := a.client.Embeddings.New(ctx, params)
	if err != nil {
		return provider.EmbedResponse{}, a.transportError(ctx, err)
	}
	if len(res.Data) != len(req.Input) {
		return provider.EmbedResponse{}, &provider.Error{Provider: a.name, Kind: provider.KindBadResponse,
			Message: "the answer does not have one vector per input"}
	}
	sort.Slice(res.Data, func(i, j int) bool { return res.Data[i].Index < res.Data[j].Index })
	out := provider.EmbedResponse{Model: res.Model, Vectors: make([][]float64, len(res.Data)),
		Usage: provider.Usage{PromptTokens: res.Usage.PromptTokens, TotalTokens: res.Usage.TotalTokens}}
	for i, d := range res.Data {
		out.Vectors[i] = d.Embedding
	}
	return out, nil
}
