package task

import (
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"unicode/utf8"
)

// TypeDescribeImage asks a vision model about an image.
const TypeDescribeImage Type = "describe_image"

// ImageTypes are the image formats accepted, as sniffed from the bytes.
var ImageTypes = []string{"image/png", "image/jpeg", "image/gif", "image/webp"}

// DefaultImagePrompt is asked when a request has no prompt.
const DefaultImagePrompt = "Describe this image."

// DescribeImageInput is a question about one image.
type DescribeImageInput struct {
	Options
	// Clients of the original (Pydantic) API may send fields SIGANTENG does
	// not use; they are ignored, as Pydantic ignored them.
	_         struct{} `json:"-" additionalProperties:"true"`
	Prompt    string   `json:"prompt,omitempty" maxLength:"20000" doc:"What to ask about the image; 'Describe this image.' when empty." example:"What is in this picture?"`
	ImageURL  string   `json:"image_url" minLength:"1" doc:"An http(s) URL, fetched by the worker through a guarded client (no internal addresses), or a data: URL with the image in base64. PNG, JPEG, GIF or WebP, up to MAX_UPLOAD_BYTES." example:"https://upload.wikimedia.org/wikipedia/commons/3/3a/Cat03.jpg"`
	Model     string   `json:"model,omitempty" maxLength:"256" doc:"Vision model; VISION_MODEL when empty."`
	MaxTokens *int     `json:"max_tokens,omitempty" minimum:"1" maximum:"131072"`
}

// Validate checks the request without fetching or decoding the image.
func (in DescribeImageInput) Validate() error {
	switch {
	case utf8.RuneCountInString(in.Prompt) > 20000:
		return Invalid("prompt", "prompt is longer than 20000 characters")
	case len(in.Model) > MaxModelChars:
		return Invalid("model", "model is longer than 256 characters")
	case in.MaxTokens != nil && (*in.MaxTokens < 1 || *in.MaxTokens > MaxTokensLimit):
		return Invalid("max_tokens", "max_tokens must be between 1 and 131072")
	}
	if strings.HasPrefix(in.ImageURL, "data:") {
		return nil // decoded and checked by the service, which knows the size limit
	}
	u, err := url.Parse(in.ImageURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Invalid("image_url", "image_url must be an http(s) URL or a data: URL")
	}
	return nil
}

// PromptOrDefault is the prompt to send.
func (in DescribeImageInput) PromptOrDefault() string {
	if strings.TrimSpace(in.Prompt) == "" {
		return DefaultImagePrompt
	}
	return in.Prompt
}

// Summary is what the record keeps of the input: never the image, and of a
// URL only its host.
func (in DescribeImageInput) Summary() any {
	source := "data URL"
	if u, err := url.Parse(in.ImageURL); err == nil && u.Scheme != "data" {
		source = u.Host
	}
	return struct {
		PromptChars int    `json:"prompt_chars"`
		ImageSource string `json:"image_source"`
		Model       string `json:"model,omitempty"`
		MaxTokens   *int   `json:"max_tokens,omitempty"`
	}{utf8.RuneCountInString(in.Prompt), source, in.Model, in.MaxTokens}
}

// DecodeDataURL returns the bytes of a base64 data: URL, refusing more than
// maxBytes without decoding them.
func DecodeDataURL(s string, maxBytes int64) ([]byte, error) {
	rest, ok := strings.CutPrefix(s, "data:")
	if !ok {
		return nil, errors.New("not a data: URL")
	}
	meta, data, ok := strings.Cut(rest, ",")
	if !ok || !strings.HasSuffix(meta, ";base64") {
		return nil, errors.New("a data: URL must be base64 (data:image/png;base64,...)")
	}
	if int64(base64.StdEncoding.DecodedLen(len(data))) > maxBytes+3 {
		return nil, ErrTooLarge
	}
	b, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return nil, errors.New("the data: URL is not valid base64")
	}
	if int64(len(b)) > maxBytes {
		return nil, ErrTooLarge
	}
	return b, nil
}

// ErrTooLarge is returned for an input over its size limit.
var ErrTooLarge = errors.New("larger than MAX_UPLOAD_BYTES")
