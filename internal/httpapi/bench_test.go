package httpapi_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/artifact"
	"github.com/siganteng/siganteng/internal/httpapi"
	"github.com/siganteng/siganteng/internal/task"
)

// fileTasks serves artifacts from a real folder store.
type fileTasks struct {
	fakeTasks
	dir *artifact.Dir
}

func (f *fileTasks) OpenArtifact(ctx context.Context, id string) (task.Artifact, artifact.Object, error) {
	obj, err := f.dir.Open(ctx, id)
	return task.Artifact{ContentType: "audio/wav"}, obj, err
}

// discardWriter is a ResponseWriter that keeps nothing, so the benchmark
// counts only what the server holds.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkArtifactDownload serves an 8 MiB artifact; B/op far below 8 MiB
// shows it is streamed from disk, not held in memory.
func BenchmarkArtifactDownload(b *testing.B) {
	const size = 8 << 20
	dir, err := artifact.NewDir(b.TempDir())
	require.NoError(b, err)
	_, err = dir.Put(context.Background(), "big", io.LimitReader(zeros{}, size))
	require.NoError(b, err)
	tasks := &fileTasks{dir: dir}
	h := httpapi.New(httpapi.Deps{Tasks: tasks, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Version: "bench",
		Ready: func(context.Context) error { return nil }})
	req := httptest.NewRequest(http.MethodGet, "/background/tasks/big/artifact", nil)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(&discardWriter{h: http.Header{}}, req)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
