package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/siganteng/siganteng/internal/auth"
	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
)

// StoredBytes counts, per API key, the bytes kept in the artifact store.
type StoredBytes interface {
	// Charge counts size bytes under key until expires; with quota > 0 it
	// refuses with store.ErrStorageQuota a charge that would pass it.
	Charge(ctx context.Context, owner, key string, size, quota int64, expires, now time.Time) error
	// Uncharge stops counting key, once its artifact is deleted.
	Uncharge(ctx context.Context, owner, key string, now time.Time) error
	// Stored is what owner keeps now.
	Stored(ctx context.Context, owner string, now time.Time) (int64, error)
}

// quotaError is the 429 of a key at its storage quota.
func (s *Service) quotaError() error {
	return &task.Error{Code: task.ELIMITED, RetryAfter: time.Minute, Message: fmt.Sprintf(
		"this API key keeps %d bytes of uploads and results, its quota (MAX_STORED_BYTES_PER_KEY); "+
			"more can be stored as older results expire", s.cfg.MaxStoredBytesPerKey)}
}

// checkStored refuses a submit that would store bytes (an upload, or
// speech to come) for a key already at its quota.
func (s *Service) checkStored(ctx context.Context) error {
	owner := auth.FromContext(ctx).Owner()
	if s.deps.Stored == nil || s.cfg.MaxStoredBytesPerKey <= 0 || owner == "" {
		return nil
	}
	n, err := s.deps.Stored.Stored(ctx, owner, s.deps.Now())
	switch {
	case err != nil:
		return task.Unavailable("the task store is unavailable; nothing was queued", err)
	case n >= s.cfg.MaxStoredBytesPerKey:
		return s.quotaError()
	}
	return nil
}

// putInput stores a submit's upload under the task's input key and counts
// it against the caller's quota; past the quota it is deleted again.
func (s *Service) putInput(ctx context.Context, id string, body io.Reader) error {
	return s.putKey(ctx, task.InputKey(id), body)
}

// putKey is putInput under any key.
func (s *Service) putKey(ctx context.Context, key string, body io.Reader) error {
	size, err := s.deps.Artifacts.Put(ctx, key, body)
	if err != nil {
		if errors.Is(err, errTooLarge) {
			return s.tooLarge("file")
		}
		return task.Unavailable("the artifact store is unavailable; nothing was queued", err)
	}
	owner := auth.FromContext(ctx).Owner()
	if s.deps.Stored == nil || owner == "" {
		return nil
	}
	now := s.deps.Now()
	err = s.deps.Stored.Charge(ctx, owner, key, size, s.cfg.MaxStoredBytesPerKey, now.Add(s.cfg.ArtifactTTL), now)
	if err == nil {
		return nil
	}
	_ = s.deps.Artifacts.Delete(context.WithoutCancel(ctx), key)
	if errors.Is(err, store.ErrStorageQuota) {
		return s.quotaError()
	}
	return task.Unavailable("the task store is unavailable; nothing was queued", err)
}

// hasUpload reports whether a submit of typ stores an input (the upload)
// in the artifact store.
func hasUpload(typ task.Type) bool {
	return typ == task.TypeSpeechToText || typ == task.TypeDescribeImage
}

// dropInput deletes the upload of task id, submitted by owner, and stops
// counting it against owner's quota.
func (s *Service) dropInput(ctx context.Context, id, owner string) {
	s.dropKey(ctx, task.InputKey(id), owner)
}

// dropKey deletes the input under key and stops counting it.
func (s *Service) dropKey(ctx context.Context, key, owner string) {
	if s.deps.Artifacts == nil {
		return
	}
	ctx = context.WithoutCancel(ctx)
	_ = s.deps.Artifacts.Delete(ctx, key)
	if s.deps.Stored == nil || owner == "" {
		return
	}
	if err := s.deps.Stored.Uncharge(ctx, owner, key, s.deps.Now()); err != nil {
		s.deps.Log.WarnContext(ctx, "stored bytes not released", "key", key, "err", err)
	}
}

// chargeStored counts a result the worker stored against its task's owner,
// without refusing it: the work is done, and later submits see the total.
func (s *Service) chargeStored(ctx context.Context, id, key string, size int64) {
	if s.deps.Stored == nil {
		return
	}
	rec, err := s.deps.Records.Get(ctx, id)
	if err != nil || rec.Owner == "" {
		return
	}
	now := s.deps.Now()
	if err := s.deps.Stored.Charge(ctx, rec.Owner, key, size, 0, now.Add(s.cfg.ArtifactTTL), now); err != nil {
		s.deps.Log.WarnContext(ctx, "stored bytes not counted", "task_id", id, "err", err)
	}
}

// DiscardInput deletes the upload of a task of typ that ended (failed,
// revoked, lost, or succeeded with the answer safe): nothing will read it
// again. Kinds without uploads cost nothing.
func (s *Service) DiscardInput(ctx context.Context, id string, typ task.Type) error {
	if !hasUpload(typ) && typ != task.TypeGenerateText || s.deps.Artifacts == nil {
		return nil
	}
	owner, images := "", 0
	rec, err := s.deps.Records.Get(ctx, id)
	if err == nil {
		owner = rec.Owner
	}
	if typ == task.TypeGenerateText {
		// Its images only: a response's kept request is shown back after
		// the end, until the record goes.
		if err == nil {
			images = storedImagesOf(rec)
		}
		s.dropImages(ctx, id, owner, images)
		return nil
	}
	s.dropInput(ctx, id, owner)
	return nil
}
