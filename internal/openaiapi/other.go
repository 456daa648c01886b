package openaiapi

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/siganteng/siganteng/internal/task"
)

type embeddingsRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	Dimensions     *int            `json:"dimensions"`
	EncodingFormat string          `json:"encoding_format"`
	User           string          `json:"user"`
}

type embedding struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"` // []float64, or base64 of little-endian float32s
}

type embeddingsResponse struct {
	Object string      `json:"object"`
	Data   []embedding `json:"data"`
	Model  string      `json:"model"`
	Usage  struct {
		PromptTokens int64 `json:"prompt_tokens"`
		TotalTokens  int64 `json:"total_tokens"`
	} `json:"usage"`
}

// input is the request as the domain's embed.
func (req embeddingsRequest) input() (task.EmbedInput, error) {
	input, err := stringOrList(req.Input, "input")
	if err == nil && input == nil {
		err = task.Invalid("input", "input is required: a string or a list of strings")
	}
	if err != nil {
		// Token arrays are what some clients send; SIGANTENG's providers
		// take text.
		return task.EmbedInput{}, task.Invalid("input", "input must be a string or a list of strings (token arrays are not supported)")
	}
	switch req.EncodingFormat {
	case "", "float", "base64":
	default:
		return task.EmbedInput{}, task.Invalid("encoding_format", "encoding_format must be float or base64")
	}
	return task.EmbedInput{Input: input, Model: req.Model, Dimensions: req.Dimensions}, nil
}

func (a *api) embeddings(w http.ResponseWriter, r *http.Request) {
	var req embeddingsRequest
	if !a.decode(w, r, &req) {
		return
	}
	in, err := req.input()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out, err := a.deps.Tasks.Embed(r.Context(), in)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, embeddingsOf(out, req.EncodingFormat))
}

// embeddingsOf is a result as OpenAI's embeddings list, the vectors as
// floats or base64.
func embeddingsOf(out *task.EmbedResult, format string) embeddingsResponse {
	res := embeddingsResponse{Object: "list", Model: out.Model, Data: make([]embedding, len(out.Vectors))}
	for i, v := range out.Vectors {
		res.Data[i] = embedding{Object: "embedding", Index: i, Embedding: v}
		if format == "base64" {
			res.Data[i].Embedding = packFloats(v)
		}
	}
	res.Usage.PromptTokens, res.Usage.TotalTokens = out.Usage.PromptTokens, out.Usage.TotalTokens
	return res
}

// packFloats is OpenAI's base64 encoding of a vector: float32s, little-endian.
func packFloats(v []float64) string {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(f)))
	}
	return base64.StdEncoding.EncodeToString(b)
}

type speechRequest struct {
	Model          string   `json:"model"`
	Input          string   `json:"input"`
	Voice          string   `json:"voice"`
	ResponseFormat string   `json:"response_format"`
	Speed          *float64 `json:"speed"`
	Instructions   string   `json:"instructions"`
	StreamFormat   string   `json:"stream_format"`
}

func (a *api) speech(w http.ResponseWriter, r *http.Request) {
	var req speechRequest
	if !a.decode(w, r, &req) {
		return
	}
	switch {
	case req.Instructions != "":
		a.fail(w, r, task.Invalid("instructions", "voice instructions are not supported"))
		return
	case req.StreamFormat != "" && req.StreamFormat != "audio":
		a.fail(w, r, task.Invalid("stream_format", "stream_format must be audio"))
		return
	}
	format := req.ResponseFormat
	if format == "" {
		format = "mp3" // OpenAI's default
	}
	audio, err := a.deps.Tasks.TextToSpeech(r.Context(), task.TextToSpeechInput{Text: req.Input, Voice: req.Voice, Format: format,
		Model: req.Model, Speed: req.Speed})
	if err != nil {
		a.fail(w, r, renamed(err, map[string]string{"text": "input", "format": "response_format"}))
		return
	}
	defer audio.Body.Close()
	w.Header().Set("Content-Type", audio.ContentType)
	w.WriteHeader(http.StatusOK)
	_, _ = io.Copy(w, audio.Body)
}

// renamed gives a validation error the field name this front uses: a
// field named in names, or one under it (messages[2].content), becomes
// the name given.
func renamed(err error, names map[string]string) error {
	var e *task.Error
	if !errors.As(err, &e) || e.Code != task.EINVALID {
		return err
	}
	top, _, _ := strings.Cut(strings.SplitN(e.Field, "[", 2)[0], ".")
	name, ok := names[top]
	if !ok {
		return err
	}
	c := *e
	c.Field = name
	return &c
}

type transcription struct {
	Text     string         `json:"text"`
	Language string         `json:"language,omitempty"`
	Duration float64        `json:"duration,omitempty"`
	Segments []task.Segment `json:"segments,omitempty"`
	Usage    *struct {
		Type    string  `json:"type"`
		Seconds float64 `json:"seconds"`
	} `json:"usage,omitempty"`
}

// transcriptions reads the multipart form in whatever order its parts
// come: the audio is spooled to a temporary file (bounded by
// MAX_UPLOAD_BYTES, never held in memory) so that fields sent after it
// count too, then handed to the service.
func (a *api) transcriptions(w http.ResponseWriter, r *http.Request) {
	form, ok := a.readForm(w, r, a.deps.MaxUploadBytes, "MAX_UPLOAD_BYTES")
	if !ok {
		return
	}
	defer form.close()
	in := task.SpeechToTextInput{Filename: form.filename, Model: form.fields["model"], Language: form.fields["language"], Prompt: form.fields["prompt"]}
	format := form.fields["response_format"]
	if format == "" {
		format = "json"
	}
	if format != "json" && format != "text" && format != "verbose_json" {
		a.fail(w, r, task.Invalid("response_format", fmt.Sprintf("response_format %q is not supported; use json, text or verbose_json", format)))
		return
	}
	out, err := a.deps.Tasks.SpeechToText(r.Context(), in, form.file)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.writeTranscript(w, out, format)
}

func (a *api) writeTranscript(w http.ResponseWriter, out *task.TranscriptResult, format string) {
	switch format {
	case "text":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, out.Text+"\n")
	case "verbose_json":
		res := transcription{Text: out.Text, Language: out.Language, Duration: out.Duration, Segments: out.Segments}
		writeJSON(w, http.StatusOK, res)
	default:
		res := transcription{Text: out.Text}
		if out.Duration > 0 {
			res.Usage = &struct {
				Type    string  `json:"type"`
				Seconds float64 `json:"seconds"`
			}{"duration", out.Duration}
		}
		writeJSON(w, http.StatusOK, res)
	}
}

type model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// modelList is every model the caller may name, chat models first; a name
// that serves two capabilities is listed once.
func (a *api) modelList(r *http.Request) []model {
	seen := map[string]bool{}
	var out []model
	for _, m := range a.deps.Tasks.Models(r.Context()) {
		if seen[m.Name] || m.Name == "" {
			continue
		}
		seen[m.Name] = true
		owner := m.Provider
		if owner == "" {
			owner = "siganteng"
		}
		out = append(out, model{ID: m.Name, Object: "model", OwnedBy: owner})
	}
	return out
}

func (a *api) models(w http.ResponseWriter, r *http.Request) {
	list := a.modelList(r)
	if list == nil {
		list = []model{}
	}
	writeJSON(w, http.StatusOK, struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{"list", list})
}

func (a *api) model(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	for _, m := range a.modelList(r) {
		if m.ID == id {
			writeJSON(w, http.StatusOK, m)
			return
		}
	}
	WriteError(w, http.StatusNotFound, "The model "+strconv.Quote(id)+" does not exist or you do not have access to it.", "model", "model_not_found")
}
