package huggingface

import (
	"bytes"
	"context"
	"encoding/json"
	"mime"

	"github.com/siganteng/siganteng/internal/provider"
)

// DefaultTTSModel is Meta's MMS English voice; facebook/mms-tts-ind speaks
// Indonesian.
const DefaultTTSModel = "facebook/mms-tts-eng"

// TTS implements provider.TTS with the text-to-speech pipeline: POST
// {inference}/models/{model} with {"inputs": text} answers audio bytes in the
// model's own format. Each model is one voice, so the voice is the model.
type TTS struct{ inference }

var _ provider.TTS = (*TTS)(nil)

// NewTTS returns the adapter. It does no I/O.
func NewTTS(cfg InferenceConfig) *TTS {
	return &TTS{newInference(cfg, DefaultTTSModel)}
}

// formats maps the media types the pipeline answers to format names.
var formats = map[string]string{
	"audio/flac": "flac", "audio/x-flac": "flac", "audio/wav": "wav", "audio/x-wav": "wav", "audio/wave": "wav",
	"audio/mpeg": "mp3", "audio/ogg": "opus",
}

// Synthesize implements provider.TTS, streaming the answer.
func (a *TTS) Synthesize(ctx context.Context, req provider.SpeechRequest) (provider.Audio, error) {
	if req.Voice != "" {
		return provider.Audio{}, &provider.Error{Provider: a.Name(), Kind: provider.KindRejected,
			Message: "Hugging Face speech models have one voice each: leave voice out and choose the model (facebook/mms-tts-ind speaks Indonesian)"}
	}
	if req.Speed != 0 && req.Speed != 1 {
		return provider.Audio{}, &provider.Error{Provider: a.Name(), Kind: provider.KindRejected, Message: "the text-to-speech pipeline has no speed setting"}
	}
	model := a.modelOr(req.Model)
	body, _ := json.Marshal(map[string]string{"inputs": req.Text})
	res, err := a.post(ctx, model, "", "application/json", bytes.NewReader(body))
	if err != nil {
		return provider.Audio{}, err
	}
	mediaType, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
	format, ok := formats[mediaType]
	if !ok {
		res.Body.Close()
		return provider.Audio{}, &provider.Error{Provider: a.Name(), Kind: provider.KindBadResponse,
			Message: "the answer is " + mediaType + ", not audio (is " + model + " a text-to-speech model?)"}
	}
	if req.Format != "" && req.Format != format {
		res.Body.Close()
		return provider.Audio{}, &provider.Error{Provider: a.Name(), Kind: provider.KindRejected,
			Message: model + " makes " + format + ", not " + req.Format + "; leave format out"}
	}
	return provider.Audio{Body: res.Body, ContentType: provider.AudioContentType(format), Format: format, Model: model}, nil
}
