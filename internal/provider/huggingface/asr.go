package huggingface

import (
	"context"
	"encoding/json"
	"io"
	"strings"

	"github.com/siganteng/siganteng/internal/provider"
)

// DefaultASRModel is the speech recognition model used by default.
const DefaultASRModel = "openai/whisper-large-v3"

// ASR implements provider.STT with the automatic-speech-recognition
// pipeline: POST {inference}/models/{model} with the audio bytes as the body
// answers {"text": "..."}.
type ASR struct{ inference }

var _ provider.STT = (*ASR)(nil)

// NewASR returns the adapter. It does no I/O.
func NewASR(cfg InferenceConfig) *ASR {
	return &ASR{newInference(cfg, DefaultASRModel)}
}

// Transcribe implements provider.STT, streaming the audio to the provider.
func (a *ASR) Transcribe(ctx context.Context, req provider.TranscribeRequest) (provider.Transcript, error) {
	model := a.modelOr(req.Model)
	res, err := a.post(ctx, model, "", req.MediaType, req.Audio)
	if err != nil {
		return provider.Transcript{}, err
	}
	defer res.Body.Close()
	var out struct {
		Text   string `json:"text"`
		Chunks []struct {
			Text      string    `json:"text"`
			Timestamp []float64 `json:"timestamp"`
		} `json:"chunks"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, maxAnswer)).Decode(&out); err != nil {
		return provider.Transcript{}, provider.Unreadable(a.Name(), err)
	}
	t := provider.Transcript{Text: strings.TrimSpace(out.Text), Model: model}
	for _, c := range out.Chunks {
		if len(c.Timestamp) == 2 {
			t.Segments = append(t.Segments, provider.Segment{Start: c.Timestamp[0], End: c.Timestamp[1], Text: c.Text})
		}
	}
	return t, nil
}
