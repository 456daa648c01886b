package providertest

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"
)

// OpenAIFake speaks OpenAI's chat completions API under /v1, as documented in
// OpenAI's OpenAPI document. Its answers carry the optional fields the
// document's examples show, so adapters are tested against answers as rich as
// the real ones.
type OpenAIFake struct {
	recorder
	validate    func(*http.Request, []byte) error
	invalid     []string
	speechCalls []SpeechCall
	speechBytes int
}

// OpenAIOption configures an OpenAIFake.
type OpenAIOption func(*OpenAIFake)

// WithRequestValidator checks each request against a schema; failures are
// kept and returned by InvalidRequests.
func WithRequestValidator(validate func(*http.Request, []byte) error) OpenAIOption {
	return func(f *OpenAIFake) { f.validate = validate }
}

// WithDelay makes unscripted answers wait d, like a slow model.
func WithDelay(d time.Duration) OpenAIOption {
	return func(f *OpenAIFake) { f.delay = d }
}

// WithFailures lets fail choose, by call number (from 1), an answer to give
// instead of the default success; nil means succeed.
func WithFailures(fail func(n int) *Reply) OpenAIOption {
	return func(f *OpenAIFake) { f.failure = fail }
}

// NewOpenAIFake starts the fake on a loopback port.
func NewOpenAIFake(opts ...OpenAIOption) *OpenAIFake {
	f := &OpenAIFake{}
	f.toolReply = f.ToolCallReply
	for _, opt := range opts {
		opt(f)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", f.chat)
	mux.HandleFunc("GET /v1/models", f.models)
	mux.HandleFunc("POST /v1/audio/speech", f.speech)
	mux.HandleFunc("POST /v1/embeddings", f.embeddings)
	mux.HandleFunc("POST /v1/audio/transcriptions", f.transcriptions)
	f.srv = httptest.NewServer(mux)
	return f
}

// URL implements Fake.
func (f *OpenAIFake) URL() string { return f.srv.URL + "/v1" }

// InvalidRequests returns the validator's complaints so far.
func (f *OpenAIFake) InvalidRequests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.invalid...)
}

type openAIChatRequest struct {
	Model               string   `json:"model"`
	MaxTokens           *int     `json:"max_tokens"`
	MaxCompletionTokens *int     `json:"max_completion_tokens"`
	Temperature         *float64 `json:"temperature"`
	Stream              bool     `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	Messages []struct {
		Role      string          `json:"role"`
		Content   json.RawMessage `json:"content"`
		ToolCalls []struct {
			Function struct {
				Name string `json:"name"`
			} `json:"function"`
		} `json:"tool_calls"`
	} `json:"messages"`
	Tools []struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	} `json:"tools"`
	ToolChoice     json.RawMessage `json:"tool_choice"`
	ResponseFormat *struct {
		Type string `json:"type"`
	} `json:"response_format"`
}

// check keeps the validator's complaint about a request, if any.
func (f *OpenAIFake) check(req *http.Request, raw []byte) {
	if f.validate == nil {
		return
	}
	if err := f.validate(req, raw); err != nil {
		f.mu.Lock()
		f.invalid = append(f.invalid, err.Error())
		f.mu.Unlock()
	}
}

func (f *OpenAIFake) chat(w http.ResponseWriter, req *http.Request) {
	raw := readBody(req)
	f.check(req, raw)
	var in openAIChatRequest
	if err := json.Unmarshal(raw, &in); err != nil {
		write(w, req, f.ErrorReply(http.StatusBadRequest, "We could not parse the JSON body of your request.", 0))
		return
	}
	call := ChatCall{
		Method: req.Method, Path: req.URL.Path, Authorization: req.Header.Get("Authorization"),
		Model: in.Model, MaxTokens: in.MaxCompletionTokens, Temperature: in.Temperature, Stream: in.Stream, Raw: raw,
	}
	if call.MaxTokens == nil {
		call.MaxTokens = in.MaxTokens
	}
	for _, m := range in.Messages {
		text, images := contentParts(m.Content)
		msg := Message{Role: m.Role, Content: text}
		for _, c := range m.ToolCalls {
			msg.ToolCalls = append(msg.ToolCalls, c.Function.Name)
		}
		call.Messages = append(call.Messages, msg)
		call.Images = append(call.Images, images...)
	}
	if string(in.ToolChoice) != `"none"` {
		for _, t := range in.Tools {
			call.Tools = append(call.Tools, t.Function.Name)
		}
	}
	if in.ResponseFormat != nil && in.ResponseFormat.Type != "text" {
		call.Format = in.ResponseFormat.Type
	}
	reply := f.answer(call, f.TextReply)
	if !in.Stream || !isSuccess(reply) {
		write(w, req, reply)
		return
	}
	if waitReply(req, reply) {
		usage := in.StreamOptions != nil && in.StreamOptions.IncludeUsage
		streamLines(w, req, "text/event-stream", f.streamChunkDelay(), f.chunks(reply, usage))
	}
}

// chunks turns a chat.completion answer into the chat.completion.chunk
// events the document describes for stream: true: the role first, then the
// content piece by piece, then the finish reason, then (with include_usage)
// a chunk with no choices and the usage, then [DONE].
func (f *OpenAIFake) chunks(reply Reply, includeUsage bool) [][]byte {
	var done struct {
		Model   string `json:"model"`
		Choices []struct {
			Message struct {
				Content   string `json:"content"`
				ToolCalls []struct {
					ID       string `json:"id"`
					Function struct {
						Name      string `json:"name"`
						Arguments string `json:"arguments"`
					} `json:"function"`
				} `json:"tool_calls"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage json.RawMessage `json:"usage"`
	}
	_ = json.Unmarshal(reply.Body, &done)
	chunk := func(choices []map[string]any, usage any) []byte {
		return []byte("data: " + string(mustJSON(map[string]any{
			"id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "object": "chat.completion.chunk", "created": 1741570283,
			"model": done.Model, "system_fingerprint": "fp_06737a9306", "service_tier": "default",
			"choices": choices, "usage": usage,
		})) + "\n\n")
	}
	choice := func(delta map[string]any, finish any) []map[string]any {
		return []map[string]any{{"index": 0, "delta": delta, "logprobs": nil, "finish_reason": finish}}
	}
	text, finish := "", "stop"
	if len(done.Choices) > 0 {
		text, finish = done.Choices[0].Message.Content, done.Choices[0].FinishReason
	}
	lines := [][]byte{chunk(choice(map[string]any{"role": "assistant", "content": "", "refusal": nil}, nil), nil)}
	for _, piece := range words(text) {
		lines = append(lines, chunk(choice(map[string]any{"content": piece}, nil), nil))
	}
	if len(done.Choices) > 0 {
		// A tool call comes in pieces: its id and name first, then its
		// arguments in two halves, as OpenAI streams them.
		for i, c := range done.Choices[0].Message.ToolCalls {
			half := len(c.Function.Arguments) / 2
			lines = append(lines,
				chunk(choice(map[string]any{"tool_calls": []map[string]any{{"index": i, "id": c.ID, "type": "function",
					"function": map[string]any{"name": c.Function.Name, "arguments": ""}}}}, nil), nil),
				chunk(choice(map[string]any{"tool_calls": []map[string]any{{"index": i, "function": map[string]any{"arguments": c.Function.Arguments[:half]}}}}, nil), nil),
				chunk(choice(map[string]any{"tool_calls": []map[string]any{{"index": i, "function": map[string]any{"arguments": c.Function.Arguments[half:]}}}}, nil), nil))
		}
	}
	lines = append(lines, chunk(choice(map[string]any{}, finish), nil))
	if includeUsage {
		lines = append(lines, chunk([]map[string]any{}, done.Usage))
	}
	return append(lines, []byte("data: [DONE]\n\n"))
}

func (f *OpenAIFake) models(w http.ResponseWriter, req *http.Request) {
	write(w, req, Reply{Body: mustJSON(map[string]any{
		"object": "list",
		"data": []map[string]any{
			{"id": "gpt-4o-mini", "object": "model", "created": 1686935002, "owned_by": "openai"},
		},
	})})
}

// TextReply implements Fake with a chat.completion object shaped like the
// document's example, optional fields included.
func (f *OpenAIFake) TextReply(text, model string, promptTokens, completionTokens int64) Reply {
	if model == "" {
		model = "gpt-4o-mini-2024-07-18"
	}
	return Reply{Body: mustJSON(map[string]any{
		"id":      "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
		"object":  "chat.completion",
		"created": 1741570283,
		"model":   model,
		"choices": []map[string]any{{
			"index": 0,
			"message": map[string]any{
				"role": "assistant", "content": text, "refusal": nil, "annotations": []any{},
			},
			"logprobs":      nil,
			"finish_reason": "stop",
		}},
		"usage": map[string]any{
			"prompt_tokens": promptTokens, "completion_tokens": completionTokens,
			"total_tokens":          promptTokens + completionTokens,
			"prompt_tokens_details": map[string]any{"cached_tokens": 0, "audio_tokens": 0},
			"completion_tokens_details": map[string]any{
				"reasoning_tokens": 0, "audio_tokens": 0,
				"accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0,
			},
		},
		"service_tier":       "default",
		"system_fingerprint": "fp_06737a9306",
	})}
}

// ToolCallReply is a chat.completion whose answer calls function name with
// arguments args, as the document's function-calling example.
func (f *OpenAIFake) ToolCallReply(name, args, model string) Reply {
	reply := f.TextReply("", model, 82, 17)
	var body map[string]any
	_ = json.Unmarshal(reply.Body, &body)
	choice := body["choices"].([]any)[0].(map[string]any)
	choice["message"] = map[string]any{"role": "assistant", "content": nil, "refusal": nil, "annotations": []any{},
		"tool_calls": []map[string]any{{"id": "call_abc123", "type": "function",
			"function": map[string]any{"name": name, "arguments": args}}}}
	choice["finish_reason"] = "tool_calls"
	reply.Body = mustJSON(body)
	return reply
}

// ErrorReply implements Fake with OpenAI's error object.
func (f *OpenAIFake) ErrorReply(status int, message string, retryAfter time.Duration) Reply {
	typ := "invalid_request_error"
	code := any(nil)
	switch {
	case status == http.StatusTooManyRequests:
		typ, code = "requests", "rate_limit_exceeded"
	case status == http.StatusUnauthorized:
		code = "invalid_api_key"
	case status >= 500:
		typ = "server_error"
	}
	return Reply{Status: status, Header: retryAfterHeader(retryAfter), Body: mustJSON(map[string]any{
		"error": map[string]any{"message": message, "type": typ, "param": nil, "code": code},
	})}
}

// contentParts reads a message's content, a string or a list of parts, and
// returns its text and the images of its image_url parts (data URLs only:
// the adapter never hands a provider a URL to fetch).
func contentParts(raw json.RawMessage) (string, [][]byte) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var parts []struct {
		Type     string `json:"type"`
		Text     string `json:"text"`
		ImageURL struct {
			URL string `json:"url"`
		} `json:"image_url"`
	}
	if json.Unmarshal(raw, &parts) != nil {
		return string(raw), nil
	}
	var b strings.Builder
	var images [][]byte
	for _, p := range parts {
		b.WriteString(p.Text)
		if _, data, ok := strings.Cut(p.ImageURL.URL, ";base64,"); ok {
			if img, err := base64.StdEncoding.DecodeString(data); err == nil {
				images = append(images, img)
			}
		}
	}
	return b.String(), images
}

func lastUser(msgs []Message) string {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == "user" {
			return msgs[i].Content
		}
	}
	return ""
}
