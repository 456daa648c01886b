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

func (h *handlers) readyz(ctx context.Context, _ *struct{}) (*readyOutput, error) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := h.deps.Ready(ctx); err != nil {
		return nil, h.problem(ctx, task.Unavailable("Redis does not answer", err))
	}
	out := &readyOutput{}
	out.Body.Status = "ok"
	// Open breakers do not make the API unready: tasks still queue, and
	// other deployments, or a later retry, serve them.
	for _, m := range h.deps.Tasks.Models(ctx) {
		for _, d := range m.Deployments {
			if d.Breaker == "open" {
				out.Body.OpenBreakers = append(out.Body.OpenBreakers, d.ID)
			}
		}
	}
	return out, nil
}

type readyOutput struct {
	Body struct {
		Status       string   `json:"status" example:"ok"`
		OpenBreakers []string `json:"open_breakers,omitempty" doc:"Routed deployments now skipped after repeated failures (see GET /models)."`
	}
}
