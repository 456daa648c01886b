package task_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/task"
)

// Finding 7: usage a provider reports is anybody's numbers.
func TestReportedUsageIsClamped(t *testing.T) {
	t.Parallel()
	m := task.TextResult{Usage: task.Usage{PromptTokens: -1_000_000, CompletionTokens: 7}}.Metering()
	require.Equal(t, int64(0), m.InputTokens, "negative usage would credit a budget")
	require.Equal(t, int64(7), m.OutputTokens)
	m = task.EmbedResult{Usage: task.Usage{PromptTokens: math.MaxInt64}}.Metering()
	require.Equal(t, int64(task.MaxReportedTokens), m.InputTokens, "absurd usage would exhaust one")
	for _, d := range []float64{-5, math.NaN(), math.Inf(1)} {
		require.Zero(t, task.TranscriptResult{Duration: d}.Metering().AudioSeconds, "%v", d)
	}
	require.Equal(t, 12.5, task.TranscriptResult{Duration: 12.5}.Metering().AudioSeconds)
	require.Equal(t, float64(task.MaxReportedAudioSeconds), task.TranscriptResult{Duration: 1e18}.Metering().AudioSeconds)
}

func TestShownWebhookURLHidesPathAndQuery(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		"https://hooks.slack.com/services/T000/B000/XXXXSECRET": "https://hooks.slack.com/…",
		"https://discord.com/api/webhooks/123/TOKENSECRET":      "https://discord.com/…",
		"https://example.com/hook?token=QUERYSECRET":            "https://example.com/…",
		"https://example.com":                                   "https://example.com",
		"https://example.com/":                                  "https://example.com",
		"::not a url":                                           "",
	} {
		require.Equal(t, want, task.ShownWebhookURL(raw), raw)
	}
}
