package e2e_test

import (
	"bufio"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/siganteng/siganteng/internal/provider/providertest"
	"github.com/siganteng/siganteng/internal/redistest"
)

// frontBench is a server over an instant OpenAI fake on a private Redis,
// with a client that keeps its connections, and the fake's own address.
func frontBench(b *testing.B) (*server, *providertest.OpenAIFake, *http.Client) {
	fake := providertest.NewOpenAIFake()
	b.Cleanup(fake.Close)
	env := frontEnv(b, fake, "redis://"+redistest.StartServer(b).Addr)
	env["ARTIFACT_DIR"] = b.TempDir()
	env["LOG_LEVEL"] = "warn"
	env["WORKER_POLL_INTERVAL"] = "" // the default
	s := start(b, "serve", env)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	return s, fake, client
}

func post(b *testing.B, client *http.Client, url, body string) *http.Response {
	res, err := client.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		b.Fatalf("%s answered %d", url, res.StatusCode)
	}
	return res
}

// untilFirstText reads a chat stream until its first piece of text and
// returns when it came; the rest is read to the end.
func untilFirstText(b *testing.B, res *http.Response) time.Time {
	defer res.Body.Close()
	var first time.Time
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if first.IsZero() && strings.Contains(sc.Text(), `"content":"echo`) {
			first = time.Now()
		}
	}
	if first.IsZero() {
		b.Fatal("the stream held no text")
	}
	return first
}

func percentile(d []time.Duration, p int) float64 {
	slices.Sort(d)
	return ms(d[min(len(d)-1, len(d)*p/100)])
}

// BenchmarkChatCompletionsOverhead measures what /v1/chat/completions adds
// over calling the provider directly, with an instant provider: the two
// are called in turn in one loop, so both see the same machine. It reports
// each one's p50 and p99 and the added p50; and, streamed, the time to the
// first token both ways.
func BenchmarkChatCompletionsOverhead(b *testing.B) {
	s, fake, client := frontBench(b)
	body := `{"model":"gpt-test","messages":[{"role":"user","content":"how much do you add?"}],"max_tokens":16}`
	streamed := `{"model":"gpt-test","stream":true,"messages":[{"role":"user","content":"how much do you add?"}],"max_tokens":16}`
	for _, url := range []string{fake.URL(), s.url + "/v1"} { // warm both
		res := post(b, client, url+"/chat/completions", body)
		res.Body.Close()
	}
	b.Run("plain", func(b *testing.B) {
		direct, front := alternate(b, []string{fake.URL(), s.url + "/v1"}, func(url string) time.Duration {
			begin := time.Now()
			res := post(b, client, url+"/chat/completions", body)
			_, _ = bufio.NewReader(res.Body).WriteTo(discard{})
			res.Body.Close()
			return time.Since(begin)
		})
		b.ReportMetric(percentile(direct, 50), "direct-p50-ms")
		b.ReportMetric(percentile(direct, 99), "direct-p99-ms")
		b.ReportMetric(percentile(front, 50), "v1-p50-ms")
		b.ReportMetric(percentile(front, 99), "v1-p99-ms")
		b.ReportMetric(percentile(front, 50)-percentile(direct, 50), "added-p50-ms")
	})
	b.Run("stream", func(b *testing.B) {
		direct, front := alternate(b, []string{fake.URL(), s.url + "/v1"}, func(url string) time.Duration {
			begin := time.Now()
			return untilFirstText(b, post(b, client, url+"/chat/completions", streamed)).Sub(begin)
		})
		b.ReportMetric(percentile(direct, 50), "direct-ttft-p50-ms")
		b.ReportMetric(percentile(front, 50), "v1-ttft-p50-ms")
		b.ReportMetric(percentile(front, 99), "v1-ttft-p99-ms")
		b.ReportMetric(percentile(front, 50)-percentile(direct, 50), "added-ttft-p50-ms")
	})
}

// alternate measures b.N rounds of calling measure on the first URL, then
// on the second, and returns each one's durations.
func alternate(b *testing.B, urls []string, measure func(url string) time.Duration) (first, second []time.Duration) {
	first, second = make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N)
	for range b.N {
		first = append(first, measure(urls[0]))
		second = append(second, measure(urls[1]))
	}
	return first, second
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkBackgroundResponsesCreated measures how many background
// responses 32 concurrent clients create per second (each one a task
// recorded and queued in Redis, then run by the same process's workers).
func BenchmarkBackgroundResponsesCreated(b *testing.B) {
	s, _, client := frontBench(b)
	body := `{"model":"gpt-test","input":"count me","background":true}`
	var created atomic.Int64
	b.ResetTimer()
	begin := time.Now()
	var wg sync.WaitGroup
	per := max(1, b.N/32)
	for range 32 {
		wg.Go(func() {
			for range per {
				res := post(b, client, s.url+"/v1/responses", body)
				_, _ = bufio.NewReader(res.Body).WriteTo(discard{})
				res.Body.Close()
				created.Add(1)
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(created.Load())/time.Since(begin).Seconds(), "created/s")
}
