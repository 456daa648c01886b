package config_test

import (
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/config"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load(env())
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:8000", cfg.HTTPAddr)
	require.Empty(t, cfg.RedisURL)
	require.Equal(t, slog.LevelInfo, cfg.LogLevel)
	require.Equal(t, "text", cfg.LogFormat)
	require.Empty(t, cfg.LLMProvider, "which provider serves is the registry's choice at start-up")
	require.Equal(t, "https://api.openai.com/v1", cfg.OpenAIBaseURL)
	require.Equal(t, "http://127.0.0.1:11434", cfg.OllamaBaseURL)
	require.Equal(t, 2048, cfg.WorkerConcurrency)
	require.Equal(t, 3, cfg.TaskMaxRetry)
	require.Equal(t, 5*time.Minute, cfg.TaskTimeout)
	require.Equal(t, 24*time.Hour, cfg.ResultTTL)
	require.Equal(t, 5*time.Millisecond, cfg.WorkerPollInterval)
	require.Empty(t, cfg.ArtifactDir)
	require.EqualValues(t, 10<<20, cfg.MaxUploadBytes)
	require.False(t, cfg.FetchAllowPrivate)
}

func TestProviderNamesAreReadAsSet(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load(env("LLM_PROVIDER", " Ollama ", "STT_PROVIDER", "huggingface"))
	require.NoError(t, err)
	require.Equal(t, config.ProviderOllama, cfg.LLMProvider)
	require.Equal(t, config.ProviderHuggingFace, cfg.STTProvider)
	require.Empty(t, cfg.TTSProvider)
}

func TestInvalidValuesNameTheVariable(t *testing.T) {
	t.Parallel()
	for name, value := range map[string]string{
		"HTTP_ADDR":            "8000",
		"REDIS_URL":            "mysql://x",
		"LOG_LEVEL":            "loud",
		"LOG_FORMAT":           "xml",
		"HF_INFERENCE_URL":     "router",
		"MAX_UPLOAD_BYTES":     "ten megs",
		"FETCH_ALLOW_PRIVATE":  "sometimes",
		"S3_ENDPOINT":          "s3.example.com",
		"S3_PATH_STYLE":        "maybe",
		"AWS_ACCESS_KEY_ID":    "AKIAONLYHALF",
		"OPENAI_BASE_URL":      "ftp://x",
		"WORKER_CONCURRENCY":   "0",
		"TASK_MAX_RETRY":       "-1",
		"TASK_TIMEOUT":         "500ms",
		"RESULT_TTL":           "-1h",
		"RETRY_MAX_DELAY":      "1ms",
		"WORKER_POLL_INTERVAL": "0",
	} {
		_, err := config.Load(env(name, value))
		require.Error(t, err, name)
		require.Contains(t, err.Error(), name)
	}
}

func TestTaskTimeoutIsWholeSeconds(t *testing.T) {
	t.Parallel()
	_, err := config.Load(env("TASK_TIMEOUT", "1500ms"))
	require.ErrorContains(t, err, "TASK_TIMEOUT: must be whole seconds")
	cfg, err := config.Load(env("TASK_TIMEOUT", "2s"))
	require.NoError(t, err)
	require.Equal(t, 2*time.Second, cfg.TaskTimeout)
}

func TestRedisPasswordStaysOutOfErrors(t *testing.T) {
	t.Parallel()
	_, err := config.Load(env("REDIS_URL", "redis://:hunter2secret@127.0.0.1:6379/notanumber"))
	require.Error(t, err)
	require.NotContains(t, err.Error(), "hunter2secret")
}

// Every variable is documented in .env.example and in both READMEs.
func TestEveryVariableIsDocumented(t *testing.T) {
	t.Parallel()
	for _, file := range []string{"../../.env.example", "../../README.md", "../../README.id.md"} {
		raw, err := os.ReadFile(file)
		require.NoError(t, err)
		text := string(raw)
		for _, v := range config.Vars {
			require.True(t, strings.Contains(text, v.Name), "%s does not mention %s", file, v.Name)
		}
	}
	raw, err := os.ReadFile("../../.env.example")
	require.NoError(t, err)
	for _, v := range config.Vars {
		require.Contains(t, string(raw), v.Name+"="+v.Default+"\n", ".env.example gives %s a default other than %q", v.Name, v.Default)
	}
}

func TestQueueWeightsAndWebhookSecret(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load(env("QUEUE_WEIGHTS", " high=80, embed=3 ", "WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
	require.NoError(t, err)
	require.Equal(t, map[string]int{"high": 80, "embed": 3}, cfg.QueueWeights)
	require.Equal(t, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", cfg.WebhookSecret)

	for _, bad := range []string{"high", "high=0", "=3", "high=x"} {
		_, err := config.Load(env("QUEUE_WEIGHTS", bad))
		require.ErrorContains(t, err, "QUEUE_WEIGHTS", bad)
	}
	for _, bad := range []string{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not*base64", "whsec_c2hvcnQ="} {
		_, err := config.Load(env("WEBHOOK_SECRET", bad))
		require.ErrorContains(t, err, "WEBHOOK_SECRET")
		require.NotContains(t, err.Error(), strings.TrimPrefix(bad, "whsec_"), "the secret stays out of the error")
	}
}

func TestProviderLimitsAndOllamasOwnParallelism(t *testing.T) {
	cfg, err := config.Load(env())
	require.NoError(t, err)
	require.Equal(t, config.Limits{Concurrent: 1}, cfg.Limits[config.ProviderOllama], "a local model gets one call at a time by default")
	require.Equal(t, config.Limits{}, cfg.Limits[config.ProviderOpenAI], "a hosted one's limits are learned")

	cfg, err = config.Load(env("OLLAMA_NUM_PARALLEL", "4", "OPENAI_LIMIT_RPM", "6000", "OPENAI_LIMIT_TPM", "150000"))
	require.NoError(t, err)
	require.Equal(t, config.Limits{Concurrent: 4}, cfg.Limits[config.ProviderOllama], "Ollama's own setting")
	require.Equal(t, config.Limits{RPM: 6000, TPM: 150000}, cfg.Limits[config.ProviderOpenAI])

	_, err = config.Load(env("OPENAI_LIMIT_RPM", "0", "HF_LIMIT_CONCURRENT", "-3"))
	require.ErrorContains(t, err, "OPENAI_LIMIT_RPM")
	require.ErrorContains(t, err, "HF_LIMIT_CONCURRENT")
}
