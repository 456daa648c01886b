package service

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"

	"github.com/siganteng/siganteng/internal/artifact"
	"github.com/siganteng/siganteng/internal/auth"
	"github.com/siganteng/siganteng/internal/fetch"
	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/task"
)

// Images sent inline in a conversation (data: URLs in image_url parts) go
// to the artifact store when the task is queued, as uploads do: the queued
// message, and so Redis, holds a reference, never the bytes. A worker puts
// them back inline just before the provider call.

// storedImage is the URL a queued image part carries instead of its data:
// the index of the image among the task's stored ones.
const storedImage = "siganteng-stored-image:"

// queuedText is generate_text as queued.
type queuedText struct {
	task.GenerateTextInput
	StoredImages int `json:"stored_images,omitempty"`
}

// Validate checks the request as the client sent it: a stored image
// stands in as an empty data: URL.
func (q queuedText) Validate() error {
	in := q.GenerateTextInput
	if q.StoredImages > 0 {
		in.Messages = mapImages(in.Messages, func(url string) string {
			if strings.HasPrefix(url, storedImage) {
				return "data:image/png;base64,"
			}
			return url
		})
	}
	return in.Validate()
}

// mapImages returns messages with each image part's URL replaced by
// change(URL); messages without images are shared, not copied.
func mapImages(messages []task.Message, change func(string) string) []task.Message {
	out := make([]task.Message, len(messages))
	for i, m := range messages {
		out[i] = m
		parts, err := m.Parts()
		if err != nil || !hasImage(parts) {
			continue
		}
		for j, p := range parts {
			if p.Type == "image_url" && p.ImageURL != nil {
				u := *p.ImageURL
				u.URL = change(u.URL)
				parts[j].ImageURL = &u
			}
		}
		out[i].Content, _ = json.Marshal(parts)
	}
	return out
}

func hasImage(parts []task.Part) bool {
	for _, p := range parts {
		if p.Type == "image_url" {
			return true
		}
	}
	return false
}

// inlineImages decodes the data: URL images of messages, in order, checked
// as an uploaded image is (size, sniffed type).
func (s *Service) inlineImages(messages []task.Message) ([][]byte, error) {
	var images [][]byte
	for _, m := range messages {
		parts, _ := m.Parts() // Validate has read them
		for _, p := range parts {
			if p.Type != "image_url" || p.ImageURL == nil || !strings.HasPrefix(p.ImageURL.URL, "data:") {
				continue
			}
			img, _, err := s.dataImage(p.ImageURL.URL)
			if err != nil {
				var e *task.Error
				if errors.As(err, &e) {
					c := *e
					c.Field = "messages"
					return nil, &c
				}
				return nil, err
			}
			images = append(images, img)
		}
	}
	return images, nil
}

// submitText queues generate_text, first moving inline images to the
// artifact store (and request, when given, beside them: see
// SubmitGenerateTextKeeping).
func (s *Service) submitText(ctx context.Context, in task.GenerateTextInput, request []byte) (*task.Record, error) {
	images, err := s.inlineImages(in.Messages)
	if err != nil {
		return nil, err
	}
	if len(images) == 0 && request == nil {
		return s.submit(ctx, task.TypeGenerateText, in, in.Summary())
	}
	if err := s.checkStored(ctx); err != nil {
		return nil, err
	}
	queued := queuedText{GenerateTextInput: in, StoredImages: len(images)}
	n := 0
	queued.Messages = mapImages(in.Messages, func(url string) string {
		if !strings.HasPrefix(url, "data:") {
			return url
		}
		n++
		return storedImage + strconv.Itoa(n-1)
	})
	summary := in.Summary()
	if len(images) > 0 {
		kept := summary.(task.GenerateTextSummary)
		kept.StoredImages = len(images)
		summary = kept
	}
	owner := auth.FromContext(ctx).Owner()
	return s.submitWith(ctx, task.TypeGenerateText, queued, summary,
		func(id string) error {
			if request != nil {
				if err := s.putInput(ctx, id, bytes.NewReader(request)); err != nil {
					return err
				}
			}
			for i, img := range images {
				if err := s.putKey(ctx, task.ImageKey(id, i), bytes.NewReader(img)); err != nil {
					return err
				}
			}
			return nil
		},
		func(id string) {
			s.dropInput(ctx, id, owner)
			s.dropImages(ctx, id, owner, len(images))
		})
}

// loadImages puts a queued task's stored images back inline.
func (s *Service) loadImages(ctx context.Context, id string, q queuedText) (task.GenerateTextInput, error) {
	in := q.GenerateTextInput
	if q.StoredImages == 0 {
		return in, nil
	}
	var err error
	in.Messages = mapImages(in.Messages, func(url string) string {
		index, ok := strings.CutPrefix(url, storedImage)
		if !ok || err != nil {
			return url
		}
		i, _ := strconv.Atoi(index)
		var img []byte
		if img, err = s.readInput(ctx, task.ImageKey(id, i)); err != nil {
			return url
		}
		return "data:" + fetch.Sniff(img) + ";base64," + base64.StdEncoding.EncodeToString(img)
	})
	return in, err
}

// readInput reads an input the task stored, bounded by MAX_UPLOAD_BYTES.
func (s *Service) readInput(ctx context.Context, key string) ([]byte, error) {
	name := s.deps.Providers.LLM.Name()
	obj, err := s.deps.Artifacts.Open(ctx, key)
	if errors.Is(err, artifact.ErrNotFound) {
		return nil, task.Invalid("messages", "an image sent with the task is gone (kept RESULT_TTL after upload); submit it again")
	}
	if err != nil {
		return nil, &provider.Error{Provider: name, Kind: provider.KindUnavailable, Message: "an image sent with the task cannot be read"}
	}
	defer obj.Close()
	img, err := io.ReadAll(io.LimitReader(obj, s.cfg.MaxUploadBytes+1))
	if err != nil {
		return nil, &provider.Error{Provider: name, Kind: provider.KindUnavailable, Message: "an image sent with the task cannot be read"}
	}
	return img, nil
}

// dropImages deletes a task's n stored images and stops counting them.
func (s *Service) dropImages(ctx context.Context, id, owner string, n int) {
	for i := range n {
		s.dropKey(ctx, task.ImageKey(id, i), owner)
	}
}

// storedImagesOf reads how many images a generate_text record stored.
func storedImagesOf(rec *task.Record) int {
	var summary struct {
		StoredImages int `json:"stored_images"`
	}
	_ = json.Unmarshal(rec.Input, &summary)
	return summary.StoredImages
}
