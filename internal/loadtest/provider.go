// Package loadtest is `siganteng bench`: a load driver that measures a
// running SIGANTENG, and an instant OpenAI-compatible provider for it to run
// against, so the figures measure SIGANTENG rather than a model.
package loadtest

import (
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"time"
)

// Provider answers chat completions at once (or after Delay), failing a
// share of them (ErrorRate, half with 500 and half with 429) so that retries
// can be exercised under load.
type Provider struct {
	Delay     time.Duration
	ErrorRate float64
	// Limits, when set, are enforced like a hosted provider's.
	Limits Limits
}

// completion is a minimal chat.completion object as OpenAI documents it.
var completion = mustJSON(map[string]any{
	"id": "chatcmpl-bench", "object": "chat.completion", "created": 1741570283, "model": "bench",
	"choices": []map[string]any{{"index": 0, "message": map[string]any{"role": "assistant", "content": "ok"}, "finish_reason": "stop"}},
	"usage":   map[string]any{"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
})

// Handler serves POST /v1/chat/completions, POST /v1/embeddings (not
// failed), GET /v1/models, and GET /stats: how many chat completions were
// answered and how many refused with 429.
func (p Provider) Handler() http.Handler {
	mux := http.NewServeMux()
	lim := &limiter{Limits: p.Limits}
	limited := p.Limits.RPM > 0 || p.Limits.TPM > 0 || p.Limits.Concurrent > 0
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(mustJSON(map[string]int64{"answered": lim.answered.Load(), "refused": lim.refused.Load()}))
	})
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		body := completion
		if limited {
			prompt := promptTokens(r)
			if what, retry := lim.take(time.Now(), prompt+1, w.Header()); what != "" {
				lim.refused.Add(1)
				limit := p.Limits.RPM
				if what == "tokens" {
					limit = p.Limits.TPM
				}
				refuse(w, what, retry, limit, p.Limits.RetryAfterOnly)
				return
			}
			if p.Limits.Concurrent > 0 {
				if lim.inFlight.Add(1) > int64(p.Limits.Concurrent) {
					lim.inFlight.Add(-1)
					lim.refused.Add(1)
					refuse(w, "concurrent requests", time.Second, p.Limits.Concurrent, p.Limits.RetryAfterOnly)
					return
				}
				defer lim.inFlight.Add(-1)
			}
			body = completionWithUsage(prompt, 1)
		}
		lim.answered.Add(1)
		if p.Delay > 0 {
			select {
			case <-time.After(p.Delay):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		if p.ErrorRate > 0 && rand.Float64() < p.ErrorRate {
			if rand.IntN(2) == 0 {
				w.WriteHeader(http.StatusInternalServerError)
				_, _ = w.Write([]byte(`{"error":{"message":"bench: injected failure","type":"server_error","param":null,"code":null}}`))
				return
			}
			// An injected refusal is momentary, not a spent budget: it asks
			// for 50 ms (retry-after-ms, which OpenAI's clients read first).
			w.Header().Set("Retry-After", "1")
			w.Header().Set("retry-after-ms", "50")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte(`{"error":{"message":"bench: injected rate limit","type":"requests","param":null,"code":"rate_limit_exceeded"}}`))
			return
		}
		_, _ = w.Write(body)
	})
	mux.HandleFunc("POST /v1/embeddings", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Input []string `json:"input"`
		}
		if json.NewDecoder(r.Body).Decode(&req) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		data := make([]map[string]any, len(req.Input))
		for i := range req.Input {
			data[i] = map[string]any{"object": "embedding", "index": i, "embedding": []float64{0.1, 0.2, 0.3}}
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(mustJSON(map[string]any{"object": "list", "data": data, "model": "bench-embed",
			"usage": map[string]any{"prompt_tokens": len(req.Input), "total_tokens": len(req.Input)}}))
	})
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"object":"list","data":[{"id":"bench","object":"model","created":1686935002,"owned_by":"bench"}]}`))
	})
	return mux
}

// promptTokens counts a chat completion's input as OpenAI roughly does, a
// token for every four characters of its messages' text.
func promptTokens(r *http.Request) int64 {
	var req struct {
		Messages []struct {
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	_ = json.NewDecoder(r.Body).Decode(&req)
	chars := 0
	for _, m := range req.Messages {
		var s string
		if json.Unmarshal(m.Content, &s) == nil {
			chars += len(s)
		} else {
			chars += len(m.Content)
		}
	}
	return int64(max(chars/4, 1))
}

func completionWithUsage(prompt, completion int64) []byte {
	return mustJSON(map[string]any{
		"id": "chatcmpl-bench", "object": "chat.completion", "created": 1741570283, "model": "bench",
		"choices": []map[string]any{{"index": 0, "message": map[string]any{"role": "assistant", "content": "ok"}, "finish_reason": "stop"}},
		"usage":   map[string]any{"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
	})
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
