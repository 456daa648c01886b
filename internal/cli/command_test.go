package cli_test

// The command line's own checks: what it refuses before anything starts,
// and the commands that need no server. The end-to-end suite, which runs
// the program, is in internal/e2e.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/cli"
)

func TestAPIAndWorkerAloneNeedArtifactDir(t *testing.T) {
	t.Parallel()
	for _, cmd := range []string{"api", "worker"} {
		err := cli.Run(context.Background(), []string{"siganteng", cmd}, func(k string) string {
			if k == "REDIS_URL" {
				return "redis://127.0.0.1:1/0"
			}
			return ""
		}, io.Discard, io.Discard)
		require.ErrorContains(t, err, "ARTIFACT_DIR")
	}
}

func TestAPIAndWorkerAloneNeedRedisURL(t *testing.T) {
	t.Parallel()
	for _, cmd := range []string{"api", "worker"} {
		err := cli.Run(context.Background(), []string{"siganteng", cmd}, func(string) string { return "" }, io.Discard, io.Discard)
		require.ErrorContains(t, err, "REDIS_URL")
	}
}

func TestInvalidConfigStopsStartup(t *testing.T) {
	t.Parallel()
	err := cli.Run(context.Background(), []string{"siganteng"}, func(k string) string {
		if k == "TASK_TIMEOUT" {
			return "forever"
		}
		return ""
	}, io.Discard, io.Discard)
	require.ErrorContains(t, err, "TASK_TIMEOUT")
}

func TestAProviderThatCannotServeStopsStartup(t *testing.T) {
	t.Parallel()
	err := cli.Run(context.Background(), []string{"siganteng"}, func(k string) string {
		return map[string]string{"STT_PROVIDER": "ollama", "LLM_PROVIDER": "huggingface"}[k]
	}, io.Discard, io.Discard)
	require.ErrorContains(t, err, "STT_PROVIDER: want openai, huggingface for speech_to_text")
	require.ErrorContains(t, err, "LLM_PROVIDER=huggingface needs HF_TOKEN")
}

func TestUnknownQueueInWeightsStopsStartup(t *testing.T) {
	t.Parallel()
	err := cli.Run(context.Background(), []string{"siganteng"}, func(k string) string {
		if k == "QUEUE_WEIGHTS" {
			return "urgent=9"
		}
		return ""
	}, io.Discard, io.Discard)
	require.ErrorContains(t, err, `QUEUE_WEIGHTS: no queue "urgent"`)
	require.ErrorContains(t, err, "high, generate_text")
}

func TestOpenAPICommand(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	require.NoError(t, cli.Run(context.Background(), []string{"siganteng", "openapi"}, func(string) string { return "" }, &out, io.Discard))
	var doc struct {
		Paths map[string]any `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(out.Bytes(), &doc))
	require.Contains(t, doc.Paths, "/background/generate_text")
}

// The embedded start cannot hold a key, so it refuses to listen beyond
// loopback unless told to run open.
func TestEmbeddedStartRefusesANetworkAddress(t *testing.T) {
	t.Parallel()
	env := map[string]string{"HTTP_ADDR": "0.0.0.0:0"}
	err := cli.Run(context.Background(), []string{"siganteng", "serve"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
	require.ErrorContains(t, err, "not a loopback address")
	require.ErrorContains(t, err, "AUTH_DISABLED=true")
}
