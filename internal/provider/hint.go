package provider

import (
	"context"
	"errors"
)

// WithUnreachableHint wraps llm so that failing to reach its server at all
// (no HTTP answer) becomes a KindNotConfigured error carrying hint. It is for
// a provider chosen only because nothing else was configured: there, an
// unreachable server means "configure something", and retrying cannot help.
func WithUnreachableHint(llm LLM, hint string) LLM {
	return &hinted{LLM: llm, hint: hint}
}

type hinted struct {
	LLM
	hint string
}

func (h *hinted) GenerateText(ctx context.Context, req TextRequest) (TextResponse, error) {
	out, err := h.LLM.GenerateText(ctx, req)
	return out, h.explain(err)
}

// StreamText streams when the wrapped adapter can, and otherwise hands over
// the whole text at once.
func (h *hinted) StreamText(ctx context.Context, req TextRequest, onText func(string)) (TextResponse, error) {
	if s, ok := h.LLM.(TextStreamer); ok {
		out, err := s.StreamText(ctx, req, onText)
		return out, h.explain(err)
	}
	out, err := h.GenerateText(ctx, req)
	if err == nil && out.Text != "" {
		onText(out.Text)
	}
	return out, err
}

func (h *hinted) explain(err error) error { return withHint(h.hint, err) }

// withHint turns a failure to get any answer at all into a KindNotConfigured
// error that says hint; any other error passes as it is.
func withHint(hint string, err error) error {
	var perr *Error
	if errors.As(err, &perr) && perr.Kind == KindUnavailable && perr.StatusCode == 0 {
		return &Error{Provider: perr.Provider, Kind: KindNotConfigured, Message: hint + " (" + perr.Message + ")"}
	}
	return err
}

// Ping passes through to the wrapped adapter when it can ping.
func (h *hinted) Ping(ctx context.Context) error {
	if p, ok := h.LLM.(Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

// VisionWithUnreachableHint is WithUnreachableHint for describe_image.
func VisionWithUnreachableHint(v Vision, hint string) Vision {
	return &hintedVision{Vision: v, hint: hint}
}

type hintedVision struct {
	Vision
	hint string
}

func (h *hintedVision) DescribeImage(ctx context.Context, req VisionRequest) (TextResponse, error) {
	out, err := h.Vision.DescribeImage(ctx, req)
	return out, withHint(h.hint, err)
}

// EmbedderWithUnreachableHint is WithUnreachableHint for embed.
func EmbedderWithUnreachableHint(e Embedder, hint string) Embedder {
	return &hintedEmbedder{Embedder: e, hint: hint}
}

type hintedEmbedder struct {
	Embedder
	hint string
}

func (h *hintedEmbedder) Embed(ctx context.Context, req EmbedRequest) (EmbedResponse, error) {
	out, err := h.Embedder.Embed(ctx, req)
	return out, withHint(h.hint, err)
}
