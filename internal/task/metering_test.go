package task_test

import (
	"encoding/json"
	"math"
	"strconv"
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

// Costs are written as the exact decimal of the nano-dollars counted.
func TestCostsRenderExactly(t *testing.T) {
	t.Parallel()
	in, out, inPrice, outPrice := 3.0, 1.0, 1.0, 2.0 // 3 input and 1 output tokens at $1 and $2 a million
	sum := in*inPrice/1e6 + out*outPrice/1e6
	require.NotEqual(t, "5e-06", strconv.FormatFloat(sum, 'g', -1, 64), "a float64 sum carries noise")
	for amount, want := range map[float64]string{sum: "0.000005", 0.0060: "0.006", 12.5: "12.5", 0: "0", 0.0000889: "0.0000889", 1e-10: "0"} {
		b, err := json.Marshal(task.Metered{CostUSD: ptr(task.USD(amount))})
		require.NoError(t, err)
		require.JSONEq(t, `{"cost_usd":`+want+`}`, string(b))
		require.Contains(t, string(b), `"cost_usd":`+want, "written exactly, no exponent")
	}
}

func ptr[T any](v T) *T { return &v }
