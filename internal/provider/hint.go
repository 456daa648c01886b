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
	var perr *Error
	if errors.As(err, &perr) && perr.Kind == KindUnavailable && perr.StatusCode == 0 {
		return out, &Error{Provider: perr.Provider, Kind: KindNotConfigured, Message: h.hint + " (" + perr.Message + ")"}
	}
	return out, err
}

// Ping passes through to the wrapped adapter when it can ping.
func (h *hinted) Ping(ctx context.Context) error {
	if p, ok := h.LLM.(Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}
