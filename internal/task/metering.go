package task

import "unicode/utf8"

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
	return Metered{InputTokens: r.Usage.PromptTokens, OutputTokens: r.Usage.CompletionTokens}
}

// Metering is what the embedding consumed, in tokens.
func (r EmbedResult) Metering() Metered {
	return Metered{InputTokens: r.Usage.PromptTokens, OutputTokens: r.Usage.CompletionTokens}
}

// Metering is the audio heard, where the provider said how long it was.
func (r TranscriptResult) Metering() Metered { return Metered{AudioSeconds: r.Duration} }

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
}

// DeploymentInfo is one deployment of a routed model and its health.
type DeploymentInfo struct {
	ID       string `json:"id" example:"chat/1"`
	Provider string `json:"provider"`
	Model    string `json:"model"`
	Weight   int    `json:"weight" doc:"Share of the load; 0 is a fallback only."`
	Breaker  string `json:"breaker" enum:"closed,open" doc:"open: skipped after repeated failures until its cool-down ends."`
	Failures int    `json:"failures" doc:"Transient failures in a row."`
}
