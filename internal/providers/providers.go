// Package providers is the one table of the providers SIGANTENG can call:
// for each, the kinds of work it serves, its default model for each, and how
// to build its adapter for a kind. The environment's configuration and the
// routing file both build their adapters, and check what a provider can
// serve, from it.
package providers

import (
	"net/http"
	"slices"
	"time"

	"github.com/siganteng/siganteng/internal/provider/espeak"
	"github.com/siganteng/siganteng/internal/provider/huggingface"
	"github.com/siganteng/siganteng/internal/provider/ollama"
	"github.com/siganteng/siganteng/internal/provider/openai"
	"github.com/siganteng/siganteng/internal/task"
)

// Settings are what an adapter is built with.
type Settings struct {
	BaseURL      string // the provider's API (OpenAI-compatible chat for Hugging Face)
	InferenceURL string // Hugging Face's task pipelines (embed, speech)
	APIKey       string
	Model        string // "" for the kind's default
	HTTPClient   *http.Client
	Timeout      time.Duration // espeak-ng's time limit
}

// Spec is one provider.
type Spec struct {
	Name string
	// Models are the kinds it serves, each with its default model.
	Models map[task.Type]string
	// New builds its adapter for kind, which it must serve: the value
	// implements that kind's provider interface.
	New func(s Settings, kind task.Type) any
}

// Serves reports whether the provider can do kind.
func (s Spec) Serves(kind task.Type) bool {
	_, ok := s.Models[kind]
	return ok
}

// All are the providers, in the order help texts name them.
var All = []Spec{
	{Name: "openai", Models: map[task.Type]string{
		task.TypeGenerateText: openai.DefaultModel, task.TypeDescribeImage: openai.DefaultVisionModel,
		task.TypeEmbed: openai.DefaultEmbedModel, task.TypeTextToSpeech: openai.DefaultSpeechModel,
		task.TypeSpeechToText: openai.DefaultTranscribeModel,
	}, New: newOpenAI},
	{Name: "huggingface", Models: map[task.Type]string{
		task.TypeGenerateText: huggingface.DefaultModel, task.TypeDescribeImage: huggingface.DefaultVisionModel,
		task.TypeEmbed: huggingface.DefaultEmbedModel, task.TypeTextToSpeech: huggingface.DefaultTTSModel,
		task.TypeSpeechToText: huggingface.DefaultASRModel,
	}, New: newHuggingFace},
	{Name: "ollama", Models: map[task.Type]string{
		task.TypeGenerateText: ollama.DefaultModel, task.TypeDescribeImage: ollama.DefaultVisionModel,
		task.TypeEmbed: ollama.DefaultEmbedModel,
	}, New: newOllama},
	{Name: "espeak", Models: map[task.Type]string{task.TypeTextToSpeech: "espeak-ng"}, New: newEspeak},
}

// Lookup finds a provider by name.
func Lookup(name string) (Spec, bool) {
	i := slices.IndexFunc(All, func(s Spec) bool { return s.Name == name })
	if i < 0 {
		return Spec{}, false
	}
	return All[i], true
}

// Serves reports whether the provider named can do kind; what the routing
// file checks each deployment against.
func Serves(name string, kind task.Type) bool {
	s, ok := Lookup(name)
	return ok && s.Serves(kind)
}

func newOpenAI(s Settings, kind task.Type) any {
	c := openai.Config{BaseURL: s.BaseURL, APIKey: s.APIKey, HTTPClient: s.HTTPClient}
	switch kind {
	case task.TypeDescribeImage:
		c.VisionModel = s.Model
	case task.TypeEmbed:
		c.EmbedModel = s.Model
	case task.TypeTextToSpeech:
		c.SpeechModel = s.Model
	case task.TypeSpeechToText:
		c.TranscribeModel = s.Model
	default:
		c.DefaultModel = s.Model
	}
	return openai.New(c)
}

func newHuggingFace(s Settings, kind task.Type) any {
	inference := huggingface.InferenceConfig{InferenceURL: s.InferenceURL, Token: s.APIKey, DefaultModel: s.Model, HTTPClient: s.HTTPClient}
	switch kind {
	case task.TypeEmbed:
		return huggingface.NewEmbedder(inference)
	case task.TypeSpeechToText:
		return huggingface.NewASR(inference)
	case task.TypeTextToSpeech:
		return huggingface.NewTTS(inference)
	case task.TypeDescribeImage:
		return huggingface.New(huggingface.Config{BaseURL: s.BaseURL, Token: s.APIKey, VisionModel: s.Model, HTTPClient: s.HTTPClient})
	}
	return huggingface.New(huggingface.Config{BaseURL: s.BaseURL, Token: s.APIKey, DefaultModel: s.Model, HTTPClient: s.HTTPClient})
}

func newOllama(s Settings, kind task.Type) any {
	c := ollama.Config{BaseURL: s.BaseURL, HTTPClient: s.HTTPClient}
	switch kind {
	case task.TypeDescribeImage:
		c.VisionModel = s.Model
	case task.TypeEmbed:
		c.EmbedModel = s.Model
	default:
		c.DefaultModel = s.Model
	}
	return ollama.New(c)
}

func newEspeak(s Settings, _ task.Type) any { return espeak.New(espeak.Config{Timeout: s.Timeout}) }

// Names are the providers' names.
func Names() []string {
	out := make([]string, len(All))
	for i, s := range All {
		out[i] = s.Name
	}
	return out
}
