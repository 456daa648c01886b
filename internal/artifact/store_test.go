package artifact_test

import (
	"bytes"
	"context"
	"io"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/artifact"
)

// store is what both implementations offer.
type store interface {
	Put(ctx context.Context, key string, r io.Reader) (int64, error)
	Open(ctx context.Context, key string) (artifact.Object, error)
	Delete(ctx context.Context, key string) error
	Sweep(ctx context.Context, maxAge time.Duration, now time.Time) (int, error)
}

// s3Server starts an S3-compatible server (gofakes3, from the Go module
// proxy) on a loopback port, over TLS as S3 is used in production, with a
// bucket.
func s3Server(t *testing.T) artifact.S3Config {
	t.Helper()
	backend := s3mem.New()
	srv := httptest.NewTLSServer(gofakes3.New(backend).Server())
	t.Cleanup(srv.Close)
	require.NoError(t, backend.CreateBucket("artifacts"))
	return artifact.S3Config{Endpoint: srv.URL, Bucket: "artifacts", Region: "us-east-1", Prefix: "siganteng/",
		AccessKey: "test-access", SecretKey: "test-secret", PathStyle: true, Transport: srv.Client().Transport}
}

func stores(t *testing.T) map[string]store {
	t.Helper()
	dir, err := artifact.NewDir(t.TempDir())
	require.NoError(t, err)
	s3, err := artifact.NewS3(s3Server(t))
	require.NoError(t, err)
	require.NoError(t, s3.Check(context.Background()))
	return map[string]store{"dir": dir, "s3": s3}
}

func TestStores(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			t.Run("PutOpenSeek", func(t *testing.T) {
				payload := bytes.Repeat([]byte("0123456789"), 700_000) // 7 MB: two parts on S3
				n, err := s.Put(ctx, "big", bytes.NewReader(payload))
				require.NoError(t, err)
				require.EqualValues(t, len(payload), n)
				obj, err := s.Open(ctx, "big")
				require.NoError(t, err)
				defer obj.Close()
				require.EqualValues(t, len(payload), obj.Size())
				require.False(t, obj.ModTime().IsZero())
				_, err = obj.Seek(6_000_005, io.SeekStart)
				require.NoError(t, err)
				buf := make([]byte, 10)
				_, err = io.ReadFull(obj, buf)
				require.NoError(t, err)
				require.Equal(t, "5678901234", string(buf))
			})
			t.Run("MissingIsNotFound", func(t *testing.T) {
				_, err := s.Open(ctx, "nope")
				require.ErrorIs(t, err, artifact.ErrNotFound)
				require.NoError(t, s.Delete(ctx, "nope"), "deleting what is not there is fine")
			})
			t.Run("InvalidKeys", func(t *testing.T) {
				for _, key := range []string{"../x", "a/b", ""} {
					_, err := s.Put(ctx, key, bytes.NewReader([]byte("x")))
					require.Error(t, err, key)
				}
			})
			t.Run("FailedPutLeavesNothing", func(t *testing.T) {
				_, err := s.Put(ctx, "broken", &failing{after: 2})
				require.Error(t, err)
				_, err = s.Open(ctx, "broken")
				require.ErrorIs(t, err, artifact.ErrNotFound)
			})
			t.Run("Delete", func(t *testing.T) {
				_, err := s.Put(ctx, "gone", bytes.NewReader([]byte("x")))
				require.NoError(t, err)
				require.NoError(t, s.Delete(ctx, "gone"))
				_, err = s.Open(ctx, "gone")
				require.ErrorIs(t, err, artifact.ErrNotFound)
			})
			t.Run("SweepRemovesOnlyOld", func(t *testing.T) {
				_, err := s.Put(ctx, "old", bytes.NewReader([]byte("old")))
				require.NoError(t, err)
				_, err = s.Put(ctx, "file-0123abcd", bytes.NewReader([]byte("a file of the Files API")))
				require.NoError(t, err)
				time.Sleep(2100 * time.Millisecond) // S3 keeps whole seconds
				// The sweep's "now" is taken before "new" is written, so a
				// stall of the machine after the write (the suite runs
				// beside this) cannot make "new" look old.
				written := time.Now()
				_, err = s.Put(ctx, "new", bytes.NewReader([]byte("new")))
				require.NoError(t, err)
				_, err = s.Sweep(ctx, 1500*time.Millisecond, written.Add(100*time.Millisecond))
				require.NoError(t, err)
				_, err = s.Open(ctx, "old")
				require.ErrorIs(t, err, artifact.ErrNotFound)
				obj, err := s.Open(ctx, "new")
				require.NoError(t, err)
				obj.Close()
				obj, err = s.Open(ctx, "file-0123abcd")
				require.NoError(t, err, "a file lives as long as its record says, not RESULT_TTL")
				obj.Close()
			})
		})
	}
}

func TestS3CheckFindsAMissingBucket(t *testing.T) {
	t.Parallel()
	cfg := s3Server(t)
	cfg.Bucket = "no-such-bucket"
	s3, err := artifact.NewS3(cfg)
	require.NoError(t, err)
	require.ErrorContains(t, s3.Check(context.Background()), "does not exist")
}
