package task

import (
	"math"
	"time"
	"unicode/utf8"
)

// MaxReportedTokens bounds the tokens one call is believed to have used: a
// provider's usage is anybody's numbers, and a negative count would credit
// a key's budget while an absurd one would exhaust it.
const MaxReportedTokens = 100_000_000

// MaxReportedAudioSeconds bounds the audio one transcript is believed to
// have heard (a week).
const MaxReportedAudioSeconds = 7 * 24 * 3600

// reported clamps a count a provider reported to [0, MaxReportedTokens].
func reported(n int64) int64 { return min(max(n, 0), MaxReportedTokens) }

// ModelName is the model a request names, "" for the default. With a
// routing file it must be one of the file's models.
func (in GenerateTextInput) ModelName() string { return in.Model }

// ModelName is as GenerateTextInput's.
func (in DescribeImageInput) ModelName() string { return in.Model }

// ModelName is as GenerateTextInput's.
func (in EmbedInput) ModelName() string { return in.Model }

// ModelName is as GenerateTextInput's.
func (in TextToSpeechInput) ModelName() string { return in.Model }

// ModelName is as GenerateTextInput's.
func (in SpeechToTextInput) ModelName() string { return in.Model }

// Metering is what the completion consumed, in tokens.
func (r TextResult) Metering() Metered {
	return Metered{InputTokens: reported(r.Usage.PromptTokens), OutputTokens: reported(r.Usage.CompletionTokens)}
}

// Metering is what the embedding consumed, in tokens.
func (r EmbedResult) Metering() Metered {
	return Metered{InputTokens: reported(r.Usage.PromptTokens), OutputTokens: reported(r.Usage.CompletionTokens)}
}

// Metering is the audio heard, where the provider said how long it was.
func (r TranscriptResult) Metering() Metered {
	d := r.Duration
	if !(d > 0) || math.IsInf(d, 0) { // also NaN
		d = 0
	}
	return Metered{AudioSeconds: min(d, MaxReportedAudioSeconds)}
}

// Metering is what speaking the text costs: its characters.
func (in TextToSpeechInput) Metering() Metered {
	return Metered{Characters: int64(utf8.RuneCountInString(in.Text))}
}

// ModelInfo is a model clients may name, as GET /models lists it.
type ModelInfo struct {
	Name       string `json:"name" doc:"What to send as model; with a routing file, one of its names."`
	Capability Type   `json:"capability" doc:"The task type it serves."`
	Default    bool   `json:"default" doc:"Used when a request names no model."`
	// Provider is set when the model is served by one provider from the
	// environment (no routing file for its capability).
	Provider    string           `json:"provider,omitempty"`
	Deployments []DeploymentInfo `json:"deployments,omitempty" doc:"With a routing file: where the model is served, in file order."`
	// Flow is the provider's flow control state, for a model served from
	// the environment.
	Flow *FlowInfo `json:"flow,omitempty" doc:"The provider's limits (configured and learned) and state, as this API process last saw them."`
}

// FlowInfo is one deployment's flow control: its limits and whether it is
// paused at the provider's request.
type FlowInfo struct {
	RPM         int        `json:"rpm,omitempty" doc:"Requests per minute configured; absent: none."`
	TPM         int        `json:"tpm,omitempty" doc:"Tokens per minute configured; absent: none."`
	Concurrent  int        `json:"concurrent,omitempty" doc:"Calls at once configured; absent: none."`
	LearnedRPM  int64      `json:"learned_rpm,omitempty" doc:"Requests per minute the provider says it allows (x-ratelimit-limit-requests)."`
	LearnedTPM  int64      `json:"learned_tpm,omitempty" doc:"Tokens per minute the provider says it allows (x-ratelimit-limit-tokens)."`
	PacedRPM    int64      `json:"paced_rpm,omitempty" doc:"Requests per minute it is paced at, learned from 429s alone (a provider that states no limit): raised while it is met, cut at each 429."`
	PausedUntil *time.Time `json:"paused_until,omitempty" doc:"Set while the provider asked for a pause (a 429, or a budget it says is spent)."`
}

// DeploymentInfo is one deployment of a routed model and its health.
type DeploymentInfo struct {
	ID       string    `json:"id" example:"chat/1"`
	Provider string    `json:"provider"`
	Model    string    `json:"model"`
	Weight   int       `json:"weight" doc:"Share of the load; 0 is a fallback only."`
	Breaker  string    `json:"breaker" enum:"closed,open" doc:"open: skipped after repeated failures until its cool-down ends."`
	Failures int       `json:"failures" doc:"Transient failures in a row."`
	Flow     *FlowInfo `json:"flow,omitempty" doc:"Its limits (configured and learned) and state."`
}
