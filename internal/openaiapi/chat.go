package openaiapi

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/google/uuid"

	"github.com/siganteng/siganteng/internal/task"
)

// chatRequest is what POST /v1/chat/completions takes (OpenAI's
// CreateChatCompletionRequest, the parts SIGANTENG serves).
type chatRequest struct {
	Model               string               `json:"model"`
	Messages            []task.Message       `json:"messages"`
	MaxTokens           *int                 `json:"max_tokens"`
	MaxCompletionTokens *int                 `json:"max_completion_tokens"`
	Temperature         *float64             `json:"temperature"`
	TopP                *float64             `json:"top_p"`
	PresencePenalty     *float64             `json:"presence_penalty"`
	FrequencyPenalty    *float64             `json:"frequency_penalty"`
	Stop                json.RawMessage      `json:"stop"`
	Seed                *int64               `json:"seed"`
	User                string               `json:"user"`
	Tools               []task.Tool          `json:"tools"`
	ToolChoice          json.RawMessage      `json:"tool_choice"`
	ResponseFormat      *task.ResponseFormat `json:"response_format"`
	Stream              bool                 `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	// Asked for and not served: refused rather than silently ignored.
	N           *int            `json:"n"`
	Logprobs    *bool           `json:"logprobs"`
	Modalities  []string        `json:"modalities"`
	Audio       json.RawMessage `json:"audio"`
	Prediction  json.RawMessage `json:"prediction"`
	WebSearch   json.RawMessage `json:"web_search_options"`
	TopLogprobs *int            `json:"top_logprobs"`
}

// input is the request as the domain's generate_text.
func (req chatRequest) input() (task.GenerateTextInput, error) {
	switch {
	case req.N != nil && *req.N != 1:
		return task.GenerateTextInput{}, task.Invalid("n", "SIGANTENG returns one choice: n must be 1")
	case req.Logprobs != nil && *req.Logprobs || req.TopLogprobs != nil:
		return task.GenerateTextInput{}, task.Invalid("logprobs", "SIGANTENG does not return log probabilities")
	case len(req.Modalities) > 1 || len(req.Modalities) == 1 && req.Modalities[0] != "text" || len(req.Audio) > 0 && string(req.Audio) != "null":
		return task.GenerateTextInput{}, task.Invalid("modalities", "SIGANTENG answers chat completions in text; use /v1/audio/speech for audio")
	case len(req.Prediction) > 0 && string(req.Prediction) != "null":
		return task.GenerateTextInput{}, task.Invalid("prediction", "predicted outputs are not supported")
	case len(req.WebSearch) > 0 && string(req.WebSearch) != "null":
		return task.GenerateTextInput{}, task.Invalid("web_search_options", "web search is not supported")
	case req.Messages == nil:
		return task.GenerateTextInput{}, task.Invalid("messages", "messages is required")
	}
	stop, err := stringOrList(req.Stop, "stop")
	if err != nil {
		return task.GenerateTextInput{}, err
	}
	maxTokens := req.MaxCompletionTokens
	if maxTokens == nil {
		maxTokens = req.MaxTokens
	}
	return task.GenerateTextInput{Model: req.Model, Messages: req.Messages, MaxTokens: maxTokens, Temperature: req.Temperature,
		TopP: req.TopP, PresencePenalty: req.PresencePenalty, FrequencyPenalty: req.FrequencyPenalty, Stop: stop, Seed: req.Seed,
		User: req.User, Tools: req.Tools, ToolChoice: req.ToolChoice, ResponseFormat: req.ResponseFormat}, nil
}

// chatCompletion is OpenAI's chat.completion object.
type chatCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   *chatUsage   `json:"usage,omitempty"`
}

type chatChoice struct {
	Index        int             `json:"index"`
	Message      *answer         `json:"message,omitempty"`
	Delta        *chatMessage    `json:"delta,omitempty"`
	FinishReason *string         `json:"finish_reason"`
	Logprobs     json.RawMessage `json:"logprobs"`
}

type chatMessage struct {
	Role      string         `json:"role,omitempty"`
	Content   *string        `json:"content,omitempty"`
	ToolCalls []chatToolCall `json:"tool_calls,omitempty"`
}

// answer is a whole assistant message: content and refusal are always
// there, null when empty.
type answer struct {
	Role        string          `json:"role"`
	Content     *string         `json:"content"`
	Refusal     *string         `json:"refusal"`
	ToolCalls   []chatToolCall  `json:"tool_calls,omitempty"`
	Annotations json.RawMessage `json:"annotations"`
}

type chatToolCall struct {
	Index    *int              `json:"index,omitempty"` // in a stream's deltas
	ID       string            `json:"id,omitempty"`
	Type     string            `json:"type,omitempty"`
	Function task.FunctionCall `json:"function"`
}

type chatUsage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
}

var nullJSON = json.RawMessage("null")

func usageOf(u task.Usage) *chatUsage {
	return &chatUsage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.TotalTokens}
}

// finishReason is a provider's finish reason in OpenAI's words.
func finishReason(out *task.TextResult) string {
	switch {
	case len(out.ToolCalls) > 0:
		return "tool_calls"
	case out.FinishReason == "length" || out.FinishReason == "content_filter":
		return out.FinishReason
	}
	return "stop"
}

func newID(prefix string) string { return prefix + strings.ReplaceAll(uuid.NewString(), "-", "") }

func (a *api) chatCompletions(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	if !a.decode(w, r, &req) {
		return
	}
	in, err := req.input()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	id, created := newID("chatcmpl-"), a.deps.Now().Unix()
	if req.Stream {
		a.streamChat(w, r, in, id, created, req.StreamOptions != nil && req.StreamOptions.IncludeUsage)
		return
	}
	out, err := a.deps.Tasks.GenerateText(r.Context(), in)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, completionOf(id, created, out))
}

// completionOf is a result as OpenAI's chat.completion object.
func completionOf(id string, created int64, out *task.TextResult) chatCompletion {
	finish := finishReason(out)
	msg := &answer{Role: "assistant", Annotations: json.RawMessage("[]")}
	if out.Text != "" || len(out.ToolCalls) == 0 {
		msg.Content = &out.Text
	}
	for _, c := range out.ToolCalls {
		msg.ToolCalls = append(msg.ToolCalls, chatToolCall{ID: c.ID, Type: "function", Function: c.Function})
	}
	return chatCompletion{ID: id, Object: "chat.completion", Created: created, Model: out.Model,
		Choices: []chatChoice{{Message: msg, FinishReason: &finish, Logprobs: nullJSON}}, Usage: usageOf(out.Usage)}
}

// streamChat answers with chat.completion.chunk events: the role, the text
// as it comes, the tool calls, the finish reason, the usage when asked
// for, and [DONE]. A failure before the first piece is an ordinary error
// answer; after it, an event holding only an error, as OpenAI sends.
func (a *api) streamChat(w http.ResponseWriter, r *http.Request, in task.GenerateTextInput, id string, created int64, includeUsage bool) {
	events := newSSE(w)
	model := in.Model
	chunk := func(delta *chatMessage, finish *string) chatCompletion {
		return chatCompletion{ID: id, Object: "chat.completion.chunk", Created: created, Model: model,
			Choices: []chatChoice{{Delta: delta, FinishReason: finish, Logprobs: nullJSON}}}
	}
	var sendErr error
	send := func(v chatCompletion) {
		if sendErr == nil {
			sendErr = events.data("", v)
		}
	}
	empty := ""
	out, err := a.deps.Tasks.StreamText(r.Context(), in, func(piece string) {
		if !events.started {
			send(chunk(&chatMessage{Role: "assistant", Content: &empty}, nil))
		}
		send(chunk(&chatMessage{Content: &piece}, nil))
	})
	if err != nil {
		if !events.started {
			a.fail(w, r, err)
			return
		}
		status, message, param, code, _ := a.statusOf(r.Context(), err)
		_ = events.data("", errorOf(status, message, param, code))
		return
	}
	model = out.Model
	if !events.started {
		send(chunk(&chatMessage{Role: "assistant", Content: &empty}, nil))
	}
	for i, c := range out.ToolCalls {
		send(chunk(&chatMessage{ToolCalls: []chatToolCall{{Index: &i, ID: c.ID, Type: "function", Function: c.Function}}}, nil))
	}
	finish := finishReason(out)
	send(chunk(&chatMessage{}, &finish))
	if includeUsage {
		send(chatCompletion{ID: id, Object: "chat.completion.chunk", Created: created, Model: model, Choices: []chatChoice{}, Usage: usageOf(out.Usage)})
	}
	if sendErr == nil {
		_ = events.raw("data: [DONE]")
	}
}
