package httpapi

import (
	"context"

	"github.com/siganteng/siganteng/internal/task"
)

type describeImageBody struct {
	task.DescribeImageInput
	_ struct{} `json:"-" additionalProperties:"true"`
}

type describeImageInput struct {
	SubmitHeaders
	Body describeImageBody
}

func (h *handlers) submitDescribeImage(ctx context.Context, in *describeImageInput) (*submitOutput, error) {
	in.options(&in.Body.Options)
	body := in.Body.DescribeImageInput
	return h.submit(ctx, in.SubmitHeaders, task.TypeDescribeImage, body, func() (*task.Record, error) {
		return h.deps.Tasks.SubmitDescribeImage(ctx, body)
	})
}

func (h *handlers) describeImage(ctx context.Context, in *describeImageInput) (*textOutput, error) {
	out, err := h.deps.Tasks.DescribeImage(ctx, in.Body.DescribeImageInput)
	if err != nil {
		return nil, h.problem(ctx, err)
	}
	return &textOutput{Body: out}, nil
}
