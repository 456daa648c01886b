package providers_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/providers"
	"github.com/siganteng/siganteng/internal/task"
)

// Every provider builds, for every kind it says it serves, an adapter that
// does that kind of work, with a default model; and nothing else claims it.
func TestTheRegistryBuildsWhatItPromises(t *testing.T) {
	t.Parallel()
	works := map[task.Type]func(any) bool{
		task.TypeGenerateText:  func(a any) bool { _, ok := a.(provider.LLM); return ok },
		task.TypeDescribeImage: func(a any) bool { _, ok := a.(provider.Vision); return ok },
		task.TypeEmbed:         func(a any) bool { _, ok := a.(provider.Embedder); return ok },
		task.TypeTextToSpeech:  func(a any) bool { _, ok := a.(provider.TTS); return ok },
		task.TypeSpeechToText:  func(a any) bool { _, ok := a.(provider.STT); return ok },
	}
	require.Equal(t, []string{"openai", "huggingface", "ollama", "espeak"}, providers.Names())
	for _, spec := range providers.All {
		require.NotEmpty(t, spec.Models, spec.Name)
		for kind, model := range spec.Models {
			require.NotEmpty(t, model, "%s has a default model for %s", spec.Name, kind)
			a := spec.New(providers.Settings{BaseURL: "http://127.0.0.1:1", InferenceURL: "http://127.0.0.1:1", HTTPClient: http.DefaultClient}, kind)
			require.True(t, works[kind](a), "%s's adapter for %s does %s", spec.Name, kind, kind)
			require.True(t, providers.Serves(spec.Name, kind))
		}
	}
	require.False(t, providers.Serves("ollama", task.TypeTextToSpeech))
	require.False(t, providers.Serves("azure", task.TypeGenerateText))
	_, ok := providers.Lookup("azure")
	require.False(t, ok)
}
