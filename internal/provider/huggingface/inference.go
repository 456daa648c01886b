package huggingface

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/siganteng/siganteng/internal/provider"
)

// DefaultInferenceURL is the router's route to Hugging Face's own inference
// (hf-inference), which serves the task pipelines: feature-extraction,
// automatic-speech-recognition, text-to-speech.
const DefaultInferenceURL = "https://router.huggingface.co/hf-inference"

// maxAnswer bounds a pipeline answer read into memory.
const maxAnswer = 64 << 20

// InferenceConfig configures an adapter on the task pipelines.
type InferenceConfig struct {
	InferenceURL string // DefaultInferenceURL when empty
	Token        string
	DefaultModel string // the adapter's own default when empty
	HTTPClient   *http.Client
}

// inference is what the pipeline adapters share: where to post, with which
// token, and how to read a failure.
type inference struct {
	base   string
	token  string
	model  string
	client *http.Client
}

func newInference(cfg InferenceConfig, defaultModel string) inference {
	if cfg.InferenceURL == "" {
		cfg.InferenceURL = DefaultInferenceURL
	}
	if cfg.DefaultModel == "" {
		cfg.DefaultModel = defaultModel
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	return inference{base: strings.TrimRight(cfg.InferenceURL, "/"), token: cfg.Token, model: cfg.DefaultModel, client: cfg.HTTPClient}
}

// Name is the provider's name for every pipeline adapter.
func (inference) Name() string { return "huggingface" }

func (in inference) modelOr(model string) string {
	if model == "" {
		return in.model
	}
	return model
}

// post sends body to {base}/models/{model}{suffix} and returns a 2xx
// answer, whose body the caller closes, or a *provider.Error.
func (in inference) post(ctx context.Context, model, suffix, contentType string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.base+"/models/"+escapeModel(model)+suffix, body)
	if err != nil {
		return nil, &provider.Error{Provider: in.Name(), Kind: provider.KindNotConfigured, Message: "invalid HF_INFERENCE_URL"}
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+in.token)
	res, err := in.client.Do(req)
	if err != nil {
		return nil, provider.ErrorFromTransport(ctx, in.Name(), err, in.token)
	}
	if res.StatusCode >= 300 {
		defer res.Body.Close()
		return nil, provider.ErrorFromResponse(in.Name(), res, in.token)
	}
	return res, nil
}

// escapeModel keeps the "/" between owner and name and escapes the rest.
func escapeModel(model string) string {
	parts := strings.Split(model, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}
