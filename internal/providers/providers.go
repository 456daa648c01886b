// Package providers is the one table of the providers SIGANTENG can call:
// for each, the kinds of work it serves, its default model for each, the
// credential it needs, and how to build its adapter for a kind. The
// environment's configuration (which provider each kind of work uses, see
// Choose) and the routing file both build their adapters, and check what a
// provider can serve, from it.
package providers

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
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
	// Credential is the environment variable that holds its key; "" for a
	// local provider, which needs none.
	Credential string
	// KeyRequired reports whether the provider cannot be called with s
	// without a key (OpenAI's own API cannot; an OpenAI-compatible server
	// at another address may); nil for never.
	KeyRequired func(s Settings) bool
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
	}, New: newOpenAI, Credential: "OPENAI_API_KEY",
		KeyRequired: func(s Settings) bool { return s.BaseURL == "" || s.BaseURL == openai.DefaultBaseURL }},
	{Name: "huggingface", Models: map[task.Type]string{
		task.TypeGenerateText: huggingface.DefaultModel, task.TypeDescribeImage: huggingface.DefaultVisionModel,
		task.TypeEmbed: huggingface.DefaultEmbedModel, task.TypeTextToSpeech: huggingface.DefaultTTSModel,
		task.TypeSpeechToText: huggingface.DefaultASRModel,
	}, New: newHuggingFace, Credential: "HF_TOKEN",
		KeyRequired: func(Settings) bool { return true }},
	{Name: "ollama", Models: map[task.Type]string{
		task.TypeGenerateText: ollama.DefaultModel, task.TypeDescribeImage: ollama.DefaultVisionModel,
		task.TypeEmbed: ollama.DefaultEmbedModel,
	}, New: newOllama},
	{Name: "espeak", Models: map[task.Type]string{task.TypeTextToSpeech: "espeak-ng"}, New: newEspeak},
}

// Named is the provider the environment names for one kind of work.
type Named struct {
	Variable string // the environment variable, for errors: LLM_PROVIDER
	Provider string // "" where it is unset
}

// Choice is the provider the environment gives one kind of work.
type Choice struct {
	Provider string // "" for none: no provider can do the kind
	// Fallback is true when a local provider was taken only because no
	// provider was named and none has a key: an unreachable one then
	// means "configure something".
	Fallback bool
}

// Choose picks the provider of each kind of work from the environment.
// named gives each kind's setting; settings gives what a provider would be
// built with, its key included. For each kind, in this order:
//
//  1. the provider named for the kind, which must serve it and have the
//     key it needs;
//  2. for describe_image and embed, the one named for generate_text, where
//     it serves them (one setting moves all text work);
//  3. the first provider of All whose key is set and that serves the kind;
//  4. the first local provider (no credential) that serves it, a Fallback;
//  5. none.
//
// Every problem is reported at once, naming the variable.
func Choose(named map[task.Type]Named, settings func(provider string) Settings) (map[task.Type]Choice, error) {
	out := make(map[task.Type]Choice, len(task.Types))
	var errs []error
	for _, kind := range task.Types {
		n := named[kind]
		if n.Provider != "" {
			if err := check(n, kind, settings); err != nil {
				errs = append(errs, err)
			}
			out[kind] = Choice{Provider: n.Provider}
			continue
		}
		if llm := named[task.TypeGenerateText].Provider; (kind == task.TypeDescribeImage || kind == task.TypeEmbed) && Serves(llm, kind) {
			out[kind] = Choice{Provider: llm}
			continue
		}
		out[kind] = fallback(kind, settings)
	}
	return out, errors.Join(errs...)
}

func check(n Named, kind task.Type, settings func(string) Settings) error {
	spec, ok := Lookup(n.Provider)
	if !ok || !spec.Serves(kind) {
		var serving []string
		for _, s := range All {
			if s.Serves(kind) {
				serving = append(serving, s.Name)
			}
		}
		return fmt.Errorf("%s: want %s for %s, got %q", n.Variable, strings.Join(serving, ", "), kind, n.Provider)
	}
	if spec.KeyRequired != nil && settings(spec.Name).APIKey == "" && spec.KeyRequired(settings(spec.Name)) {
		return fmt.Errorf("%s: %s=%s needs %s", spec.Credential, n.Variable, n.Provider, spec.Credential)
	}
	return nil
}

func fallback(kind task.Type, settings func(string) Settings) Choice {
	for _, s := range All {
		if s.Credential != "" && s.Serves(kind) && settings(s.Name).APIKey != "" {
			return Choice{Provider: s.Name}
		}
	}
	for _, s := range All {
		if s.Credential == "" && s.Serves(kind) {
			return Choice{Provider: s.Name, Fallback: true}
		}
	}
	return Choice{}
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
