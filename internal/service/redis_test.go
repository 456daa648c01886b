package service_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/queue"
	"github.com/siganteng/siganteng/internal/redistest"
	"github.com/siganteng/siganteng/internal/service"
	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
)

// redisService is the service on a real Redis, with every round trip counted.
func redisService(tb testing.TB) (*service.Service, *redistest.RoundTrips, *redis.Client) {
	tb.Helper()
	rdb := redistest.Client(tb, redistest.URL(tb))
	trips := &redistest.RoundTrips{}
	rdb.AddHook(trips)
	svc := service.New(service.Deps{
		Records:   store.New(rdb, time.Hour),
		Queue:     queue.New(rdb, queue.Options{MaxRetry: 3, Timeout: time.Minute}),
		Providers: service.Providers{LLM: &fakeLLM{}},
		Log:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, service.Config{SyncTimeout: time.Second})
	return svc, trips, rdb
}

// The hot paths: at most 2 Redis round trips to submit, 1 to read a status.
func TestRoundTripsOnTheHotPaths(t *testing.T) {
	t.Parallel()
	svc, trips, _ := redisService(t)
	ctx := context.Background()
	in := task.GenerateTextInput{Prompt: "count my round trips"}

	// Warm up: the first enqueue registers the queue's name, and new pooled
	// connections send a handshake.
	warm, err := svc.SubmitGenerateText(ctx, in)
	require.NoError(t, err)
	_, err = svc.Get(ctx, warm.ID)
	require.NoError(t, err)

	trips.Reset()
	rec, err := svc.SubmitGenerateText(ctx, in)
	require.NoError(t, err)
	require.EqualValues(t, 2, trips.Count(), "submit")

	trips.Reset()
	got, err := svc.Get(ctx, rec.ID)
	require.NoError(t, err)
	require.Equal(t, task.StatusPending, got.Status)
	require.EqualValues(t, 1, trips.Count(), "status read")

	trips.Reset()
	_, err = svc.Get(ctx, "unknown")
	require.Equal(t, task.ENOTFOUND, task.CodeOf(err))
	require.EqualValues(t, 1, trips.Count(), "status read of an unknown id")
}

func BenchmarkSubmit(b *testing.B) {
	svc, trips, _ := redisService(b)
	ctx := context.Background()
	in := task.GenerateTextInput{Prompt: "Write a haiku about queues.", MaxTokens: new(64)}
	_, err := svc.SubmitGenerateText(ctx, in)
	require.NoError(b, err)
	trips.Reset()
	b.ReportAllocs()
	b.SetParallelism(16) // 32 concurrent callers on this 2-core machine, like many API clients
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := svc.SubmitGenerateText(ctx, in); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(trips.Count())/float64(b.N), "roundtrips/op")
}

func BenchmarkStatus(b *testing.B) {
	svc, trips, _ := redisService(b)
	ctx := context.Background()
	rec, err := svc.SubmitGenerateText(ctx, task.GenerateTextInput{Prompt: "p"})
	require.NoError(b, err)
	trips.Reset()
	b.ReportAllocs()
	b.SetParallelism(16) // 32 concurrent callers on this 2-core machine, like many API clients
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := svc.Get(ctx, rec.ID); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(trips.Count())/float64(b.N), "roundtrips/op")
}

// BenchmarkTextToSpeechArtifact streams 8 MiB of provider audio into the
// artifact store; B/op far below 8 MiB shows the worker never holds it.
func BenchmarkTextToSpeechArtifact(b *testing.B) {
	const size = 8 << 20
	tts := &sizedTTS{size: size}
	svc, _, _ := speechSetup(b, tts)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := svc.Execute(context.Background(), "big", task.TypeTextToSpeech, []byte(`{"text":"long"}`)); err != nil {
			b.Fatal(err)
		}
	}
}

type sizedTTS struct{ size int64 }

func (s *sizedTTS) Name() string { return "sized" }
func (s *sizedTTS) Synthesize(context.Context, provider.SpeechRequest) (provider.Audio, error) {
	return provider.Audio{Body: io.NopCloser(io.LimitReader(zeroReader{}, s.size)), ContentType: "audio/wav", Format: "wav"}, nil
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
