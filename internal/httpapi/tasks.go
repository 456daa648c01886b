package httpapi

import (
	"context"

	"github.com/siganteng/siganteng/internal/task"
)

type generateTextBody struct {
	task.GenerateTextInput
	// Clients of the original (Pydantic) API may send fields we do not use;
	// they are ignored, as Pydantic ignored them.
	_ struct{} `json:"-" additionalProperties:"true"`
}

type generateTextInput struct {
	Body generateTextBody
}

type submitOutput struct {
	Location string `header:"Location" doc:"The task's status URL."`
	Body     *task.Record
}

func (h *handlers) submitGenerateText(ctx context.Context, in *generateTextInput) (*submitOutput, error) {
	rec, err := h.deps.Tasks.SubmitGenerateText(ctx, in.Body.GenerateTextInput)
	if err != nil {
		return nil, h.problem(ctx, err)
	}
	return &submitOutput{Location: "/background/tasks/" + rec.ID, Body: rec}, nil
}

type getTaskInput struct {
	TaskID string `path:"task_id" maxLength:"64" doc:"The task_id from the submit answer."`
}

type recordOutput struct {
	Body *task.Record
}

func (h *handlers) getTask(ctx context.Context, in *getTaskInput) (*recordOutput, error) {
	rec, err := h.deps.Tasks.Get(ctx, in.TaskID)
	if err != nil {
		return nil, h.problem(ctx, err)
	}
	return &recordOutput{Body: rec}, nil
}

func (h *handlers) cancelTask(ctx context.Context, in *getTaskInput) (*recordOutput, error) {
	rec, err := h.deps.Tasks.Cancel(ctx, in.TaskID)
	if err != nil {
		return nil, h.problem(ctx, err)
	}
	return &recordOutput{Body: rec}, nil
}

type textOutput struct {
	Body *task.TextResult
}

func (h *handlers) generateText(ctx context.Context, in *generateTextInput) (*textOutput, error) {
	out, err := h.deps.Tasks.GenerateText(ctx, in.Body.GenerateTextInput)
	if err != nil {
		return nil, h.problem(ctx, err)
	}
	return &textOutput{Body: out}, nil
}
