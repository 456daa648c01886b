package httpapi

import (
	"context"
	"io"
	"net/http"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"github.com/siganteng/siganteng/internal/task"
)

// textToSpeech streams the provider's audio to the client as it arrives.
func (h *handlers) textToSpeech(ctx context.Context, in *kindInput[task.TextToSpeechInput]) (*huma.StreamResponse, error) {
	audio, err := h.deps.Tasks.TextToSpeech(ctx, in.Body)
	if err != nil {
		return nil, h.problem(ctx, err)
	}
	return &huma.StreamResponse{Body: func(hctx huma.Context) {
		defer audio.Body.Close()
		hctx.SetHeader("Content-Type", audio.ContentType)
		hctx.SetStatus(http.StatusOK)
		if _, err := io.Copy(hctx.BodyWriter(), audio.Body); err != nil {
			h.deps.Log.WarnContext(ctx, "speech stream cut short", "err", err)
		}
	}}, nil
}

// getArtifact serves the bytes with net/http's ServeContent: Content-Length,
// Range and conditional requests, read straight from the store.
func (h *handlers) getArtifact(ctx context.Context, in *getTaskInput) (*huma.StreamResponse, error) {
	art, obj, err := h.deps.Tasks.OpenArtifact(ctx, in.TaskID)
	if err != nil {
		return nil, h.problem(ctx, err)
	}
	return &huma.StreamResponse{Body: func(hctx huma.Context) {
		defer obj.Close()
		r, w := humago.Unwrap(hctx)
		w.Header().Set("Content-Type", art.ContentType)
		w.Header().Set("Cache-Control", "private, max-age=3600")
		http.ServeContent(w, r, "", obj.ModTime(), obj)
	}}, nil
}
