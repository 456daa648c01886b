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
}

// completion is a minimal chat.completion object as OpenAI documents it.
var completion = mustJSON(map[string]any{
	"id": "chatcmpl-bench", "object": "chat.completion", "created": 1741570283, "model": "bench",
	"choices": []map[string]any{{"index": 0, "message": map[string]any{"role": "assistant", "content": "ok"}, "finish_reason": "stop"}},
	"usage":   map[string]any{"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
})

// Handler serves POST /v1/chat/completions, POST /v1/embeddings (not
// failed) and GET /v1/models.
func (p Provider) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
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
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte(`{"error":{"message":"bench: injected rate limit","type":"requests","param":null,"code":"rate_limit_exceeded"}}`))
			return
		}
		_, _ = w.Write(completion)
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

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
