package httpapi

import (
	"context"

	"github.com/siganteng/siganteng/internal/task"
)

type embedBody struct {
	task.EmbedInput
	_ struct{} `json:"-" additionalProperties:"true"`
}

type embedInput struct {
	SubmitHeaders
	Body embedBody
}

type embedOutput struct {
	Body *task.EmbedResult
}

func (h *handlers) submitEmbed(ctx context.Context, in *embedInput) (*submitOutput, error) {
	in.options(&in.Body.Options)
	body := in.Body.EmbedInput
	return h.submit(ctx, in.SubmitHeaders, task.TypeEmbed, body, func() (*task.Record, error) {
		return h.deps.Tasks.SubmitEmbed(ctx, body)
	})
}

func (h *handlers) embed(ctx context.Context, in *embedInput) (*embedOutput, error) {
	out, err := h.deps.Tasks.Embed(ctx, in.Body.EmbedInput)
	if err != nil {
		return nil, h.problem(ctx, err)
	}
	return &embedOutput{Body: out}, nil
}
