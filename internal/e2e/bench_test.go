package e2e_test

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider/providertest"
	"github.com/siganteng/siganteng/internal/redistest"
)

// BenchmarkIdleLatency measures, on an idle system with the shipped
// WORKER_POLL_INTERVAL and an instant provider, the time from submit until a
// client polling every 2 ms sees SUCCESS.
func BenchmarkIdleLatency(b *testing.B) {
	s := idleServer(b)
	warm, _ := submit(b, s.url, `{"prompt":"warm up"}`)
	await(b, s.url, warm.TaskID, 5*time.Second)

	latencies := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		time.Sleep(time.Duration(rand.IntN(10)) * time.Millisecond) // arrive at a random moment
		begin := time.Now()
		rec, _ := submit(b, s.url, `{"prompt":"how fast?"}`)
		final, _ := await(b, s.url, rec.TaskID, 5*time.Second)
		if final.Status != "SUCCESS" {
			b.Fatalf("task ended %s", final.Status)
		}
		latencies = append(latencies, time.Since(begin))
	}
	b.StopTimer()
	slices.Sort(latencies)
	b.ReportMetric(ms(latencies[len(latencies)/2]), "p50-ms")
	b.ReportMetric(ms(latencies[len(latencies)*95/100]), "p95-ms")
}

// idleServer is one serve on a private redis-server, with the shipped
// WORKER_POLL_INTERVAL and an instant provider: what the idle figures are
// measured on.
func idleServer(b *testing.B) *server {
	fake := providertest.NewOpenAIFake()
	b.Cleanup(fake.Close)
	env := openAIEnv(b, fake, "redis://"+redistest.StartServer(b).Addr)
	env["WORKER_POLL_INTERVAL"] = "" // the default
	env["LOG_LEVEL"] = "warn"
	return start(b, "serve", env)
}

// BenchmarkIdleWorkerRedisCost measures what an idle worker's polling costs
// Redis: commands per second and Redis CPU, over 3 seconds, against a private
// redis-server.
func BenchmarkIdleWorkerRedisCost(b *testing.B) {
	for _, interval := range []string{"5ms", "1s"} {
		b.Run("poll="+interval, func(b *testing.B) {
			srv := redistest.StartServer(b)
			env := map[string]string{"REDIS_URL": "redis://" + srv.Addr, "WORKER_POLL_INTERVAL": interval, "LOG_LEVEL": "warn",
				"WEBHOOK_SECRET": testWebhookSecret} // the webhook dispatcher waits on Redis too
			start(b, "worker", env)
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
			b.Cleanup(func() { _ = rdb.Close() })
			time.Sleep(time.Second) // let start-up traffic pass
			for range b.N {
				cmds0, cpu0 := redisStats(b, rdb)
				const window = 3 * time.Second
				time.Sleep(window)
				cmds1, cpu1 := redisStats(b, rdb)
				b.ReportMetric(float64(cmds1-cmds0-1)/window.Seconds(), "redis-cmds/s")
				b.ReportMetric(100*(cpu1-cpu0)/window.Seconds(), "redis-cpu-%")
			}
		})
	}
}

func redisStats(tb testing.TB, rdb *redis.Client) (commands int64, cpuSeconds float64) {
	info, err := rdb.Info(context.Background(), "stats", "cpu").Result()
	require.NoError(tb, err)
	for _, line := range strings.Split(info, "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "total_commands_processed":
			commands, _ = strconv.ParseInt(v, 10, 64)
		case "used_cpu_sys", "used_cpu_user":
			f, _ := strconv.ParseFloat(v, 64)
			cpuSeconds += f
		}
	}
	return commands, cpuSeconds
}

// BenchmarkHTTP drives the real server over loopback HTTP from 32 concurrent
// clients: submits, and status reads of one task.
func BenchmarkHTTP(b *testing.B) {
	redisURL := "redis://" + redistest.StartServer(b).Addr
	s := start(b, "api", map[string]string{"REDIS_URL": redisURL, "LOG_LEVEL": "warn", "AUTH_DISABLED": "true"})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	rec, _ := submit(b, s.url, `{"prompt":"status target"}`)

	run := func(b *testing.B, do func() (*http.Response, error), want int) {
		b.SetParallelism(16)
		var mu sync.Mutex
		var failures int
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				res, err := do()
				if err != nil || res.StatusCode != want {
					mu.Lock()
					failures++
					mu.Unlock()
				}
				if res != nil {
					_, _ = io.Copy(io.Discard, res.Body) // drained, so the connection is reused
					res.Body.Close()
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		if failures > 0 {
			b.Fatalf("%d requests failed", failures)
		}
	}
	// The same requests with an API key, once keys exist: each request then
	// also passes the rate limiter (one more Redis round trip); the key
	// itself is read from Redis at most every 5 s.
	var key string
	request := func(method, url, body string) func() (*http.Response, error) {
		return func() (*http.Response, error) {
			req, err := http.NewRequest(method, url, strings.NewReader(body))
			if err != nil {
				return nil, err
			}
			req.Header.Set("Content-Type", "application/json")
			if key != "" {
				req.Header.Set("Authorization", "Bearer "+key)
			}
			return client.Do(req)
		}
	}
	submitReq := request(http.MethodPost, s.url+"/background/generate_text", `{"prompt":"Write a haiku about queues."}`)
	b.Run("submit", func(b *testing.B) { run(b, submitReq, http.StatusAccepted) })
	b.Run("status", func(b *testing.B) {
		run(b, request(http.MethodGet, s.url+"/background/tasks/"+rec.TaskID, ""), http.StatusOK)
	})
	key = createKey(b, redisURL, "--name", "bench", "--admin", "--rps", "1000000", "--max-unfinished", "100000000")
	keyed := start(b, "api", map[string]string{"REDIS_URL": redisURL, "LOG_LEVEL": "warn", "AUTH_DISABLED": "false"})
	keyedSubmit := request(http.MethodPost, keyed.url+"/background/generate_text", `{"prompt":"Write a haiku about queues."}`)
	b.Run("submit-with-key", func(b *testing.B) { run(b, keyedSubmit, http.StatusAccepted) })
	b.Run("status-with-key", func(b *testing.B) {
		run(b, request(http.MethodGet, keyed.url+"/background/tasks/"+rec.TaskID, ""), http.StatusOK)
	})
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
