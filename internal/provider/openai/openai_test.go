package openai_test

import (
	"bytes"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/provider/openai"
	"github.com/siganteng/siganteng/internal/provider/providertest"
)

// specPath is OpenAI's official OpenAPI document, kept beside the project
// (not in it: it is not ours to ship).
const specPath = "../../../../shared/specs/openai.openapi.yaml"

var (
	specOnce      sync.Once
	specValidator validator.Validator
	specErr       error
)

// loadSpec builds a validator for OpenAI's document once per test binary, or
// returns nil, saying why, where the document is absent or the race detector
// would make loading it take minutes. The document still carries OpenAPI
// 3.0's nullable keyword, which 3.1 validators reject, so those lines are
// dropped.
func loadSpec(t *testing.T) validator.Validator {
	t.Helper()
	if raceEnabled {
		t.Log("requests are not validated against OpenAI's document under the race detector; run without -race for that")
		return nil
	}
	raw, err := os.ReadFile(specPath)
	if os.IsNotExist(err) {
		t.Logf("OpenAI's OpenAPI document is not at %s; requests are not validated against it", specPath)
		return nil
	}
	require.NoError(t, err)
	specOnce.Do(func() {
		cleaned := regexp.MustCompile(`(?m)^\s*nullable: (true|false)\s*\n`).ReplaceAll(raw, nil)
		doc, err := libopenapi.NewDocument(cleaned)
		if err != nil {
			specErr = err
			return
		}
		v, errs := validator.NewValidator(doc)
		if len(errs) > 0 {
			specErr = errs[0]
			return
		}
		specValidator = v
	})
	require.NoError(t, specErr)
	return specValidator
}

func validateAgainstSpec(v validator.Validator) func(*http.Request, []byte) error {
	var mu sync.Mutex // the validator's caches are not documented as safe for concurrent use
	return func(req *http.Request, body []byte) error {
		clone := req.Clone(req.Context())
		clone.Body = http.NoBody
		if len(body) > 0 {
			clone.Body = nopCloser{bytes.NewReader(body)}
		}
		mu.Lock()
		ok, errs := v.ValidateHttpRequest(clone)
		mu.Unlock()
		if ok {
			return nil
		}
		var msgs []string
		for _, e := range errs {
			msg := e.Message + ": " + e.Reason
			for _, se := range e.SchemaValidationErrors {
				msg += "; " + se.FieldPath + " " + se.Reason
			}
			msgs = append(msgs, msg)
		}
		return &specError{req.Method + " " + req.URL.Path + ": " + strings.Join(msgs, " | ")}
	}
}

type specError struct{ msg string }

func (e *specError) Error() string { return e.msg }

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

func TestConformance(t *testing.T) {
	t.Parallel()
	var opts []providertest.OpenAIOption
	if v := loadSpec(t); v != nil {
		opts = append(opts, providertest.WithRequestValidator(validateAgainstSpec(v)))
	}
	var fakes []*providertest.OpenAIFake
	var mu sync.Mutex
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, f := range fakes {
			require.Empty(t, f.InvalidRequests(), "the adapter sent requests that OpenAI's document does not allow")
		}
	})
	harness := providertest.LLMHarness{
		Name:     "openai",
		ChatPath: "/v1/chat/completions",
		Key:      "sk-test-0123456789abcdef",
		NewFake: func(*testing.T) providertest.Fake {
			f := providertest.NewOpenAIFake(opts...)
			mu.Lock()
			fakes = append(fakes, f)
			mu.Unlock()
			return f
		},
		NewAdapter: func(baseURL, key, model string) provider.LLM {
			return openai.New(openai.Config{BaseURL: baseURL, APIKey: key, DefaultModel: model})
		},
	}
	providertest.RunLLM(t, harness)
	providertest.RunChat(t, harness)
}

func TestSpeechConformance(t *testing.T) {
	t.Parallel()
	var opts []providertest.OpenAIOption
	if v := loadSpec(t); v != nil {
		opts = append(opts, providertest.WithRequestValidator(validateAgainstSpec(v)))
	}
	providertest.RunTTS(t, providertest.TTSHarness{
		Name:   "openai",
		Path:   func(string) string { return "/v1/audio/speech" },
		Key:    "sk-test-0123456789abcdef",
		Voices: true,
		NewFake: func(t *testing.T) providertest.SpeechFake {
			f := providertest.NewOpenAIFake(opts...)
			t.Cleanup(func() { require.Empty(t, f.InvalidRequests(), "requests OpenAI's document does not allow") })
			return f
		},
		NewAdapter: func(baseURL, key string) provider.TTS {
			return openai.New(openai.Config{BaseURL: baseURL, APIKey: key})
		},
	})
}

func TestVisionConformance(t *testing.T) {
	t.Parallel()
	var opts []providertest.OpenAIOption
	if v := loadSpec(t); v != nil {
		opts = append(opts, providertest.WithRequestValidator(validateAgainstSpec(v)))
	}
	providertest.RunVision(t, providertest.VisionHarness{
		Name:         "openai",
		ChatPath:     "/v1/chat/completions",
		Key:          "sk-test-0123456789abcdef",
		DefaultModel: openai.DefaultVisionModel,
		NewFake: func(t *testing.T) providertest.Fake {
			f := providertest.NewOpenAIFake(opts...)
			t.Cleanup(func() { require.Empty(t, f.InvalidRequests(), "requests OpenAI's document does not allow") })
			return f
		},
		NewAdapter: func(baseURL, key string) provider.Vision {
			return openai.New(openai.Config{BaseURL: baseURL, APIKey: key})
		},
	})
}

func TestEmbedConformance(t *testing.T) {
	t.Parallel()
	var opts []providertest.OpenAIOption
	if v := loadSpec(t); v != nil {
		opts = append(opts, providertest.WithRequestValidator(validateAgainstSpec(v)))
	}
	providertest.RunEmbed(t, providertest.EmbedHarness{
		Name:         "openai",
		Key:          "sk-test-0123456789abcdef",
		Path:         func(string) string { return "/v1/embeddings" },
		DefaultModel: openai.DefaultEmbedModel,
		Dimensions:   true,
		NewFake: func(t *testing.T) providertest.EmbedFake {
			f := providertest.NewOpenAIFake(opts...)
			t.Cleanup(func() { require.Empty(t, f.InvalidRequests(), "requests OpenAI's document does not allow") })
			return f
		},
		NewAdapter: func(baseURL, key string) provider.Embedder {
			return openai.New(openai.Config{BaseURL: baseURL, APIKey: key})
		},
	})
}

func TestSTTConformance(t *testing.T) {
	t.Parallel()
	var opts []providertest.OpenAIOption
	if v := loadSpec(t); v != nil {
		opts = append(opts, providertest.WithRequestValidator(validateAgainstSpec(v)))
	}
	providertest.RunSTT(t, providertest.STTHarness{
		Name:         "openai",
		Key:          "sk-test-0123456789abcdef",
		Path:         func(string) string { return "/v1/audio/transcriptions" },
		DefaultModel: openai.DefaultTranscribeModel,
		NewFake: func(t *testing.T) providertest.STTFake {
			f := providertest.NewOpenAIFake(opts...)
			t.Cleanup(func() { require.Empty(t, f.InvalidRequests(), "requests OpenAI's document does not allow") })
			return f
		},
		NewAdapter: func(baseURL, key string) provider.STT {
			return openai.New(openai.Config{BaseURL: baseURL, APIKey: key})
		},
	})
}

// whisper-1 is asked for verbose_json, whose segments reach the transcript.
func TestTranscribeSegments(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	defer fake.Close()
	stt := openai.New(openai.Config{BaseURL: fake.URL(), APIKey: "sk-x"})
	out, err := stt.Transcribe(t.Context(), provider.TranscribeRequest{Audio: strings.NewReader("RIFF"), Filename: "a.wav", MediaType: "audio/wav"})
	require.NoError(t, err)
	require.Equal(t, "verbose_json", fake.STTCalls()[0].Format)
	require.Equal(t, "english", out.Language)
	require.InDelta(t, 8.47, out.Duration, 1e-9)
	require.Len(t, out.Segments, 1)
	require.InDelta(t, 3.32, out.Segments[0].End, 1e-9)

	_, err = stt.Transcribe(t.Context(), provider.TranscribeRequest{Audio: strings.NewReader("RIFF"), Filename: "a.wav", MediaType: "audio/wav", Model: "gpt-4o-mini-transcribe"})
	require.NoError(t, err)
	require.Equal(t, "json", fake.STTCalls()[1].Format, "only whisper-1 answers verbose_json")
}

// The validator must be able to fail: a request the document forbids is
// reported.
func TestSpecValidatorRejectsBadRequest(t *testing.T) {
	t.Parallel()
	v := loadSpec(t)
	if v == nil {
		t.Skip("no validator here")
	}
	check := validateAgainstSpec(v)
	req, err := http.NewRequest(http.MethodPost, "http://127.0.0.1/v1/chat/completions", nil)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer sk-test")
	require.Error(t, check(req, []byte(`{"model":"gpt-4o-mini","messages":"not a list"}`)))
	require.NoError(t, check(req, []byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`)))
}

// OpenAI's own API gets max_completion_tokens; max_tokens is deprecated there.
func TestSendsMaxCompletionTokens(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	defer fake.Close()
	llm := openai.New(openai.Config{BaseURL: fake.URL(), APIKey: "sk-x"})
	_, err := llm.GenerateText(t.Context(), provider.TextRequest{Prompt: "hi", MaxTokens: 5})
	require.NoError(t, err)
	raw := string(fake.Calls()[0].Raw)
	require.Contains(t, raw, `"max_completion_tokens":5`)
	require.NotContains(t, raw, `"max_tokens"`)
	require.Equal(t, openai.DefaultModel, fake.Calls()[0].Model)
}
