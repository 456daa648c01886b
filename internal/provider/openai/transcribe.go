package openai

import (
	"context"

	"github.com/openai/openai-go/v3"

	"github.com/siganteng/siganteng/internal/provider"
)

// DefaultTranscribeModel is used when STT_MODEL and the request name none.
// whisper-1 is the model that returns timed segments.
const DefaultTranscribeModel = "whisper-1"

var _ provider.STT = (*Adapter)(nil)

// Transcribe implements provider.STT with POST /audio/transcriptions, a
// multipart upload streamed from req.Audio.
func (a *Adapter) Transcribe(ctx context.Context, req provider.TranscribeRequest) (provider.Transcript, error) {
	model := req.Model
	if model == "" {
		model = a.transcribeModel
	}
	params := openai.AudioTranscriptionNewParams{
		File:           openai.File(req.Audio, req.Filename, req.MediaType),
		Model:          model,
		ResponseFormat: openai.AudioResponseFormatJSON,
	}
	if model == "whisper-1" {
		params.ResponseFormat = openai.AudioResponseFormatVerboseJSON // only whisper-1 gives segments
	}
	if req.Language != "" {
		params.Language = openai.String(req.Language)
	}
	if req.Prompt != "" {
		params.Prompt = openai.String(req.Prompt)
	}
	res, err := a.client.Audio.Transcriptions.New(ctx, params)
	if err != nil {
		return provider.Transcript{}, a.transportError(ctx, err)
	}
	out := provider.Transcript{Text: res.Text, Language: res.Language, Duration: res.Duration, Model: model}
	for _, s := range res.Segments {
		out.Segments = append(out.Segments, provider.Segment{Start: s.Start, End: s.End, Text: s.Text})
	}
	return out, nil
}
