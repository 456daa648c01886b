package openai

import (
	"context"

	"github.com/openai/openai-go/v3"

	"github.com/siganteng/siganteng/internal/provider"
)

// DefaultSpeechModel and DefaultVoice are used when TTS_MODEL and the
// request name none.
const (
	DefaultSpeechModel = "gpt-4o-mini-tts"
	DefaultVoice       = "alloy"
	defaultFormat      = "mp3"
)

var _ provider.TTS = (*Adapter)(nil)

// Synthesize implements provider.TTS with POST /audio/speech; the audio is
// streamed from the provider, not buffered.
func (a *Adapter) Synthesize(ctx context.Context, req provider.SpeechRequest) (provider.Audio, error) {
	out := provider.Audio{Model: req.Model, Voice: req.Voice, Format: req.Format}
	if out.Model == "" {
		out.Model = a.speechModel
	}
	if out.Voice == "" {
		out.Voice = DefaultVoice
	}
	if out.Format == "" {
		out.Format = defaultFormat
	}
	params := openai.AudioSpeechNewParams{
		Input:          req.Text,
		Model:          out.Model,
		Voice:          openai.AudioSpeechNewParamsVoiceUnion{OfString: openai.String(out.Voice)},
		ResponseFormat: openai.AudioSpeechNewParamsResponseFormat(out.Format),
	}
	if req.Speed > 0 {
		params.Speed = openai.Float(req.Speed)
	}
	res, err := a.client.Audio.Speech.New(ctx, params)
	if err != nil {
		return provider.Audio{}, a.transportError(ctx, err)
	}
	out.Body = res.Body
	out.ContentType = provider.AudioContentType(out.Format)
	return out, nil
}
