package service

import (
	"context"

	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/task"
)

// SubmitEmbed validates in, records a PENDING task and enqueues it.
func (s *Service) SubmitEmbed(ctx context.Context, in task.EmbedInput) (*task.Record, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	return s.submit(ctx, task.TypeEmbed, in, in.Summary())
}

// Embed runs embed now, bounded by the sync timeout.
func (s *Service) Embed(ctx context.Context, in task.EmbedInput) (*task.EmbedResult, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	return syncCall(s, ctx, task.TypeEmbed, in, func(ctx context.Context) (*task.EmbedResult, error) { return s.embed(ctx, in) })
}

// embedKind runs a queued embed as the synchronous call does.
var embedKind = runs(task.TypeEmbed, func(p Providers) named { return p.Embedder },
	func(s *Service, ctx context.Context, _ string, in task.EmbedInput, _ Progress) (any, error) {
		return s.embed(ctx, in)
	})

func (s *Service) embed(ctx context.Context, in task.EmbedInput) (*task.EmbedResult, error) {
	e := s.deps.Providers.Embedder
	req := provider.EmbedRequest{Input: in.Input, Model: in.Model}
	if in.Dimensions != nil {
		req.Dimensions = *in.Dimensions
	}
	out, err := e.Embed(ctx, req)
	if err != nil {
		return nil, err
	}
	res := &task.EmbedResult{Vectors: out.Vectors, Model: out.Model, Provider: servedBy(out.Route, e), Route: out.Route,
		Usage: task.Usage{PromptTokens: out.Usage.PromptTokens, TotalTokens: out.Usage.TotalTokens}}
	if len(out.Vectors) > 0 {
		res.Dimensions = len(out.Vectors[0])
	}
	return res, nil
}
