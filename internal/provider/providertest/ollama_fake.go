package providertest

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"time"
)

// OllamaFake speaks Ollama's native API (/api/chat without streaming,
// /api/version) as Ollama's API reference documents it.
type OllamaFake struct {
	recorder
}

// NewOllamaFake starts the fake on a loopback port.
func NewOllamaFake() *OllamaFake {
	f := &OllamaFake{}
	f.toolReply = f.ToolCallReply
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/chat", f.chat)
	mux.HandleFunc("POST /api/embed", f.embed)
	mux.HandleFunc("GET /api/version", func(w http.ResponseWriter, req *http.Request) {
		write(w, req, Reply{Body: []byte(`{"version":"0.12.6"}`)})
	})
	f.srv = httptest.NewServer(mux)
	return f
}

// URL implements Fake.
func (f *OllamaFake) URL() string { return f.srv.URL }

func (f *OllamaFake) chat(w http.ResponseWriter, req *http.Request) {
	raw := readBody(req)
	var in struct {
		Model    string `json:"model"`
		Stream   *bool  `json:"stream"`
		Messages []struct {
			Role      string   `json:"role"`
			Content   string   `json:"content"`
			Images    []string `json:"images"`
			ToolCalls []struct {
				Function struct {
					Name      string         `json:"name"`
					Arguments map[string]any `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"messages"`
		Tools []struct {
			Function struct {
				Name string `json:"name"`
			} `json:"function"`
		} `json:"tools"`
		Format  json.RawMessage `json:"format"`
		Options struct {
			NumPredict  *int     `json:"num_predict"`
			Temperature *float64 `json:"temperature"`
		} `json:"options"`
	}
	if err := json.Unmarshal(raw, &in); err != nil {
		write(w, req, f.ErrorReply(http.StatusBadRequest, "invalid character in request body", 0))
		return
	}
	stream := in.Stream == nil || *in.Stream // Ollama streams unless told not to
	call := ChatCall{
		Method: req.Method, Path: req.URL.Path, Authorization: req.Header.Get("Authorization"),
		Model: in.Model, MaxTokens: in.Options.NumPredict, Temperature: in.Options.Temperature, Stream: stream, Raw: raw,
	}
	for _, t := range in.Tools {
		call.Tools = append(call.Tools, t.Function.Name)
	}
	switch {
	case string(in.Format) == `"json"`:
		call.Format = "json_object"
	case len(in.Format) > 0 && in.Format[0] == '{':
		call.Format = "json_schema"
	}
	for _, m := range in.Messages {
		msg := Message{Role: m.Role, Content: m.Content}
		for _, c := range m.ToolCalls {
			msg.ToolCalls = append(msg.ToolCalls, c.Function.Name)
		}
		call.Messages = append(call.Messages, msg)
		for _, img := range m.Images {
			b, err := base64.StdEncoding.DecodeString(img)
			if err != nil {
				write(w, req, f.ErrorReply(http.StatusBadRequest, "illegal base64 data in images", 0))
				return
			}
			call.Images = append(call.Images, b)
		}
	}
	reply := f.answer(call, f.TextReply)
	if !stream || !isSuccess(reply) {
		write(w, req, reply)
		return
	}
	if waitReply(req, reply) {
		streamLines(w, req, "application/x-ndjson", f.streamChunkDelay(), f.chunks(reply))
	}
}

// chunks turns a final chat answer into the newline-delimited objects the
// reference documents for a streamed chat: one per piece of content with
// done false, then a last one with done true and the counts.
func (f *OllamaFake) chunks(reply Reply) [][]byte {
	var final map[string]any
	_ = json.Unmarshal(reply.Body, &final)
	msg, _ := final["message"].(map[string]any)
	text, _ := msg["content"].(string)
	var lines [][]byte
	for _, piece := range words(text) {
		lines = append(lines, append(mustJSON(map[string]any{
			"model": final["model"], "created_at": "2023-08-04T08:52:19.385406455-07:00",
			"message": map[string]any{"role": "assistant", "content": piece}, "done": false,
		}), '\n'))
	}
	final["message"] = map[string]any{"role": "assistant", "content": "", "tool_calls": msg["tool_calls"]}
	return append(lines, append(mustJSON(final), '\n'))
}

// TextReply implements Fake with the documented final chat answer.
func (f *OllamaFake) TextReply(text, model string, promptTokens, completionTokens int64) Reply {
	if model == "" {
		model = "llama3.2"
	}
	return Reply{Body: mustJSON(map[string]any{
		"model":                model,
		"created_at":           "2023-12-12T14:13:43.416799Z",
		"message":              map[string]any{"role": "assistant", "content": text},
		"done_reason":          "stop",
		"done":                 true,
		"total_duration":       5191566416,
		"load_duration":        2154458,
		"prompt_eval_count":    promptTokens,
		"prompt_eval_duration": 383809000,
		"eval_count":           completionTokens,
		"eval_duration":        4799921000,
	})}
}

// ToolCallReply is the documented final chat answer that calls function
// name, with its arguments as an object.
func (f *OllamaFake) ToolCallReply(name, args, model string) Reply {
	reply := f.TextReply("", model, 82, 17)
	var body map[string]any
	_ = json.Unmarshal(reply.Body, &body)
	body["message"] = map[string]any{"role": "assistant", "content": "",
		"tool_calls": []map[string]any{{"function": map[string]any{"name": name, "arguments": json.RawMessage(args)}}}}
	reply.Body = mustJSON(body)
	return reply
}

// ErrorReply implements Fake with Ollama's {"error": "..."} body.
func (f *OllamaFake) ErrorReply(status int, message string, retryAfter time.Duration) Reply {
	return Reply{Status: status, Header: retryAfterHeader(retryAfter), Body: mustJSON(map[string]any{"error": message})}
}
