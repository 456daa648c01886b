package service

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/siganteng/siganteng/internal/fetch"
	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/task"
)

// Fetcher downloads images named by URL, refusing internal addresses.
type Fetcher interface {
	// Get returns the body and its sniffed media type; refusals wrap
	// fetch.ErrRefused, answers other than 200 are *fetch.StatusError.
	Get(ctx context.Context, url string) (fetch.Result, error)
}

// SubmitDescribeImage validates in (a data: URL is decoded and checked now),
// records a PENDING task and enqueues it.
func (s *Service) SubmitDescribeImage(ctx context.Context, in task.DescribeImageInput) (*task.Record, error) {
	if err := s.checkDescribeImage(in); err != nil {
		return nil, err
	}
	if err := s.capTokens(&in.MaxTokens); err != nil {
		return nil, err
	}
	return s.submit(ctx, task.TypeDescribeImage, in, in.Summary())
}

// DescribeImage runs describe_image now, bounded by the sync timeout.
func (s *Service) DescribeImage(ctx context.Context, in task.DescribeImageInput) (*task.TextResult, error) {
	if err := s.checkDescribeImage(in); err != nil {
		return nil, err
	}
	if err := s.capTokens(&in.MaxTokens); err != nil {
		return nil, err
	}
	if err := s.checkSync(ctx, task.TypeDescribeImage, in); err != nil {
		return nil, err
	}
	ctx, cancel := s.syncContext(ctx)
	defer cancel()
	out, err := s.describeImage(ctx, in)
	if err != nil {
		var terr *task.Error
		if errors.As(err, &terr) {
			return nil, err
		}
		return nil, syncError(ctx, err)
	}
	return out, nil
}

func (s *Service) checkDescribeImage(in task.DescribeImageInput) error {
	if err := in.Validate(); err != nil {
		return err
	}
	if strings.HasPrefix(in.ImageURL, "data:") {
		_, _, err := s.dataImage(in.ImageURL)
		return err
	}
	return nil
}

// dataImage decodes a data: URL and checks its size and sniffed type.
func (s *Service) dataImage(dataURL string) ([]byte, string, error) {
	b, err := task.DecodeDataURL(dataURL, s.cfg.MaxUploadBytes)
	switch {
	case errors.Is(err, task.ErrTooLarge):
		return nil, "", &task.Error{Code: task.ETOOLARGE, Field: "image_url",
			Message: fmt.Sprintf("the image is larger than MAX_UPLOAD_BYTES (%d bytes)", s.cfg.MaxUploadBytes)}
	case err != nil:
		return nil, "", task.Invalid("image_url", err.Error())
	}
	kind := fetch.Sniff(b)
	if !accepted(kind, task.ImageTypes) {
		return nil, "", &task.Error{Code: task.EUNSUPPORTED, Field: "image_url",
			Message: fmt.Sprintf("the image is %s; accepted: %s", kind, strings.Join(task.ImageTypes, ", "))}
	}
	return b, kind, nil
}

func accepted(kind string, list []string) bool {
	for _, a := range list {
		if a == kind {
			return true
		}
	}
	return false
}

// image returns the request's image, fetching it through the guard when it
// is named by URL. Errors the client can fix are task.EINVALID; a failing
// image host is a transient provider error.
func (s *Service) image(ctx context.Context, in task.DescribeImageInput) ([]byte, string, error) {
	if strings.HasPrefix(in.ImageURL, "data:") {
		return s.dataImage(in.ImageURL)
	}
	res, err := s.deps.Fetcher.Get(ctx, in.ImageURL)
	var status *fetch.StatusError
	switch {
	case err == nil:
		return res.Body, res.ContentType, nil
	case errors.Is(err, fetch.ErrRefused):
		return nil, "", &task.Error{Code: task.EINVALID, Field: "image_url", Message: strings.TrimPrefix(err.Error(), "fetch: ")}
	case errors.As(err, &status) && status.Status >= 400 && status.Status < 500 && status.Status != http.StatusTooManyRequests:
		return nil, "", &task.Error{Code: task.EINVALID, Field: "image_url", Message: fmt.Sprintf("the image URL answered %d", status.Status)}
	case ctx.Err() != nil:
		return nil, "", provider.ErrorFromTransport(ctx, "image host", ctx.Err())
	}
	return nil, "", &provider.Error{Provider: "image host", Kind: provider.KindUnavailable, Message: err.Error()}
}

func (s *Service) describeImage(ctx context.Context, in task.DescribeImageInput) (*task.TextResult, error) {
	img, kind, err := s.image(ctx, in)
	if err != nil {
		return nil, err
	}
	vision := s.deps.Providers.Vision
	req := provider.VisionRequest{Prompt: in.PromptOrDefault(), Image: img, MediaType: kind, Model: in.Model}
	if in.MaxTokens != nil {
		req.MaxTokens = *in.MaxTokens
	}
	out, err := vision.DescribeImage(ctx, req)
	if err != nil {
		return nil, err
	}
	return textResult(servedBy(ctx, vision), out), nil
}
