package openai

import (
	"context"
	"encoding/base64"

	"github.com/openai/openai-go/v3"

	"github.com/siganteng/siganteng/internal/provider"
)

// DefaultVisionModel is used when VISION_MODEL and the request name none.
const DefaultVisionModel = "gpt-4o-mini"

var _ provider.Vision = (*Adapter)(nil)

// DescribeImage implements provider.Vision with one chat completion whose user
// message holds the prompt and the image as a data URL: the image was
// fetched and checked by us, so the provider never fetches a client's URL.
func (a *Adapter) DescribeImage(ctx context.Context, req provider.VisionRequest) (provider.TextResponse, error) {
	model := req.Model
	if model == "" {
		model = a.visionModel
	}
	dataURL := "data:" + req.MediaType + ";base64," + base64.StdEncoding.EncodeToString(req.Image)
	parts := []openai.ChatCompletionContentPartUnionParam{
		openai.TextContentPart(req.Prompt),
		openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: dataURL}),
	}
	params := openai.ChatCompletionNewParams{
		Model:    model,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(parts)},
	}
	a.setMaxTokens(&params, req.MaxTokens)
	return a.complete(ctx, params)
}
