package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/siganteng/siganteng/internal/artifact"
	"github.com/siganteng/siganteng/internal/auth"
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
	if !strings.HasPrefix(in.ImageURL, "data:") {
		return s.submit(ctx, task.TypeDescribeImage, queuedImage{DescribeImageInput: in}, in.Summary())
	}
	// An image sent with the request goes to the artifact store, like
	// audio: the queued message (and Redis) holds a reference, not the bytes.
	img, _, err := s.dataImage(in.ImageURL)
	if err != nil {
		return nil, err
	}
	if err := s.checkStored(ctx); err != nil {
		return nil, err
	}
	summary := in.Summary()
	queued := queuedImage{DescribeImageInput: in, Stored: true}
	queued.ImageURL = ""
	return s.submitWith(ctx, task.TypeDescribeImage, queued, summary,
		func(id string) error { return s.putInput(ctx, id, bytes.NewReader(img)) },
		func(id string) { s.dropInput(ctx, id, auth.FromContext(ctx).Owner()) })
}

// queuedImage is describe_image as queued: the request, whose image is
// either a URL the worker fetches or, with Stored, the task's input in the
// artifact store.
type queuedImage struct {
	task.DescribeImageInput
	Stored bool `json:"image_stored,omitempty"`
}

// Validate checks the request; a stored image has no URL to check.
func (q queuedImage) Validate() error {
	if q.Stored {
		in := q.DescribeImageInput
		in.ImageURL = "data:"
		return in.Validate()
	}
	return q.DescribeImageInput.Validate()
}

// describeQueuedImage runs a queued describe_image, reading a stored image
// from the artifact store and removing it once the answer is safe.
func (s *Service) describeQueuedImage(ctx context.Context, id string, q queuedImage) (*task.TextResult, error) {
	if !q.Stored {
		return s.describeImage(ctx, q.DescribeImageInput)
	}
	obj, err := s.deps.Artifacts.Open(ctx, task.InputKey(id))
	if errors.Is(err, artifact.ErrNotFound) {
		return nil, task.Invalid("image_url", "the uploaded image is gone (kept RESULT_TTL after upload); submit it again")
	}
	if err != nil {
		return nil, &provider.Error{Provider: s.deps.Providers.Vision.Name(), Kind: provider.KindUnavailable, Message: "the uploaded image cannot be read"}
	}
	img, err := io.ReadAll(io.LimitReader(obj, s.cfg.MaxUploadBytes+1))
	_ = obj.Close()
	if err != nil {
		return nil, &provider.Error{Provider: s.deps.Providers.Vision.Name(), Kind: provider.KindUnavailable, Message: "the uploaded image cannot be read"}
	}
	out, err := s.visionCall(ctx, q.DescribeImageInput, img, fetch.Sniff(img))
	if err != nil {
		return nil, err
	}
	_ = s.DiscardInput(ctx, id, task.TypeDescribeImage)
	return out, nil
}

// DescribeImage runs describe_image now, bounded by the sync timeout.
func (s *Service) DescribeImage(ctx context.Context, in task.DescribeImageInput) (*task.TextResult, error) {
	if err := s.checkDescribeImage(in); err != nil {
		return nil, err
	}
	if err := s.capTokens(&in.MaxTokens); err != nil {
		return nil, err
	}
	return syncCall(s, ctx, task.TypeDescribeImage, in, func(ctx context.Context) (*task.TextResult, error) {
		return s.describeImage(ctx, in)
	})
}

// describeImageKind runs a queued describe_image: an image by URL is
// fetched, an uploaded one read from the artifact store.
var describeImageKind = runs(task.TypeDescribeImage, func(p Providers) named { return p.Vision },
	func(s *Service, ctx context.Context, id string, q queuedImage, _ Progress) (any, error) {
		return s.describeQueuedImage(ctx, id, q)
	})

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
	release, err := s.fetchPlace(ctx)
	if err != nil {
		return nil, "", err
	}
	res, err := s.deps.Fetcher.Get(ctx, in.ImageURL)
	release()
	if err != nil {
		// What the fetch met (resolved addresses, resolvers, routes) is for
		// the log; the client learns a fixed reason.
		s.deps.Log.WarnContext(ctx, "image URL not fetched", "err", err)
	}
	var status *fetch.StatusError
	var dnsErr *net.DNSError
	switch {
	case err == nil:
		return res.Body, res.ContentType, nil
	case errors.Is(err, fetch.ErrNotPublic):
		return nil, "", task.Invalid("image_url", "refused: the image URL does not lead to a public address")
	case errors.Is(err, fetch.ErrRefused):
		return nil, "", &task.Error{Code: task.EINVALID, Field: "image_url", Message: strings.TrimPrefix(err.Error(), "fetch: refused: ")}
	case errors.As(err, &status) && status.Status >= 400 && status.Status < 500 && status.Status != http.StatusTooManyRequests:
		return nil, "", &task.Error{Code: task.EINVALID, Field: "image_url", Message: fmt.Sprintf("the image URL answered %d", status.Status)}
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return nil, "", task.Invalid("image_url", "the image URL's host does not exist")
	case ctx.Err() != nil:
		return nil, "", provider.ErrorFromTransport(ctx, "image host", ctx.Err())
	}
	return nil, "", &provider.Error{Provider: "image host", Kind: provider.KindUnavailable, Message: "could not fetch the image URL"}
}

// fetchWait is how long a queued task waits, holding no worker slot,
// when the download pool has no room for it.
const fetchWait = time.Second

// fetchPlace takes a place in the download pool: a queued task that finds
// none goes back to wait (a provider.WaitError, which uses up no retry and
// holds no worker slot), a synchronous call waits for one within its
// deadline.
func (s *Service) fetchPlace(ctx context.Context) (release func(), err error) {
	if s.deps.Fetches == nil {
		return func() {}, nil
	}
	if _, queued := provider.DeferredWaits(ctx); queued {
		owner, _, _ := strings.Cut(provider.FlowKeyOf(ctx), "#") // its high lane is the same key
		if release, ok := s.deps.Fetches.TryTake(owner); ok {
			return release, nil
		}
		return nil, &provider.WaitError{Deployment: "image downloads", Reason: "downloads", Until: s.deps.Now().Add(fetchWait)}
	}
	release, err = s.deps.Fetches.Take(ctx, auth.FromContext(ctx).Owner())
	if err != nil {
		return nil, provider.ErrorFromTransport(ctx, "image host", err)
	}
	return release, nil
}

func (s *Service) describeImage(ctx context.Context, in task.DescribeImageInput) (*task.TextResult, error) {
	img, kind, err := s.image(ctx, in)
	if err != nil {
		return nil, err
	}
	return s.visionCall(ctx, in, img, kind)
}

// visionCall asks the vision provider about img.
func (s *Service) visionCall(ctx context.Context, in task.DescribeImageInput, img []byte, kind string) (*task.TextResult, error) {
	vision := s.deps.Providers.Vision
	req := provider.VisionRequest{Prompt: in.PromptOrDefault(), Image: img, MediaType: kind, Model: in.Model}
	if in.MaxTokens != nil {
		req.MaxTokens = *in.MaxTokens
	}
	out, err := vision.DescribeImage(provider.WithResponseLimit(ctx, provider.TextResponseLimit(req.MaxTokens, false)), req)
	if err != nil {
		return nil, err
	}
	return textResult(vision, out), nil
}
