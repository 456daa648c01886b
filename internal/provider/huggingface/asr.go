package huggingface

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/siganteng/siganteng/internal/provider"
)

// DefaultASRModel is the speech recognition model used by default.
const DefaultASRModel = "openai/whisper-large-v3"

// ASR implements provider.STT with the automatic-speech-recognition
// pipeline: POST {inference}/models/{model} with the audio bytes as the body
// answers {"text": "..."}.
type ASR struct {
	base   string
	token  string
	model  string
	client *http.Client
}

var _ provider.STT = (*ASR)(nil)

// ASRConfig configures the ASR adapter.
type ASRConfig struct {
	InferenceURL string // DefaultInferenceURL when empty
	Token        string
	DefaultModel string // DefaultASRModel when empty
	HTTPClient   *http.Client
}

// NewASR returns the adapter. It does no I/O.
func NewASR(cfg ASRConfig) *ASR {
	if cfg.InferenceURL == "" {
		cfg.InferenceURL = DefaultInferenceURL
	}
	if cfg.DefaultModel == "" {
		cfg.DefaultModel = DefaultASRModel
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	return &ASR{base: strings.TrimRight(cfg.InferenceURL, "/"), token: cfg.Token, model: cfg.DefaultModel, client: cfg.HTTPClient}
}

// Name implements provider.STT.
func (a *ASR) Name() string { return "huggingface" }

// Transcribe implements provider.STT, streaming the audio to the provider.
func (a *ASR) Transcribe(ctx context.Context, req provider.TranscribeRequest) (provider.Transcript, error) {
	model := req.Model
	if model == "" {
		model = a.model
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+"/models/"+escapeModel(model), req.Audio)
	if err != nil {
		return provider.Transcript{}, &provider.Error{Provider: a.Name(), Kind: provider.KindNotConfigured, Message: "invalid HF_INFERENCE_URL"}
	}
	hreq.Header.Set("Content-Type", req.MediaType)
	hreq.Header.Set("Authorization", "Bearer "+a.token)
	res, err := a.client.Do(hreq)
	if err != nil {
		return provider.Transcript{}, provider.ErrorFromTransport(ctx, a.Name(), err, a.token)
	}
	defer res.Body.Close()
	if res.StatusCode >= 300 {
		return provider.Transcript{}, provider.ErrorFromResponse(a.Name(), res, a.token)
	}
	var out struct {
		Text   string `json:"text"`
		Chunks []struct {
			Text      string    `json:"text"`
			Timestamp []float64 `json:"timestamp"`
		} `json:"chunks"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, maxAnswer)).Decode(&out); err != nil {
		return provider.Transcript{}, &provider.Error{Provider: a.Name(), Kind: provider.KindBadResponse, Message: "unreadable answer: " + err.Error()}
	}
	t := provider.Transcript{Text: strings.TrimSpace(out.Text), Model: model}
	for _, c := range out.Chunks {
		if len(c.Timestamp) == 2 {
			t.Segments = append(t.Segments, provider.Segment{Start: c.Timestamp[0], End: c.Timestamp[1], Text: c.Text})
		}
	}
	return t, nil
}
