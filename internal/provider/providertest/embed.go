package providertest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider"
)

// EmbedCall is an embeddings request as a fake received it.
type EmbedCall struct {
	Path          string
	Authorization string
	Model         string
	Input         []string
	Dimensions    *int
}

// EmbedFake is a fake that answers embeddings requests.
type EmbedFake interface {
	URL() string
	Close()
	Script(replies ...Reply)
	EmbedCalls() []EmbedCall
	ErrorReply(status int, message string, retryAfter time.Duration) Reply
}

// Vector is the vector every fake answers for input number i of text: easy
// to predict, different for every input.
func Vector(i int, text string, dims int) []float64 {
	if dims <= 0 {
		dims = 8
	}
	v := make([]float64, dims)
	for j := range v {
		v[j] = float64(i+1) + float64(len(text))/100 + float64(j)/1000
	}
	return v
}

func vectors(input []string, dims *int) [][]float64 {
	d := 0
	if dims != nil {
		d = *dims
	}
	out := make([][]float64, len(input))
	for i, text := range input {
		out[i] = Vector(i, text, d)
	}
	return out
}

// stringOrList reads an input that every embeddings API takes as one string
// or a list of them.
func stringOrList(raw json.RawMessage) []string {
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		return list
	}
	var one string
	_ = json.Unmarshal(raw, &one)
	return []string{one}
}

// recordEmbed stores call and returns the scripted reply, if any.
func (r *recorder) recordEmbed(call EmbedCall) (Reply, bool) {
	return r.take(func() { r.embedCalls = append(r.embedCalls, call) })
}

// EmbedCalls returns the embeddings requests received so far.
func (r *recorder) EmbedCalls() []EmbedCall { return snapshot(r, &r.embedCalls) }

// embeddings answers POST /v1/embeddings as OpenAI documents it.
func (f *OpenAIFake) embeddings(w http.ResponseWriter, req *http.Request) {
	raw := readBody(req)
	f.check(req, raw)
	var in struct {
		Model          string          `json:"model"`
		Input          json.RawMessage `json:"input"`
		Dimensions     *int            `json:"dimensions"`
		EncodingFormat string          `json:"encoding_format"`
	}
	_ = json.Unmarshal(raw, &in)
	input := stringOrList(in.Input)
	call := EmbedCall{Path: req.URL.Path, Authorization: req.Header.Get("Authorization"), Model: in.Model, Input: input, Dimensions: in.Dimensions}
	if reply, ok := f.recordEmbed(call); ok {
		write(w, req, reply)
		return
	}
	data := make([]map[string]any, len(input))
	for i, v := range vectors(input, in.Dimensions) {
		data[i] = map[string]any{"object": "embedding", "index": i, "embedding": v}
	}
	// Listed in reverse: the document does not promise the order, only the index.
	for i, j := 0, len(data)-1; i < j; i, j = i+1, j-1 {
		data[i], data[j] = data[j], data[i]
	}
	write(w, req, Reply{Body: mustJSON(map[string]any{
		"object": "list", "data": data, "model": in.Model,
		"usage": map[string]any{"prompt_tokens": 5 * len(input), "total_tokens": 5 * len(input)},
	})})
}

// embed answers POST /api/embed as Ollama documents it.
func (f *OllamaFake) embed(w http.ResponseWriter, req *http.Request) {
	var in struct {
		Model      string          `json:"model"`
		Input      json.RawMessage `json:"input"`
		Dimensions *int            `json:"dimensions"`
	}
	_ = json.Unmarshal(readBody(req), &in)
	input := stringOrList(in.Input)
	call := EmbedCall{Path: req.URL.Path, Authorization: req.Header.Get("Authorization"), Model: in.Model, Input: input, Dimensions: in.Dimensions}
	if reply, ok := f.recordEmbed(call); ok {
		write(w, req, reply)
		return
	}
	write(w, req, Reply{Body: mustJSON(map[string]any{
		"model": in.Model, "embeddings": vectors(input, in.Dimensions),
		"total_duration": 14143917, "load_duration": 1019500, "prompt_eval_count": 8 * len(input),
	})})
}

// HFInferenceFake speaks Hugging Face's hf-inference task pipelines.
type HFInferenceFake struct {
	recorder
	speechCalls []SpeechCall
}

// NewHFInferenceFake starts the fake on a loopback port.
func NewHFInferenceFake() *HFInferenceFake {
	f := &HFInferenceFake{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /models/{owner}/{name}/pipeline/feature-extraction", f.featureExtraction)
	mux.HandleFunc("POST /models/{owner}/{name}", f.model)
	f.srv = httptest.NewServer(mux)
	return f
}

// URL is the base to configure as HF_INFERENCE_URL.
func (f *HFInferenceFake) URL() string { return f.srv.URL }

func (f *HFInferenceFake) featureExtraction(w http.ResponseWriter, req *http.Request) {
	var in struct {
		Inputs json.RawMessage `json:"inputs"`
	}
	_ = json.Unmarshal(readBody(req), &in)
	input := stringOrList(in.Inputs)
	call := EmbedCall{Path: req.URL.Path, Authorization: req.Header.Get("Authorization"),
		Model: req.PathValue("owner") + "/" + req.PathValue("name"), Input: input}
	if reply, ok := f.recordEmbed(call); ok {
		write(w, req, reply)
		return
	}
	write(w, req, Reply{Body: mustJSON(vectors(input, nil))})
}

// ErrorReply is Hugging Face's {"error": "..."} body.
func (f *HFInferenceFake) ErrorReply(status int, message string, retryAfter time.Duration) Reply {
	return Reply{Status: status, Header: retryAfterHeader(retryAfter), Body: mustJSON(map[string]any{"error": message})}
}

// EmbedHarness describes an embeddings adapter to the conformance suite.
type EmbedHarness struct {
	Name         string
	NewFake      func(t *testing.T) EmbedFake
	NewAdapter   func(baseURL, key string) provider.Embedder
	Key          string
	Path         func(model string) string
	DefaultModel string
	Dimensions   bool // whether the provider can shorten vectors
}

// RunEmbed runs the conformance suite for embeddings adapters.
func RunEmbed(t *testing.T, h EmbedHarness) {
	t.Helper()
	setup := func(t *testing.T) (EmbedFake, provider.Embedder) {
		t.Helper()
		fake := h.NewFake(t)
		t.Cleanup(fake.Close)
		return fake, h.NewAdapter(fake.URL(), h.Key)
	}
	ctx := context.Background()
	input := []string{"kucing", "a much longer second sentence", "third"}

	t.Run("VectorsInInputOrder", func(t *testing.T) {
		t.Parallel()
		fake, e := setup(t)
		out, err := e.Embed(ctx, provider.EmbedRequest{Input: input, Model: "owner/emb-model"})
		require.NoError(t, err)
		require.Len(t, out.Vectors, 3)
		for i, text := range input {
			require.Equal(t, Vector(i, text, 8), out.Vectors[i], "vector %d", i)
		}
		call := fake.EmbedCalls()[0]
		require.Equal(t, h.Path("owner/emb-model"), call.Path)
		require.Equal(t, input, call.Input)
		if h.Key != "" {
			require.Equal(t, "Bearer "+h.Key, call.Authorization)
		}
	})

	t.Run("DefaultModel", func(t *testing.T) {
		t.Parallel()
		fake, e := setup(t)
		_, err := e.Embed(ctx, provider.EmbedRequest{Input: []string{"x"}})
		require.NoError(t, err)
		require.Equal(t, h.DefaultModel, fake.EmbedCalls()[0].Model)
	})

	t.Run("Dimensions", func(t *testing.T) {
		t.Parallel()
		fake, e := setup(t)
		out, err := e.Embed(ctx, provider.EmbedRequest{Input: []string{"x"}, Model: "owner/m", Dimensions: 4})
		if !h.Dimensions {
			var perr *provider.Error
			require.ErrorAs(t, err, &perr)
			require.Equal(t, provider.KindRejected, perr.Kind)
			return
		}
		require.NoError(t, err)
		require.Len(t, out.Vectors[0], 4)
		require.Equal(t, 4, *fake.EmbedCalls()[0].Dimensions)
	})

	t.Run("WrongNumberOfVectors", func(t *testing.T) {
		t.Parallel()
		fake, e := setup(t)
		// A valid answer for one input, to a request for three.
		fake.Script(oneVectorReply(h.Name))
		_, err := e.Embed(ctx, provider.EmbedRequest{Input: input, Model: "owner/m"})
		var perr *provider.Error
		require.ErrorAs(t, err, &perr)
		require.Equal(t, provider.KindBadResponse, perr.Kind)
	})

	for _, tc := range []struct {
		status int
		kind   provider.Kind
	}{{http.StatusTooManyRequests, provider.KindRateLimited}, {http.StatusServiceUnavailable, provider.KindUnavailable},
		{http.StatusNotFound, provider.KindRejected}, {http.StatusUnauthorized, provider.KindAuth}} {
		t.Run(fmt.Sprintf("Error%d", tc.status), func(t *testing.T) {
			t.Parallel()
			fake, e := setup(t)
			fake.Script(fake.ErrorReply(tc.status, "model owner/m is loading "+h.Key, 4*time.Second))
			_, err := e.Embed(ctx, provider.EmbedRequest{Input: []string{"x"}, Model: "owner/m"})
			var perr *provider.Error
			require.ErrorAs(t, err, &perr)
			require.Equal(t, tc.kind, perr.Kind)
			require.Equal(t, h.Name, perr.Provider)
			if h.Key != "" {
				require.NotContains(t, perr.Error(), h.Key)
			}
		})
	}
}

// oneVectorReply is a valid one-vector answer in each provider's format.
func oneVectorReply(name string) Reply {
	v := [][]float64{Vector(0, "x", 8)}
	switch {
	case strings.Contains(name, "ollama"):
		return Reply{Body: mustJSON(map[string]any{"model": "m", "embeddings": v})}
	case strings.Contains(name, "huggingface"):
		return Reply{Body: mustJSON(v)}
	}
	return Reply{Body: mustJSON(map[string]any{"object": "list", "model": "m",
		"data":  []map[string]any{{"object": "embedding", "index": 0, "embedding": v[0]}},
		"usage": map[string]any{"prompt_tokens": 1, "total_tokens": 1}})}
}
