package task

import (
	"bytes"
	"regexp"
	"strconv"
	"unicode/utf8"
)

// TypeSpeechToText transcribes an uploaded audio file.
const TypeSpeechToText Type = "speech_to_text"

// AudioUploadTypes are the formats accepted, as sniffed from the bytes.
var AudioUploadTypes = []string{"audio/wav", "audio/mpeg", "audio/flac", "audio/ogg", "audio/webm", "audio/mp4"}

// SpeechToTextInput is a transcription request. The audio itself travels
// apart, as an input artifact; MediaType and Filename describe it.
type SpeechToTextInput struct {
	Options
	Model     string `json:"model,omitempty"`
	Language  string `json:"language,omitempty"`
	Prompt    string `json:"prompt,omitempty"`
	MediaType string `json:"media_type"`
	Filename  string `json:"filename"`
}

var languageCode = regexp.MustCompile(`^[a-z]{2}$`)

// Validate checks the fields a client sends.
func (in SpeechToTextInput) Validate() error {
	switch {
	case len(in.Model) > MaxModelChars:
		return Invalid("model", "model is longer than 256 characters")
	case in.Language != "" && !languageCode.MatchString(in.Language):
		return Invalid("language", "language must be an ISO-639-1 code such as en or id")
	case utf8.RuneCountInString(in.Prompt) > 4000:
		return Invalid("prompt", "prompt is longer than 4000 characters")
	}
	return nil
}

// Summary is what the record keeps of the input.
func (in SpeechToTextInput) Summary() any {
	return struct {
		MediaType string `json:"media_type"`
		Model     string `json:"model,omitempty"`
		Language  string `json:"language,omitempty"`
	}{in.MediaType, in.Model, in.Language}
}

// TranscriptResult is the result of speech_to_text.
type TranscriptResult struct {
	Text     string    `json:"text"`
	Language string    `json:"language,omitempty"`
	Duration float64   `json:"duration,omitempty" doc:"Seconds of audio, where the provider says."`
	Segments []Segment `json:"segments,omitempty" doc:"Timed pieces, where the provider returns them."`
	Model    string    `json:"model,omitempty"`
	Provider string    `json:"provider"`
	// Route is what served it through a routing file; never shown.
	Route *Route `json:"-"`
}

// Segment is a timed piece of a transcript.
type Segment struct {
	Start float64 `json:"start"`
	End   float64 `json:"end"`
	Text  string  `json:"text"`
}

// InputKey is where a task's uploaded input is kept in the artifact store.
func InputKey(id string) string { return id + "-input" }

// ResultKey is where a result too large for a record is kept in the
// artifact store; it expires with the record (the artifact sweep).
func ResultKey(id string) string { return id + "-result" }

// ImageKey is where the n-th image sent inline in a task's messages is
// kept in the artifact store while the task waits.
func ImageKey(id string, n int) string { return id + "-image-" + strconv.Itoa(n) }

// SniffAudio names an audio format from the first bytes of a file, and the
// file extension providers expect for it; "" when it is none we accept.
func SniffAudio(head []byte) (mediaType, ext string) {
	switch {
	case len(head) >= 12 && string(head[:4]) == "RIFF" && string(head[8:12]) == "WAVE":
		return "audio/wav", ".wav"
	case bytes.HasPrefix(head, []byte("ID3")), len(head) >= 2 && head[0] == 0xFF && head[1]&0xE0 == 0xE0:
		return "audio/mpeg", ".mp3"
	case bytes.HasPrefix(head, []byte("fLaC")):
		return "audio/flac", ".flac"
	case bytes.HasPrefix(head, []byte("OggS")):
		return "audio/ogg", ".ogg"
	case bytes.HasPrefix(head, []byte{0x1A, 0x45, 0xDF, 0xA3}):
		return "audio/webm", ".webm"
	case len(head) >= 8 && string(head[4:8]) == "ftyp":
		return "audio/mp4", ".m4a"
	}
	return "", ""
}
