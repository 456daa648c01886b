package loadtest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func post(t *testing.T, url, prompt string) *http.Response {
	t.Helper()
	res, err := http.Post(url+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"bench","messages":[{"role":"user","content":"`+prompt+`"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res
}

func TestTheBenchProviderEnforcesARequestsLimitAsOpenAIDoes(t *testing.T) {
	srv := httptest.NewServer(Provider{Limits: Limits{RPM: 6000}}.Handler())
	defer srv.Close()
	var (
		mu       sync.Mutex
		statuses = map[int]int{}
		refusal  *http.Response
		wg       sync.WaitGroup
	)
	began := time.Now()
	for range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := post(t, srv.URL, "hi")
			mu.Lock()
			defer mu.Unlock()
			statuses[res.StatusCode]++
			if res.StatusCode == http.StatusTooManyRequests && refusal == nil {
				refusal = res
			}
		}()
	}
	wg.Wait()
	// A burst takes one second's worth (100) and one more, and the budget
	// refills at 100 a second while the burst is sent: on a busy machine
	// (under -race, beside other tests) that takes a few hundred
	// milliseconds, not a few.
	refilled := int(time.Since(began).Seconds() * 100)
	if ok := statuses[200]; ok < 101 || ok > 101+refilled+10 {
		t.Fatalf("%d of 300 at once answered, want 101 and up to %d refilled (%v)", ok, refilled, statuses)
	}
	if statuses[200]+statuses[429] != 300 {
		t.Fatalf("statuses %v", statuses)
	}
	h := refusal.Header
	if h.Get("x-ratelimit-limit-requests") != "6000" || h.Get("x-ratelimit-remaining-requests") != "0" || h.Get("x-ratelimit-reset-requests") == "" {
		t.Fatalf("429 headers %v", h)
	}
	ms, err := strconv.Atoi(h.Get("retry-after-ms"))
	if err != nil || ms < 1 || ms > 3000 || h.Get("Retry-After") == "" {
		t.Fatalf("retry-after-ms %q, Retry-After %q", h.Get("retry-after-ms"), h.Get("Retry-After"))
	}
	var body struct {
		Error struct {
			Message, Type, Code string
		} `json:"error"`
	}
	if err := json.NewDecoder(refusal.Body).Decode(&body); err != nil || body.Error.Code != "rate_limit_exceeded" || body.Error.Type != "requests" {
		t.Fatalf("429 body %+v (%v)", body, err)
	}
	// After the wait it asked for, a call is answered again.
	time.Sleep(time.Duration(ms)*time.Millisecond + 20*time.Millisecond)
	if res := post(t, srv.URL, "hi"); res.StatusCode != 200 {
		t.Fatalf("after retry-after-ms: %d", res.StatusCode)
	}
	var stats map[string]int64
	res, err := http.Get(srv.URL + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(&stats); err != nil || stats["refused"] != int64(statuses[429]) {
		t.Fatalf("stats %v, want %d refused", stats, statuses[429])
	}
}

func TestTheBenchProviderCountsTokensAndCanStayQuiet(t *testing.T) {
	srv := httptest.NewServer(Provider{Limits: Limits{TPM: 600, Quiet: true}}.Handler()) // 10 tokens a second
	defer srv.Close()
	first := post(t, srv.URL, strings.Repeat("x", 36)) // 9 input tokens and 1 output: 10
	if first.StatusCode != 200 || first.Header.Get("x-ratelimit-limit-tokens") != "" {
		t.Fatalf("first call: %d, headers %v (quiet: none on success)", first.StatusCode, first.Header)
	}
	var body struct {
		Usage struct {
			PromptTokens int `json:"prompt_tokens"`
		} `json:"usage"`
	}
	if err := json.NewDecoder(first.Body).Decode(&body); err != nil || body.Usage.PromptTokens != 9 {
		t.Fatalf("usage %+v (%v)", body, err)
	}
	post(t, srv.URL, strings.Repeat("x", 36)) // within the second's tolerance
	third := post(t, srv.URL, strings.Repeat("x", 36))
	if third.StatusCode != 429 || third.Header.Get("x-ratelimit-limit-tokens") != "600" {
		t.Fatalf("third call: %d, headers %v", third.StatusCode, third.Header)
	}
}

func TestTheBenchProviderCanSayOnlyRetryAfter(t *testing.T) {
	srv := httptest.NewServer(Provider{Limits: Limits{RPM: 60, RetryAfterOnly: true}}.Handler()) // one a second
	defer srv.Close()
	first := post(t, srv.URL, "hi")
	post(t, srv.URL, "hi") // within the second's tolerance
	third := post(t, srv.URL, "hi")
	if first.StatusCode != 200 || third.StatusCode != 429 {
		t.Fatalf("statuses %d and %d, want 200 and 429", first.StatusCode, third.StatusCode)
	}
	for _, res := range []*http.Response{first, third} {
		for name := range res.Header {
			if strings.HasPrefix(strings.ToLower(name), "x-ratelimit") || strings.EqualFold(name, "retry-after-ms") {
				t.Fatalf("%d answer says %s: %v", res.StatusCode, name, res.Header)
			}
		}
	}
	if got := third.Header.Get("Retry-After"); got != "1" {
		t.Fatalf("Retry-After %q, want whole seconds (1)", got)
	}
}
