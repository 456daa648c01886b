package service_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/auth"
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
	records := store.New(rdb, time.Hour)
	svc := service.New(service.Deps{
		Records:   records,
		Keys:      records,
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
	ctx := asSystem()
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

	// An Idempotency-Key adds two: claim the key, then settle it.
	trips.Reset()
	_, _, err = svc.Idempotent(ctx, "rt-key", task.TypeGenerateText, in, func() (*task.Record, error) {
		return svc.SubmitGenerateText(ctx, in)
	})
	require.NoError(t, err)
	require.EqualValues(t, 4, trips.Count(), "keyed submit")
}

// A key's task past its window waits in the key's line: its submit is the
// create script alone, one round trip, and nothing reaches the queue.
func TestATaskInItsKeysLineIsSubmittedInOneRoundTrip(t *testing.T) {
	t.Parallel()
	svc, trips, rdb := redisService(t)
	ctx := auth.WithCaller(context.Background(), auth.Caller{KeyID: "sgk_alice0000000"})
	_, err := store.New(rdb, time.Hour).AdmitFromLines(ctx, store.Admission{Process: "w", Slots: 1, Window: 1, Lapse: time.Minute, Most: 1}, time.Now())
	require.NoError(t, err)
	in := task.GenerateTextInput{Prompt: "count my round trips"}
	first, err := svc.SubmitGenerateText(ctx, in) // the window's one place; warms the connection
	require.NoError(t, err)
	require.Nil(t, first.Waiting)

	trips.Reset()
	rec, err := svc.SubmitGenerateText(ctx, in)
	require.NoError(t, err)
	require.EqualValues(t, 1, trips.Count(), "submit into the line")
	require.NotNil(t, rec.Waiting)
	require.Equal(t, task.WaitKeyShare, rec.Waiting.Reason)
	_, err = asynq.NewInspectorFromRedisClient(rdb).GetTaskInfo(queue.Name(task.TypeGenerateText, ""), rec.ID)
	require.ErrorIs(t, err, asynq.ErrTaskNotFound, "not queued")
}

func BenchmarkSubmit(b *testing.B) {
	svc, trips, _ := redisService(b)
	ctx := asSystem()
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
	ctx := asSystem()
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
		if _, err := svc.Execute(asSystem(), "big", task.TypeTextToSpeech, []byte(`{"text":"long"}`), nil); err != nil {
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

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	svc, _, rdb := redisService(t)
	ctx := asSystem()
	in := task.GenerateTextInput{Prompt: "once"}
	submit := func(in task.GenerateTextInput) func() (*task.Record, error) {
		return func() (*task.Record, error) { return svc.SubmitGenerateText(ctx, in) }
	}

	first, replayed, err := svc.Idempotent(ctx, "key-1", task.TypeGenerateText, in, submit(in))
	require.NoError(t, err)
	require.False(t, replayed)
	again, replayed, err := svc.Idempotent(ctx, "key-1", task.TypeGenerateText, in, submit(in))
	require.NoError(t, err)
	require.True(t, replayed)
	require.Equal(t, first.ID, again.ID)

	other := task.GenerateTextInput{Prompt: "something else"}
	_, _, err = svc.Idempotent(ctx, "key-1", task.TypeGenerateText, other, submit(other))
	require.Equal(t, task.EINVALID, task.CodeOf(err))

	ttl, err := rdb.TTL(ctx, "{siganteng}:idem::key-1").Result() // no owner: a caller of an open API
	require.NoError(t, err)
	require.InDelta(t, (24 * time.Hour).Seconds(), ttl.Seconds(), 5, "keys are kept a day")

	n, err := rdb.ZCard(ctx, store.UnfinishedKey).Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "one task for one key")
}

func TestIdempotencyKeyUnderConcurrency(t *testing.T) {
	t.Parallel()
	svc, _, rdb := redisService(t)
	ctx := asSystem()
	in := task.GenerateTextInput{Prompt: "at the same time"}
	ids := make(chan string, 20)
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec, _, err := svc.Idempotent(ctx, "racy", task.TypeGenerateText, in, func() (*task.Record, error) {
				time.Sleep(50 * time.Millisecond) // a slow submit, so the others find the key pending
				return svc.SubmitGenerateText(ctx, in)
			})
			if err == nil {
				ids <- rec.ID
			}
		}()
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		seen[id] = true
	}
	require.Len(t, seen, 1, "twenty concurrent requests with one key made one task")
	n, err := rdb.ZCard(ctx, store.UnfinishedKey).Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
}

func TestIdempotencyKeyIsFreedWhenSubmitFails(t *testing.T) {
	t.Parallel()
	svc, _, _ := redisService(t)
	ctx := asSystem()
	in := task.GenerateTextInput{Prompt: "retry me"}
	_, _, err := svc.Idempotent(ctx, "k", task.TypeGenerateText, in, func() (*task.Record, error) {
		return nil, task.Unavailable("the queue is unavailable", nil)
	})
	require.Equal(t, task.EUNAVAILABLE, task.CodeOf(err))
	rec, replayed, err := svc.Idempotent(ctx, "k", task.TypeGenerateText, in, func() (*task.Record, error) { return svc.SubmitGenerateText(ctx, in) })
	require.NoError(t, err, "a retry after a failed submit goes ahead")
	require.False(t, replayed)
	require.NotEmpty(t, rec.ID)
}

func TestIdempotencyKeyStillSubmittingIsConflict(t *testing.T) {
	t.Parallel()
	svc, _, _ := redisService(t)
	ctx := asSystem()
	in := task.GenerateTextInput{Prompt: "slow first"}
	release := make(chan struct{})
	first := make(chan error, 1)
	go func() {
		_, _, err := svc.Idempotent(ctx, "slow", task.TypeGenerateText, in, func() (*task.Record, error) {
			<-release // a submit stuck longer than the second request will wait
			return svc.SubmitGenerateText(ctx, in)
		})
		first <- err
	}()
	time.Sleep(50 * time.Millisecond)
	begin := time.Now()
	_, _, err := svc.Idempotent(ctx, "slow", task.TypeGenerateText, in, func() (*task.Record, error) {
		t.Error("a second request with the key must not submit")
		return nil, nil
	})
	require.Equal(t, task.ECONFLICT, task.CodeOf(err))
	require.InDelta(t, 3.0, time.Since(begin).Seconds(), 0.5, "it waits about 3 s for the first")
	close(release)
	require.NoError(t, <-first)
}

func TestTenantsAreKeptApart(t *testing.T) {
	t.Parallel()
	svc, _, _ := redisService(t)
	ctx := asSystem()
	alice := auth.WithCaller(ctx, auth.Caller{KeyID: "sgk_alice0000000"})
	bob := auth.WithCaller(ctx, auth.Caller{KeyID: "sgk_bob000000000"})
	admin := auth.WithCaller(ctx, auth.Caller{KeyID: "sgk_admin0000000", Admin: true})
	in := task.GenerateTextInput{Prompt: "mine"}
	submit := func(c context.Context) func() (*task.Record, error) {
		return func() (*task.Record, error) { return svc.SubmitGenerateText(c, in) }
	}

	a, _, err := svc.Idempotent(alice, "same-key", task.TypeGenerateText, in, submit(alice))
	require.NoError(t, err)
	require.Equal(t, "sgk_alice0000000", a.Owner)
	b, replayed, err := svc.Idempotent(bob, "same-key", task.TypeGenerateText, in, submit(bob))
	require.NoError(t, err)
	require.False(t, replayed, "another caller's Idempotency-Key is another key")
	require.NotEqual(t, a.ID, b.ID)

	// Bob cannot see, download from, or cancel Alice's task: it is a 404 to him.
	for _, op := range []func() error{
		func() error { _, err := svc.Get(bob, a.ID); return err },
		func() error { _, err := svc.Cancel(bob, a.ID); return err },
		func() error { _, _, err := svc.OpenArtifact(bob, a.ID); return err },
	} {
		require.Equal(t, task.ENOTFOUND, task.CodeOf(op()))
	}
	rec, err := svc.Get(alice, a.ID)
	require.NoError(t, err)
	require.Equal(t, task.StatusPending, rec.Status, "Bob's cancel changed nothing")
	_, err = svc.Get(admin, a.ID)
	require.NoError(t, err, "an admin sees every task")

	page, err := svc.List(bob, service.ListQuery{Limit: 10})
	require.NoError(t, err)
	require.Len(t, page.Tasks, 1)
	require.Equal(t, b.ID, page.Tasks[0].ID)
	page, err = svc.List(admin, service.ListQuery{Limit: 10})
	require.NoError(t, err)
	require.Len(t, page.Tasks, 2)
}

func TestUnfinishedTasksPerKeyAreBounded(t *testing.T) {
	t.Parallel()
	svc, _, _ := redisService(t)
	ctx := auth.WithCaller(asSystem(), auth.Caller{KeyID: "sgk_busy00000000", MaxUnfinished: 2})
	for range 2 {
		_, err := svc.SubmitGenerateText(ctx, task.GenerateTextInput{Prompt: "p"})
		require.NoError(t, err)
	}
	_, err := svc.SubmitGenerateText(ctx, task.GenerateTextInput{Prompt: "p"})
	require.Equal(t, task.ELIMITED, task.CodeOf(err))
	require.ErrorContains(t, err, "2 unfinished tasks")

	other := auth.WithCaller(asSystem(), auth.Caller{KeyID: "sgk_other0000000", MaxUnfinished: 2})
	_, err = svc.SubmitGenerateText(other, task.GenerateTextInput{Prompt: "p"})
	require.NoError(t, err, "the limit is per key")
}
