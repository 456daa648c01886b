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

// keys gives each provider the settings the environment would: a key where
// keyed names it, OpenAI at baseURL.
func keys(baseURL string, keyed ...string) func(string) providers.Settings {
	return func(name string) providers.Settings {
		s := providers.Settings{}
		if name == "openai" {
			s.BaseURL = baseURL
		}
		for _, k := range keyed {
			if k == name {
				s.APIKey = "key-of-" + name
			}
		}
		return s
	}
}

func named(kv ...string) map[task.Type]providers.Named {
	vars := map[task.Type]string{task.TypeGenerateText: "LLM_PROVIDER", task.TypeDescribeImage: "VISION_PROVIDER",
		task.TypeEmbed: "EMBED_PROVIDER", task.TypeTextToSpeech: "TTS_PROVIDER", task.TypeSpeechToText: "STT_PROVIDER"}
	out := map[task.Type]providers.Named{}
	for kind, v := range vars {
		out[kind] = providers.Named{Variable: v}
	}
	for i := 0; i < len(kv); i += 2 {
		kind := task.Type(kv[i])
		out[kind] = providers.Named{Variable: vars[kind], Provider: kv[i+1]}
	}
	return out
}

func TestTheKeysSetChooseTheProviders(t *testing.T) {
	t.Parallel()
	const openAI = "https://api.openai.com/v1"
	pick := func(chosen map[task.Type]providers.Choice) map[task.Type]string {
		out := map[task.Type]string{}
		for k, c := range chosen {
			out[k] = c.Provider
		}
		return out
	}
	all := func(text, tts, stt string) map[task.Type]string {
		return map[task.Type]string{task.TypeGenerateText: text, task.TypeDescribeImage: text, task.TypeEmbed: text,
			task.TypeTextToSpeech: tts, task.TypeSpeechToText: stt}
	}

	// Nothing set: the local ones, as fallbacks; no speech_to_text.
	chosen, err := providers.Choose(named(), keys(openAI))
	require.NoError(t, err)
	require.Equal(t, all("ollama", "espeak", ""), pick(chosen))
	require.True(t, chosen[task.TypeGenerateText].Fallback)
	require.True(t, chosen[task.TypeEmbed].Fallback)

	// A key chooses its provider for every kind it serves; OpenAI's first.
	chosen, err = providers.Choose(named(), keys(openAI, "openai", "huggingface"))
	require.NoError(t, err)
	require.Equal(t, all("openai", "openai", "openai"), pick(chosen))
	require.False(t, chosen[task.TypeGenerateText].Fallback)
	chosen, err = providers.Choose(named(), keys(openAI, "huggingface"))
	require.NoError(t, err)
	require.Equal(t, all("huggingface", "huggingface", "huggingface"), pick(chosen))

	// A named provider wins over keys; vision and embed follow LLM_PROVIDER.
	chosen, err = providers.Choose(named("generate_text", "ollama", "text_to_speech", "espeak"), keys(openAI, "huggingface"))
	require.NoError(t, err)
	require.Equal(t, all("ollama", "espeak", "huggingface"), pick(chosen))
	require.False(t, chosen[task.TypeGenerateText].Fallback, "named, not a fallback")

	// OpenAI without a key is fine at another address (a local vLLM).
	_, err = providers.Choose(named("generate_text", "openai"), keys("http://127.0.0.1:8080/v1"))
	require.NoError(t, err)
}

func TestABadChoiceNamesTheVariable(t *testing.T) {
	t.Parallel()
	const openAI = "https://api.openai.com/v1"
	for _, tc := range []struct {
		named []string
		want  []string
	}{
		{[]string{"generate_text", "skynet"}, []string{"LLM_PROVIDER", "want openai, huggingface, ollama", "skynet"}},
		{[]string{"speech_to_text", "ollama"}, []string{"STT_PROVIDER", "want openai, huggingface for speech_to_text"}},
		{[]string{"text_to_speech", "coqui"}, []string{"TTS_PROVIDER", "espeak"}},
		{[]string{"describe_image", "eyes"}, []string{"VISION_PROVIDER"}},
		{[]string{"embed", "word2vec"}, []string{"EMBED_PROVIDER"}},
		{[]string{"generate_text", "openai"}, []string{"LLM_PROVIDER=openai needs OPENAI_API_KEY"}},
		{[]string{"text_to_speech", "openai"}, []string{"TTS_PROVIDER=openai needs OPENAI_API_KEY"}},
		{[]string{"generate_text", "huggingface"}, []string{"LLM_PROVIDER=huggingface needs HF_TOKEN"}},
	} {
		_, err := providers.Choose(named(tc.named...), keys(openAI))
		require.Error(t, err, tc.named)
		for _, w := range tc.want {
			require.ErrorContains(t, err, w)
		}
	}
	// Every problem at once.
	_, err := providers.Choose(named("generate_text", "skynet", "speech_to_text", "ollama"), keys(openAI))
	require.ErrorContains(t, err, "LLM_PROVIDER")
	require.ErrorContains(t, err, "STT_PROVIDER")
}
