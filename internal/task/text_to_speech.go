package task

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// TypeTextToSpeech turns text into an audio artifact.
const TypeTextToSpeech Type = "text_to_speech"

// MaxSpeechChars is OpenAI's limit on one speech request, and ours.
const MaxSpeechChars = 4096

// AudioFormats are the formats a text_to_speech request may ask for; which
// ones a provider offers differs (espeak-ng makes wav only).
var AudioFormats = []string{"mp3", "wav", "opus", "aac", "flac", "pcm"}

// TextToSpeechInput is a request for speech.
type TextToSpeechInput struct {
	Options
	// Clients of the original (Pydantic) API may send fields SIGANTENG does
	// not use; they are ignored, as Pydantic ignored them.
	_      struct{} `json:"-" additionalProperties:"true"`
	Text   string   `json:"text" minLength:"1" maxLength:"4096" doc:"What to say." example:"Selamat pagi, tugas Anda sudah selesai."`
	Voice  string   `json:"voice,omitempty" maxLength:"64" doc:"Provider voice: alloy, nova, … for OpenAI; en, id, … for espeak-ng. The provider's default when empty."`
	Format string   `json:"format,omitempty" enum:"mp3,wav,opus,aac,flac,pcm" doc:"Audio format; the provider's default (mp3 for OpenAI, wav for espeak-ng) when empty."`
	Model  string   `json:"model,omitempty" maxLength:"256" doc:"Provider model; TTS_MODEL when empty."`
	Speed  *float64 `json:"speed,omitempty" minimum:"0.25" maximum:"4" doc:"1 is normal speed."`
}

// Validate checks what the schema cannot express, and its limits for
// callers that do not come through HTTP.
func (in TextToSpeechInput) Validate() error {
	switch {
	case strings.TrimSpace(in.Text) == "":
		return Invalid("text", "text must not be empty or blank")
	case utf8.RuneCountInString(in.Text) > MaxSpeechChars:
		return Invalid("text", "text is longer than 4096 characters")
	case len(in.Voice) > 64:
		return Invalid("voice", "voice is longer than 64 characters")
	case len(in.Model) > MaxModelChars:
		return Invalid("model", "model is longer than 256 characters")
	case in.Speed != nil && (*in.Speed < 0.25 || *in.Speed > 4):
		return Invalid("speed", "speed must be between 0.25 and 4")
	}
	if in.Format != "" && !contains(AudioFormats, in.Format) {
		return Invalid("format", "format must be one of mp3, wav, opus, aac, flac, pcm")
	}
	return nil
}

// Summary is what the record keeps of the input.
func (in TextToSpeechInput) Summary() any {
	return struct {
		TextChars int      `json:"text_chars"`
		Voice     string   `json:"voice,omitempty"`
		Format    string   `json:"format,omitempty"`
		Model     string   `json:"model,omitempty"`
		Speed     *float64 `json:"speed,omitempty"`
	}{utf8.RuneCountInString(in.Text), in.Voice, in.Format, in.Model, in.Speed}
}

// Artifact is a binary result kept outside the record.
type Artifact struct {
	URL         string `json:"url" doc:"Where to download it: GET, with Range support."`
	ContentType string `json:"content_type" example:"audio/wav"`
	Size        int64  `json:"size" doc:"Bytes."`
}

// AudioResult is the result of text_to_speech.
type AudioResult struct {
	Artifact Artifact `json:"artifact"`
	Provider string   `json:"provider"`
	Model    string   `json:"model,omitempty"`
	Voice    string   `json:"voice,omitempty"`
	Format   string   `json:"format"`
	// Route is what served it through a routing file; never shown.
	Route *Route `json:"-"`
}

// ArtifactOf returns the artifact a record's result refers to, if any.
func ArtifactOf(rec *Record) (Artifact, bool) {
	var r struct {
		Artifact *Artifact `json:"artifact"`
	}
	if rec.Status != StatusSuccess || len(rec.Result) == 0 || json.Unmarshal(rec.Result, &r) != nil || r.Artifact == nil {
		return Artifact{}, false
	}
	return *r.Artifact, true
}

// ArtifactURL is where the API serves a task's artifact.
func ArtifactURL(id string) string { return "/background/tasks/" + id + "/artifact" }

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
