package artifact_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/artifact"
)

func TestPutOpen(t *testing.T) {
	t.Parallel()
	d, err := artifact.NewDir(filepath.Join(t.TempDir(), "nested", "dir"))
	require.NoError(t, err)
	ctx := context.Background()
	n, err := d.Put(ctx, "6f1c1d2e-0000-4000-8000-000000000000", strings.NewReader("RIFF audio"))
	require.NoError(t, err)
	require.EqualValues(t, 10, n)

	obj, err := d.Open(ctx, "6f1c1d2e-0000-4000-8000-000000000000")
	require.NoError(t, err)
	defer obj.Close()
	require.EqualValues(t, 10, obj.Size())
	_, err = obj.Seek(5, io.SeekStart)
	require.NoError(t, err)
	rest, err := io.ReadAll(obj)
	require.NoError(t, err)
	require.Equal(t, "audio", string(rest))
}

func TestKeysCannotLeaveTheFolder(t *testing.T) {
	t.Parallel()
	d, err := artifact.NewDir(t.TempDir())
	require.NoError(t, err)
	for _, key := range []string{"../x", "a/b", "", ".hidden", strings.Repeat("a", 65)} {
		_, err := d.Put(context.Background(), key, strings.NewReader("x"))
		require.Error(t, err, key)
		_, err = d.Open(context.Background(), key)
		require.ErrorIs(t, err, artifact.ErrNotFound, key)
	}
}

func TestMissingIsNotFound(t *testing.T) {
	t.Parallel()
	d, err := artifact.NewDir(t.TempDir())
	require.NoError(t, err)
	_, err = d.Open(context.Background(), "nope")
	require.ErrorIs(t, err, artifact.ErrNotFound)
}

type failing struct{ after int }

func (f *failing) Read(p []byte) (int, error) {
	if f.after <= 0 {
		return 0, errors.New("provider hung up")
	}
	f.after--
	return copy(p, "chunk"), nil
}

func TestFailedPutLeavesNothing(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	d, err := artifact.NewDir(root)
	require.NoError(t, err)
	_, err = d.Put(context.Background(), "k", &failing{after: 3})
	require.Error(t, err)
	entries, err := os.ReadDir(root)
	require.NoError(t, err)
	require.Empty(t, entries, "no half-written artifact, no temp file")
}

func TestSweepRemovesOnlyOldArtifacts(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	d, err := artifact.NewDir(root)
	require.NoError(t, err)
	ctx := context.Background()
	for _, k := range []string{"old", "new"} {
		_, err := d.Put(ctx, k, bytes.NewReader([]byte(k)))
		require.NoError(t, err)
	}
	past := time.Now().Add(-48 * time.Hour)
	require.NoError(t, os.Chtimes(filepath.Join(root, "old"), past, past))
	require.NoError(t, os.WriteFile(filepath.Join(root, "not ours.txt"), []byte("keep"), 0o600))
	require.NoError(t, os.Chtimes(filepath.Join(root, "not ours.txt"), past, past))

	removed, err := d.Sweep(context.Background(), 24*time.Hour, time.Now())
	require.NoError(t, err)
	require.Equal(t, 1, removed)
	_, err = d.Open(ctx, "old")
	require.ErrorIs(t, err, artifact.ErrNotFound)
	_, err = d.Open(ctx, "new")
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(root, "not ours.txt"))
	require.NoError(t, err)
}
