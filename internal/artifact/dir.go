// Package artifact keeps binary task results (audio) out of Redis: the
// record holds a reference, the bytes live here, and the API streams them.
package artifact

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// ErrNotFound is returned by Open for a key with no artifact.
var ErrNotFound = errors.New("artifact: not found")

// Object is a stored artifact opened for reading, seekable so that range
// requests are served without reading what comes before.
type Object interface {
	io.ReadSeekCloser
	Size() int64
	ModTime() time.Time
}

// Dir stores artifacts as files in one folder, which API and workers must
// share (one machine, or a shared volume).
type Dir struct{ root string }

// KeptByRecord reports whether the artifact under key lives as long as a
// record says, not RESULT_TTL: files of the Files API ("file-…", deleted
// when they expire or are deleted) and a batch's chunks ("batch-…",
// deleted when the batch ends), which the sweep leaves alone.
func KeptByRecord(key string) bool {
	return strings.HasPrefix(key, "file-") || strings.HasPrefix(key, "batch-")
}

// validKey admits task ids and nothing that could leave the folder.
var validKey = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

// tempPrefix marks files still being written; Sweep removes stale ones.
const tempPrefix = ".partial-"

// NewDir returns a store in root, creating it.
func NewDir(root string) (*Dir, error) {
	if err := os.MkdirAll(root, 0o750); err != nil {
		return nil, fmt.Errorf("artifact: create %s: %w", root, err)
	}
	return &Dir{root: root}, nil
}

// Root is the folder.
func (d *Dir) Root() string { return d.root }

func (d *Dir) path(key string) (string, error) {
	if !validKey.MatchString(key) {
		return "", fmt.Errorf("artifact: invalid key %q", key)
	}
	return filepath.Join(d.root, key), nil
}

// Put stores r under key, streaming it to disk; a reader never sees a
// half-written artifact, because the file is renamed into place when done.
func (d *Dir) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	path, err := d.path(key)
	if err != nil {
		return 0, err
	}
	tmp, err := os.CreateTemp(d.root, tempPrefix+key+"-*")
	if err != nil {
		return 0, fmt.Errorf("artifact: create: %w", err)
	}
	n, err := io.Copy(tmp, contextReader{ctx, r})
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return 0, fmt.Errorf("artifact: put %s: %w", key, err)
	}
	return n, nil
}

// Open opens the artifact under key, or returns ErrNotFound.
func (d *Dir) Open(_ context.Context, key string) (Object, error) {
	path, err := d.path(key)
	if err != nil {
		return nil, ErrNotFound
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("artifact: open %s: %w", key, err)
	}
	info, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("artifact: stat %s: %w", key, err)
	}
	return &file{File: f, info: info}, nil
}

// Delete removes the artifact under key; a missing one is not an error.
func (d *Dir) Delete(_ context.Context, key string) error {
	path, err := d.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("artifact: delete %s: %w", key, err)
	}
	return nil
}

// Sweep deletes artifacts last written more than maxAge ago: their records,
// which expire RESULT_TTL after the task ended, are gone too.
func (d *Dir) Sweep(_ context.Context, maxAge time.Duration, now time.Time) (removed int, err error) {
	entries, err := os.ReadDir(d.root)
	if err != nil {
		return 0, fmt.Errorf("artifact: sweep: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !(validKey.MatchString(name) || strings.HasPrefix(name, tempPrefix)) {
			continue // not ours
		}
		if KeptByRecord(name) {
			continue
		}
		info, err := e.Info()
		if err != nil || now.Sub(info.ModTime()) <= maxAge {
			continue
		}
		if os.Remove(filepath.Join(d.root, name)) == nil {
			removed++
		}
	}
	return removed, nil
}

type file struct {
	*os.File
	info os.FileInfo
}

func (f *file) Size() int64        { return f.info.Size() }
func (f *file) ModTime() time.Time { return f.info.ModTime() }

// contextReader stops a copy when ctx ends.
type contextReader struct {
	ctx context.Context
	r   io.Reader
}

func (c contextReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
