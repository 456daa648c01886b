package service

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/siganteng/siganteng/internal/artifact"
	"github.com/siganteng/siganteng/internal/auth"
	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/task"
)

// sniffedAudio reads the head of an upload, names its format, and returns a
// reader that still yields every byte, bounded by MaxUploadBytes.
func (s *Service) sniffedAudio(in *task.SpeechToTextInput, audio io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(io.LimitReader(audio, s.cfg.MaxUploadBytes+1), 512)
	head, _ := br.Peek(512)
	kind, ext := task.SniffAudio(head)
	if kind == "" {
		return nil, &task.Error{Code: task.EUNSUPPORTED, Field: "file",
			Message: "the file is not audio we take; accepted: " + strings.Join(task.AudioUploadTypes, ", ")}
	}
	in.MediaType = kind
	in.Filename = "audio" + ext
	return &limitedReader{r: br, max: s.cfg.MaxUploadBytes}, nil
}

// limitedReader fails once more than max bytes have been read.
type limitedReader struct {
	r   io.Reader
	n   int64
	max int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.n += int64(n)
	if l.n > l.max {
		return n, errTooLarge
	}
	return n, err
}

var errTooLarge = errors.New("upload larger than MAX_UPLOAD_BYTES")

// SubmitSpeechToText stores the uploaded audio as the task's input, then
// records and enqueues the task. The audio never goes into Redis.
func (s *Service) SubmitSpeechToText(ctx context.Context, in task.SpeechToTextInput, audio io.Reader) (*task.Record, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	body, err := s.sniffedAudio(&in, audio)
	if err != nil {
		return nil, err
	}
	if err := s.checkStored(ctx); err != nil {
		return nil, err
	}
	return s.submitWith(ctx, task.TypeSpeechToText, in, in.Summary(),
		func(id string) error { return s.putInput(ctx, id, body) },
		func(id string) { s.dropInput(ctx, id, auth.FromContext(ctx).Owner()) })
}

func (s *Service) tooLarge(field string) error {
	return &task.Error{Code: task.ETOOLARGE, Field: field,
		Message: fmt.Sprintf("the upload is larger than MAX_UPLOAD_BYTES (%d bytes)", s.cfg.MaxUploadBytes)}
}

// SpeechToText transcribes an upload now, bounded by the sync timeout.
func (s *Service) SpeechToText(ctx context.Context, in task.SpeechToTextInput, audio io.Reader) (*task.TranscriptResult, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	body, err := s.sniffedAudio(&in, audio)
	if err != nil {
		return nil, err
	}
	return syncCall(s, ctx, task.TypeSpeechToText, in, func(ctx context.Context) (*task.TranscriptResult, error) {
		out, err := s.transcribe(ctx, in, body)
		if errors.Is(err, errTooLarge) {
			return nil, s.tooLarge("file")
		}
		return out, err
	})
}

// speechToTextKind transcribes a queued task's stored audio.
var speechToTextKind = runs(task.TypeSpeechToText, func(p Providers) named { return p.STT },
	func(s *Service, ctx context.Context, id string, in task.SpeechToTextInput, _ Progress) (any, error) {
		return s.speechToText(ctx, id, in)
	})

// speechToText runs a queued task from its stored input, which it removes
// once the transcript is safe.
func (s *Service) speechToText(ctx context.Context, id string, in task.SpeechToTextInput) (*task.TranscriptResult, error) {
	obj, err := s.deps.Artifacts.Open(ctx, task.InputKey(id))
	if errors.Is(err, artifact.ErrNotFound) {
		return nil, task.Invalid("file", "the uploaded audio is gone (kept RESULT_TTL after upload); submit it again")
	}
	if err != nil {
		return nil, &provider.Error{Provider: s.deps.Providers.STT.Name(), Kind: provider.KindUnavailable, Message: "the uploaded audio cannot be read: " + err.Error()}
	}
	defer obj.Close()
	out, err := s.transcribe(ctx, in, obj)
	if err != nil {
		return nil, err
	}
	_ = s.DiscardInput(ctx, id, task.TypeSpeechToText)
	return out, nil
}

func (s *Service) transcribe(ctx context.Context, in task.SpeechToTextInput, audio io.Reader) (*task.TranscriptResult, error) {
	stt := s.deps.Providers.STT
	t, err := stt.Transcribe(ctx, provider.TranscribeRequest{Audio: audio, Filename: in.Filename, MediaType: in.MediaType,
		Model: in.Model, Language: in.Language, Prompt: in.Prompt})
	if err != nil {
		return nil, err
	}
	out := &task.TranscriptResult{Text: t.Text, Language: t.Language, Duration: t.Duration, Model: t.Model, Provider: servedBy(t.Route, stt), Route: t.Route}
	for _, seg := range t.Segments {
		out.Segments = append(out.Segments, task.Segment{Start: seg.Start, End: seg.End, Text: seg.Text})
	}
	return out, nil
}
