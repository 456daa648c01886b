package service

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/siganteng/siganteng/internal/artifact"
	"github.com/siganteng/siganteng/internal/auth"
	"github.com/siganteng/siganteng/internal/task"
)

// BatchStore keeps the records of files and batches (see store.Store).
type BatchStore interface {
	CreateFile(ctx context.Context, f task.File) error
	// GetFile returns a file's record, or a task.ENOTFOUND error.
	GetFile(ctx context.Context, id string) (*task.File, error)
	ListFiles(ctx context.Context, owner, purpose, after string, limit int, ascending bool) ([]task.File, bool, error)
	DeleteFile(ctx context.Context, f *task.File) error
	ExpiredFiles(ctx context.Context, now time.Time, n int) ([]string, error)
	ForgetFile(ctx context.Context, id string) error

	CreateBatch(ctx context.Context, b task.Batch) error
	// GetBatch returns a batch, or a task.ENOTFOUND error.
	GetBatch(ctx context.Context, id string) (*task.Batch, task.BatchProgress, error)
	ListBatches(ctx context.Context, owner, after string, limit int) ([]task.Batch, bool, error)
	CancelBatch(ctx context.Context, id string, at time.Time) error
	SaveBatch(ctx context.Context, b task.Batch) error
}

// BatchSteps queues a batch's runner.
type BatchSteps interface {
	EnqueueBatchStep(ctx context.Context, batchID string, step int, delay time.Duration) error
}

// Output files are kept 30 days unless asked, as OpenAI's.
const (
	DefaultOutputExpiry   = 30 * 24 * time.Hour
	batchCompletionWindow = "24h"
)

// FileInput is an upload to the Files API.
type FileInput struct {
	Filename string
	Purpose  string
	// ExpiresAfter is how long the file is kept after its creation; zero
	// keeps it until it is deleted.
	ExpiresAfter time.Duration
}

// NewFileID makes a file id as OpenAI's look ("file-" and hex), which is
// also its key in the artifact store.
func NewFileID() string { return "file-" + strings.ReplaceAll(uuid.NewString(), "-", "") }

// CreateFile stores an upload as a file of the caller's, streamed into the
// artifact store (never whole in memory): ETOOLARGE past MaxFileBytes,
// EINVALID for a purpose OpenAI does not name.
func (s *Service) CreateFile(ctx context.Context, in FileInput, body io.Reader) (*task.File, error) {
	if !slices.Contains(task.FilePurposes, in.Purpose) {
		return nil, task.Invalid("purpose", fmt.Sprintf("purpose must be one of %s", strings.Join(task.FilePurposes, ", ")))
	}
	if in.Filename == "" {
		return nil, task.Invalid("file", "file is required: a multipart part named file, with a filename")
	}
	f := task.File{ID: NewFileID(), Owner: auth.FromContext(ctx).Owner(), CreatedAt: s.deps.Now().UTC().Truncate(time.Second),
		Filename: in.Filename, Purpose: in.Purpose}
	if in.ExpiresAfter > 0 {
		at := f.CreatedAt.Add(in.ExpiresAfter)
		f.ExpiresAt = &at
	}
	limit := s.cfg.MaxFileBytes
	if limit <= 0 {
		limit = math.MaxInt64
	}
	size, err := s.deps.Artifacts.Put(ctx, f.ID, &limitedReader{r: body, max: limit})
	if errors.Is(err, errTooLarge) {
		_ = s.deps.Artifacts.Delete(context.WithoutCancel(ctx), f.ID)
		return nil, &task.Error{Code: task.ETOOLARGE, Field: "file", Message: fmt.Sprintf("the file is larger than MAX_FILE_BYTES (%d bytes)", s.cfg.MaxFileBytes)}
	}
	if err != nil {
		return nil, task.Unavailable("the artifact store is unavailable; the file was not kept", err)
	}
	f.Bytes = size
	if err := s.deps.Batches.CreateFile(ctx, f); err != nil {
		_ = s.deps.Artifacts.Delete(context.WithoutCancel(ctx), f.ID)
		return nil, task.Unavailable("the file store is unavailable; the file was not kept", err)
	}
	return &f, nil
}

// GetFile returns one of the caller's files; ENOTFOUND for any other.
func (s *Service) GetFile(ctx context.Context, id string) (*task.File, error) {
	f, err := s.deps.Batches.GetFile(ctx, id)
	switch {
	case task.CodeOf(err) == task.ENOTFOUND:
		return nil, err
	case err != nil:
		return nil, task.Unavailable("the file store is unavailable", err)
	case f.Owner != auth.FromContext(ctx).Owner():
		return nil, &task.Error{Code: task.ENOTFOUND, Message: fmt.Sprintf("no such file: %s", id)}
	}
	return f, nil
}

// OpenFile returns one of the caller's files and its bytes, to be closed.
func (s *Service) OpenFile(ctx context.Context, id string) (*task.File, artifact.Object, error) {
	f, err := s.GetFile(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	obj, err := s.deps.Artifacts.Open(ctx, id)
	if errors.Is(err, artifact.ErrNotFound) {
		return nil, nil, &task.Error{Code: task.ENOTFOUND, Message: fmt.Sprintf("the bytes of file %s are gone", id)}
	}
	if err != nil {
		return nil, nil, task.Unavailable("the artifact store is unavailable", err)
	}
	return f, obj, nil
}

// ListFiles lists the caller's files after the one named; order "asc" or
// "desc" (the default) by creation.
func (s *Service) ListFiles(ctx context.Context, purpose, after string, limit int, order string) ([]task.File, bool, error) {
	if limit < 1 || limit > 10000 {
		return nil, false, task.Invalid("limit", "limit must be 1 to 10000")
	}
	if order != "" && order != "asc" && order != "desc" {
		return nil, false, task.Invalid("order", "order must be asc or desc")
	}
	out, more, err := s.deps.Batches.ListFiles(ctx, auth.FromContext(ctx).Owner(), purpose, after, limit, order == "asc")
	if err != nil && task.CodeOf(err) != task.EINVALID {
		return nil, false, task.Unavailable("the file store is unavailable", err)
	}
	return out, more, err
}

// DeleteFile removes one of the caller's files, its record and its bytes.
func (s *Service) DeleteFile(ctx context.Context, id string) error {
	f, err := s.GetFile(ctx, id)
	if err != nil {
		return err
	}
	if err := s.deps.Batches.DeleteFile(ctx, f); err != nil {
		return task.Unavailable("the file store is unavailable", err)
	}
	if err := s.deps.Artifacts.Delete(ctx, id); err != nil {
		s.deps.Log.Warn("a deleted file's bytes were not removed; the artifact store keeps them", "file_id", id, "err", err)
	}
	return nil
}

// SweepFiles deletes files whose expiry has passed, records and bytes.
func (s *Service) SweepFiles(ctx context.Context, now time.Time) (int, error) {
	ids, err := s.deps.Batches.ExpiredFiles(ctx, now, 1000)
	if err != nil {
		return 0, err
	}
	for _, id := range ids {
		f, err := s.deps.Batches.GetFile(ctx, id)
		switch {
		case task.CodeOf(err) == task.ENOTFOUND:
			err = s.deps.Batches.ForgetFile(ctx, id)
		case err == nil:
			err = s.deps.Batches.DeleteFile(ctx, f)
		}
		if err != nil {
			return 0, err
		}
		if err := s.deps.Artifacts.Delete(ctx, id); err != nil {
			return 0, err
		}
	}
	return len(ids), nil
}

// BatchInput is what POST /v1/batches takes.
type BatchInput struct {
	InputFileID      string
	Endpoint         string
	CompletionWindow string
	Metadata         map[string]string
	// OutputExpiresAfter keeps the output and error files this long;
	// DefaultOutputExpiry when zero.
	OutputExpiresAfter time.Duration
	// Webhook receives the batch's end as an OpenAI webhook event, signed
	// as task webhooks are; "" for none.
	Webhook string
}

// CreateBatch checks a batch and queues its runner, which validates the
// input file's lines (the batch is validating until then) and runs them.
func (s *Service) CreateBatch(ctx context.Context, in BatchInput) (*task.Batch, error) {
	if _, ok := task.BatchEndpoints[in.Endpoint]; !ok {
		return nil, task.Invalid("endpoint", "endpoint must be /v1/chat/completions, /v1/responses or /v1/embeddings")
	}
	if in.CompletionWindow != batchCompletionWindow {
		return nil, task.Invalid("completion_window", "completion_window must be 24h")
	}
	if in.InputFileID == "" {
		return nil, task.Invalid("input_file_id", "input_file_id is required")
	}
	f, err := s.GetFile(ctx, in.InputFileID)
	if task.CodeOf(err) == task.ENOTFOUND {
		return nil, task.Invalid("input_file_id", fmt.Sprintf("no such file: %s", in.InputFileID))
	}
	if err != nil {
		return nil, err
	}
	if f.Purpose != task.PurposeBatch {
		return nil, task.Invalid("input_file_id", fmt.Sprintf("file %s has purpose %q; a batch reads a file of purpose batch", f.ID, f.Purpose))
	}
	hook, err := s.batchWebhook(in.Webhook)
	if err != nil {
		return nil, err
	}
	caller := auth.FromContext(ctx)
	rights, err := json.Marshal(caller)
	if err != nil {
		return nil, fmt.Errorf("service: encode the batch's caller: %w", err)
	}
	now := s.deps.Now().UTC().Truncate(time.Second)
	b := task.Batch{ID: "batch_" + hex.EncodeToString(uuidBytes()), Owner: caller.Owner(), InputFileID: f.ID, Endpoint: in.Endpoint,
		CompletionWindow: in.CompletionWindow, Metadata: in.Metadata, Status: task.BatchValidating, Caller: rights,
		OutputExpiresAfter: in.OutputExpiresAfter, CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour), WebhookURL: hook}
	if b.OutputExpiresAfter == 0 {
		b.OutputExpiresAfter = DefaultOutputExpiry
	}
	if err := s.deps.Batches.CreateBatch(ctx, b); err != nil {
		return nil, task.Unavailable("the batch store is unavailable; nothing was queued", err)
	}
	if err := s.deps.Steps.EnqueueBatchStep(ctx, b.ID, 0, 0); err != nil {
		// No runner will take it: it ends failed rather than validating forever.
		failed := s.deps.Now().UTC().Truncate(time.Second)
		b.Status, b.FailedAt = task.BatchFailed, &failed
		b.Errors = []task.BatchError{{Code: "unavailable", Message: "the queue was unavailable when the batch was created; create it again"}}
		if serr := s.deps.Batches.SaveBatch(context.WithoutCancel(ctx), b); serr != nil {
			s.deps.Log.Warn("a batch that was not queued stays validating", "batch_id", b.ID, "err", serr)
		}
		return nil, task.Unavailable("the queue is unavailable; nothing was queued", err)
	}
	return &b, nil
}

// batchWebhook checks a batch's webhook URL and seals it for keeping.
func (s *Service) batchWebhook(url string) (string, error) {
	if url == "" {
		return "", nil
	}
	if !s.cfg.WebhooksEnabled {
		return "", task.Invalid("webhook", "webhooks are off on this server: the operator has not set WEBHOOK_SECRET, which signs them")
	}
	if err := task.CheckWebhookURL(url); err != nil {
		return "", err
	}
	if s.deps.Sealer != nil {
		return s.deps.Sealer.Seal(url), nil
	}
	return url, nil
}

func uuidBytes() []byte {
	u := uuid.New()
	return u[:]
}

// GetBatch returns one of the caller's batches; ENOTFOUND for any other.
func (s *Service) GetBatch(ctx context.Context, id string) (*task.Batch, error) {
	b, _, err := s.deps.Batches.GetBatch(ctx, id)
	switch {
	case task.CodeOf(err) == task.ENOTFOUND:
		return nil, err
	case err != nil:
		return nil, task.Unavailable("the batch store is unavailable", err)
	case b.Owner != auth.FromContext(ctx).Owner():
		return nil, &task.Error{Code: task.ENOTFOUND, Message: fmt.Sprintf("no such batch: %s", id)}
	}
	return b, nil
}

// ListBatches lists the caller's batches, newest first, after the one named.
func (s *Service) ListBatches(ctx context.Context, after string, limit int) ([]task.Batch, bool, error) {
	if limit < 1 || limit > 100 {
		return nil, false, task.Invalid("limit", "limit must be 1 to 100")
	}
	out, more, err := s.deps.Batches.ListBatches(ctx, auth.FromContext(ctx).Owner(), after, limit)
	if err != nil && task.CodeOf(err) != task.EINVALID {
		return nil, false, task.Unavailable("the batch store is unavailable", err)
	}
	return out, more, err
}

// CancelBatch asks a batch's runner to stop: lines not yet started are
// revoked, running ones finish, what finished is written, and the batch
// ends cancelled. A batch that has ended is answered as it is.
func (s *Service) CancelBatch(ctx context.Context, id string) (*task.Batch, error) {
	b, err := s.GetBatch(ctx, id)
	if err != nil {
		return nil, err
	}
	if b.Status.Ended() {
		return b, nil
	}
	if err := s.deps.Batches.CancelBatch(ctx, id, s.deps.Now()); err != nil {
		return nil, task.Unavailable("the batch store is unavailable", err)
	}
	return s.GetBatch(ctx, id)
}
