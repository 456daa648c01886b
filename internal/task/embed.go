package task

import (
	"strings"
	"unicode/utf8"
)

// TypeEmbed turns texts into vectors.
const TypeEmbed Type = "embed"

// Limits on an embed request: enough for a batch of document chunks, small
// enough that the vectors fit in a record (256 × 3,072 dimensions ≈ 8 MB).
const (
	MaxEmbedInputs     = 256
	MaxEmbedInputChars = 32_000
)

// EmbedInput asks for one vector per string.
type EmbedInput struct {
	Options
	// Clients of the original (Pydantic) API may send fields SIGANTENG does
	// not use; they are ignored, as Pydantic ignored them.
	_          struct{} `json:"-" additionalProperties:"true"`
	Input      []string `json:"input" minItems:"1" maxItems:"256" doc:"The texts, up to 256, each up to 32,000 characters." example:"[\"kucing\",\"cat\"]"`
	Model      string   `json:"model,omitempty" maxLength:"256" doc:"Embedding model; EMBED_MODEL when empty."`
	Dimensions *int     `json:"dimensions,omitempty" minimum:"1" maximum:"8192" doc:"Shorter vectors, where the model can make them (OpenAI's text-embedding-3, some Ollama models)."`
}

// Validate checks what the schema cannot express.
func (in EmbedInput) Validate() error {
	switch {
	case len(in.Input) == 0:
		return Invalid("input", "input must hold at least one string")
	case len(in.Input) > MaxEmbedInputs:
		return Invalid("input", "input holds more than 256 strings")
	case len(in.Model) > MaxModelChars:
		return Invalid("model", "model is longer than 256 characters")
	case in.Dimensions != nil && (*in.Dimensions < 1 || *in.Dimensions > 8192):
		return Invalid("dimensions", "dimensions must be between 1 and 8192")
	}
	for _, s := range in.Input {
		if strings.TrimSpace(s) == "" {
			return Invalid("input", "input must not hold empty or blank strings")
		}
		if utf8.RuneCountInString(s) > MaxEmbedInputChars {
			return Invalid("input", "an input string is longer than 32000 characters")
		}
	}
	return nil
}

// Summary is what the record keeps of the input.
func (in EmbedInput) Summary() any {
	chars := 0
	for _, s := range in.Input {
		chars += utf8.RuneCountInString(s)
	}
	return struct {
		Inputs     int    `json:"inputs"`
		Chars      int    `json:"chars"`
		Model      string `json:"model,omitempty"`
		Dimensions *int   `json:"dimensions,omitempty"`
	}{len(in.Input), chars, in.Model, in.Dimensions}
}

// EmbedResult is the result of embed.
type EmbedResult struct {
	Vectors    [][]float64 `json:"vectors" doc:"One vector per input, in order."`
	Dimensions int         `json:"dimensions"`
	Model      string      `json:"model"`
	Provider   string      `json:"provider"`
	Usage      Usage       `json:"usage"`
	// Route is what served it through a routing file; never shown.
	Route *Route `json:"-"`
}
