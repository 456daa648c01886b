package huggingface

import (
	"bytes"
	"context"
	"encoding/json"
	"mime"
	"net/http"
	"strings"

	"github.com/siganteng/siganteng/internal/provider"
)

// DefaultTTSModel is Meta's MMS English voice; facebook/mms-tts-ind speaks
// Indonesian.
const DefaultTTSModel = "facebook/mms-tts-eng"

// TTS implements provider.TTS with the text-to-speech pipeline: POST
// {inference}/models/{model} with {"inputs": text} answers audio bytes in the
// model's own format. Each model is one voice, so the voice is the model.
type TTS struct {
	base   string
	token  string
	model  string
	client *http.Client
}

var _ provider.TTS = (*TTS)(nil)

// TTSConfig configures the adapter.
type TTSConfig struct {
	InferenceURL string // DefaultInferenceURL when empty
	Token        string
	DefaultModel string // DefaultTTSModel when empty
	HTTPClient   *http.Client
}

// NewTTS returns the adapter. It does no I/O.
func NewTTS(cfg TTSConfig) *TTS {
	if cfg.InferenceURL == "" {
		cfg.InferenceURL = DefaultInferenceURL
	}
	if cfg.DefaultModel == "" {
		cfg.DefaultModel = DefaultTTSModel
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	return &TTS{base: strings.TrimRight(cfg.InferenceURL, "/"), token: cfg.Token, model: cfg.DefaultModel, client: cfg.HTTPClient}
}

// Name implements provider.TTS.
func (a *TTS) Name() string { return "huggingface" }

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
	model := req.Model
	if model == "" {
		model = a.model
	}
	body, _ := json.Marshal(map[string]string{"inputs": req.Text})
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+"/models/"+escapeModel(model), bytes.NewReader(body))
	if err != nil {
		return provider.Audio{}, &provider.Error{Provider: a.Name(), Kind: provider.KindNotConfigured, Message: "invalid HF_INFERENCE_URL"}
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Authorization", "Bearer "+a.token)
	res, err := a.client.Do(hreq)
	if err != nil {
		return provider.Audio{}, provider.ErrorFromTransport(ctx, a.Name(), err, a.token)
	}
	if res.StatusCode >= 300 {
		defer res.Body.Close()
		return provider.Audio{}, provider.ErrorFromResponse(a.Name(), res, a.token)
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
