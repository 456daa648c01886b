package httpapi

import (
	"context"

	"github.com/danielgtaylor/huma/v2"

	"github.com/siganteng/siganteng/internal/task"
)

type speechToTextForm struct {
	File     huma.FormFile `form:"file" required:"true" doc:"The audio: WAV, MP3, FLAC, Ogg/Opus, WebM or M4A, up to MAX_UPLOAD_BYTES. The format is sniffed from the bytes."`
	Model    string        `form:"model" required:"false" doc:"Speech-to-text model; STT_MODEL when empty."`
	Language string        `form:"language" required:"false" doc:"ISO-639-1 code of the spoken language (en, id), a hint."`
	Prompt   string        `form:"prompt" required:"false" doc:"Spelling and style hint: names, jargon."`
	// CancelAfter is cancel_after, in seconds.
	CancelAfter int    `form:"cancel_after" required:"false" minimum:"0" maximum:"604800" doc:"Seconds: a task not started by then ends REVOKED."`
	Priority    string `form:"priority" required:"false" enum:"high,normal,low" doc:"high, normal (the default) or low."`
	Webhook     string `form:"webhook" required:"false" maxLength:"2048" doc:"URL that receives the signed task record on the events in webhook_events."`
	// WebhookEvents is a comma-separated list, as forms carry no arrays.
	WebhookEvents string `form:"webhook_events" required:"false" doc:"Comma-separated: start, progress, completed; default completed."`
}

type speechToTextInput struct {
	SubmitHeaders
	RawBody huma.MultipartFormFiles[speechToTextForm]
}

func (f *speechToTextForm) input() task.SpeechToTextInput {
	in := task.SpeechToTextInput{Model: f.Model, Language: f.Language, Prompt: f.Prompt}
	in.Priority, in.Webhook, in.WebhookEvents = task.Priority(f.Priority), f.Webhook, splitList(f.WebhookEvents)
	if f.CancelAfter > 0 {
		n := f.CancelAfter
		in.CancelAfter = &n
	}
	return in
}

func (h *handlers) submitSpeechToText(ctx context.Context, in *speechToTextInput) (*submitOutput, error) {
	form := in.RawBody.Data()
	defer form.File.Close()
	stt := form.input()
	in.options(&stt.Options)
	// The key covers the form's fields; the audio is streamed, not hashed.
	return h.submit(ctx, in.SubmitHeaders, task.TypeSpeechToText, stt, func() (*task.Record, error) {
		return h.deps.Tasks.SubmitSpeechToText(ctx, stt, form.File)
	})
}

type transcriptOutput struct {
	Body *task.TranscriptResult
}

func (h *handlers) speechToText(ctx context.Context, in *speechToTextInput) (*transcriptOutput, error) {
	form := in.RawBody.Data()
	defer form.File.Close()
	out, err := h.deps.Tasks.SpeechToText(ctx, form.input(), form.File)
	if err != nil {
		return nil, h.problem(ctx, err)
	}
	return &transcriptOutput{Body: out}, nil
}
