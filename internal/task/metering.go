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
