package httpapi

import (
	"context"
	"time"

	"github.com/siganteng/siganteng/internal/task"
)

type healthOutput struct {
	Body struct {
		Status string `json:"status" example:"ok"`
	}
}

func (h *handlers) healthz(context.Context, *struct{}) (*healthOutput, error) {
	out := &healthOutput{}
	out.Body.Status = "ok"
	return out, nil
}

// readyTimeout keeps /readyz quick when Redis hangs instead of refusing.
const readyTimeout = 2 * time.Second

func (h *handlers) readyz(ctx context.Context, _ *struct{}) (*healthOutput, error) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := h.deps.Ready(ctx); err != nil {
		return nil, h.problem(ctx, task.Unavailable("Redis does not answer", err))
	}
	out := &healthOutput{}
	out.Body.Status = "ok"
	return out, nil
}
