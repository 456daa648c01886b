package openaiapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/siganteng/siganteng/internal/task"
)

// A response is a generate_text task: its id is the task's with resp_ in
// front, its state the task record, so a background response survives
// disconnects, worker crashes and restarts like any task, and is visible
// at /background/tasks/{task_id} too.
const responsePrefix = "resp_"

// responseRequest is what POST /v1/responses takes (OpenAI's
// CreateResponse, the parts SIGANTENG serves).
type responseRequest struct {
	Model           string          `json:"model"`
	Input           json.RawMessage `json:"input"`
	Instructions    string          `json:"instructions"`
	Background      bool            `json:"background"`
	Stream          bool            `json:"stream"`
	MaxOutputTokens *int            `json:"max_output_tokens"`
	Temperature     *float64        `json:"temperature"`
	TopP            *float64        `json:"top_p"`
	Tools           []responseTool  `json:"tools"`
	ToolChoice      json.RawMessage `json:"tool_choice"`
	Text            *struct {
		Format *responseFormat `json:"format"`
	} `json:"text"`
	User     string            `json:"user"`
	Metadata map[string]string `json:"metadata"`
	// Asked for and not served: refused rather than silently ignored.
	PreviousResponseID string          `json:"previous_response_id"`
	Conversation       json.RawMessage `json:"conversation"`
	Prompt             json.RawMessage `json:"prompt"`
	Reasoning          json.RawMessage `json:"reasoning"`
}

// kept is what a response shows back of its request, read from the copy
// the task keeps (the record holds a summary only).
type kept struct {
	Input        json.RawMessage   `json:"input"`
	Instructions *string           `json:"instructions"`
	Tools        []responseTool    `json:"tools"`
	ToolChoice   json.RawMessage   `json:"tool_choice"`
	Text         json.RawMessage   `json:"text"`
	TopP         *float64          `json:"top_p"`
	Metadata     map[string]string `json:"metadata"`
}

func checkMetadata(m map[string]string) error { return task.CheckMetadata("metadata", m) }

// keptOf reads what the task of rec kept of its request; nil when it kept
// none.
func (a *api) keptOf(ctx context.Context, rec *task.Record) *kept {
	raw, err := a.deps.Tasks.KeptRequest(ctx, rec)
	if err != nil {
		if task.CodeOf(err) != task.ENOTFOUND {
			a.deps.Log.WarnContext(ctx, "a response's request could not be read", "task_id", rec.ID, "err", err)
		}
		return nil
	}
	return parseKept(raw)
}

func parseKept(raw []byte) *kept {
	var k kept
	if json.Unmarshal(raw, &k) != nil {
		return nil
	}
	return &k
}

// responseTool is a function tool in the Responses API's flat shape.
type responseTool struct {
	Type        string          `json:"type"`
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters"`
	Strict      *bool           `json:"strict"` // shown back as null when not given
}

// responseFormat is text.format: text, json_object, or a json_schema with
// the schema beside the type.
type responseFormat struct {
	Type        string          `json:"type"`
	Name        string          `json:"name,omitempty"`
	Description string          `json:"description,omitempty"`
	Schema      json.RawMessage `json:"schema,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// inputItem is one item of input: a message (the type may be left out), a
// function call the model made, or a function call's output.
type inputItem struct {
	Type      string          `json:"type"`
	Role      string          `json:"role"`
	Content   json.RawMessage `json:"content"`
	CallID    string          `json:"call_id"`
	Name      string          `json:"name"`
	Arguments string          `json:"arguments"`
	Output    json.RawMessage `json:"output"`
}

// input is the request as the domain's generate_text.
func (req responseRequest) input() (task.GenerateTextInput, error) {
	for param, raw := range map[string]json.RawMessage{"conversation": req.Conversation, "prompt": req.Prompt, "reasoning": req.Reasoning} {
		if len(raw) > 0 && string(raw) != "null" {
			return task.GenerateTextInput{}, task.Invalid(param, param+" is not supported")
		}
	}
	if req.PreviousResponseID != "" {
		return task.GenerateTextInput{}, task.Invalid("previous_response_id", "previous_response_id is not supported yet: send the earlier turns in input")
	}
	var messages []task.Message
	if req.Instructions != "" {
		messages = append(messages, task.TextMessage(task.RoleSystem, req.Instructions))
	}
	turns, err := inputMessages(req.Input)
	if err != nil {
		return task.GenerateTextInput{}, err
	}
	in := task.GenerateTextInput{Model: req.Model, Messages: append(messages, turns...), MaxTokens: req.MaxOutputTokens,
		Temperature: req.Temperature, TopP: req.TopP, User: req.User}
	in.Metadata = req.Metadata // on the task's record too, where listings filter by it
	for i, t := range req.Tools {
		if t.Type != "function" {
			return in, task.Invalid(fmt.Sprintf("tools[%d].type", i), fmt.Sprintf("tool type %q is not supported; SIGANTENG serves function tools", t.Type))
		}
		in.Tools = append(in.Tools, task.Tool{Type: "function", Function: task.FunctionDef{Name: t.Name, Description: t.Description,
			Parameters: t.Parameters, Strict: t.Strict}})
	}
	if in.ToolChoice, err = chatToolChoice(req.ToolChoice); err != nil {
		return in, err
	}
	if req.Text != nil && req.Text.Format != nil {
		f := req.Text.Format
		in.ResponseFormat = &task.ResponseFormat{Type: f.Type}
		if f.Type == "json_schema" {
			in.ResponseFormat.JSONSchema = &task.JSONSchema{Name: f.Name, Description: f.Description, Schema: f.Schema, Strict: f.Strict}
		}
	}
	return in, nil
}

// chatToolChoice turns the Responses API's {"type":"function","name":…}
// into chat's {"type":"function","function":{"name":…}}; words pass.
func chatToolChoice(raw json.RawMessage) (json.RawMessage, error) {
	if len(raw) == 0 || raw[0] == '"' || string(raw) == "null" {
		return raw, nil
	}
	var named struct {
		Type string `json:"type"`
		Name string `json:"name"`
	}
	if json.Unmarshal(raw, &named) != nil || named.Type != "function" || named.Name == "" {
		return nil, task.Invalid("tool_choice", `tool_choice must be none, auto, required or {"type":"function","name":…}`)
	}
	return json.Marshal(map[string]any{"type": "function", "function": map[string]string{"name": named.Name}})
}

// inputMessages turns input, a string or a list of items, into messages.
// Consecutive function calls become one assistant turn with tool calls.
func inputMessages(raw json.RawMessage) ([]task.Message, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, task.Invalid("input", "input is required: a string or a list of items")
	}
	var text string
	if json.Unmarshal(raw, &text) == nil {
		return []task.Message{task.TextMessage(task.RoleUser, text)}, nil
	}
	var items []inputItem
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, task.Invalid("input", "input must be a string or a list of items")
	}
	var out []task.Message
	for i, it := range items {
		param := fmt.Sprintf("input[%d]", i)
		switch it.Type {
		case "", "message":
			content, err := chatContent(it.Content, param)
			if err != nil {
				return nil, err
			}
			out = append(out, task.Message{Role: it.Role, Content: content})
		case "function_call":
			call := task.ToolCall{ID: it.CallID, Type: "function", Function: task.FunctionCall{Name: it.Name, Arguments: it.Arguments}}
			if n := len(out); n > 0 && out[n-1].Role == task.RoleAssistant && len(out[n-1].ToolCalls) > 0 {
				out[n-1].ToolCalls = append(out[n-1].ToolCalls, call)
				continue
			}
			out = append(out, task.Message{Role: task.RoleAssistant, ToolCalls: []task.ToolCall{call}})
		case "function_call_output":
			var s string
			if json.Unmarshal(it.Output, &s) != nil {
				s = string(it.Output) // a list of parts: passed as its JSON
			}
			content, _ := json.Marshal(s)
			out = append(out, task.Message{Role: task.RoleTool, ToolCallID: it.CallID, Content: content})
		default:
			return nil, task.Invalid(param+".type", fmt.Sprintf("input item type %q is not supported; the types are message, function_call and function_call_output", it.Type))
		}
	}
	return out, nil
}

// chatContent turns a Responses message's content (a string, or parts
// input_text, output_text, input_image) into chat content.
func chatContent(raw json.RawMessage, param string) (json.RawMessage, error) {
	if len(raw) == 0 || raw[0] == '"' {
		return raw, nil
	}
	var parts []struct {
		Type     string `json:"type"`
		Text     string `json:"text"`
		ImageURL string `json:"image_url"`
		Detail   string `json:"detail"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return nil, task.Invalid(param+".content", "content must be a string or a list of parts")
	}
	out := make([]task.Part, 0, len(parts))
	for j, p := range parts {
		switch p.Type {
		case "input_text", "output_text", "text":
			out = append(out, task.Part{Type: "text", Text: p.Text})
		case "input_image":
			out = append(out, task.Part{Type: "image_url", ImageURL: &task.ImageURL{URL: p.ImageURL, Detail: p.Detail}})
		default:
			return nil, task.Invalid(fmt.Sprintf("%s.content[%d].type", param, j), fmt.Sprintf("content part type %q is not supported; the types are input_text, output_text and input_image", p.Type))
		}
	}
	return json.Marshal(out)
}

// response is OpenAI's response object.
type response struct {
	ID                 string          `json:"id"`
	Object             string          `json:"object"`
	CreatedAt          int64           `json:"created_at"`
	CompletedAt        *int64          `json:"completed_at"`
	Status             string          `json:"status"`
	Background         bool            `json:"background"`
	Error              *responseError  `json:"error"`
	IncompleteDetails  *incomplete     `json:"incomplete_details"`
	Instructions       *string         `json:"instructions"`
	MaxOutputTokens    *int            `json:"max_output_tokens"`
	Model              string          `json:"model"`
	Output             []outputItem    `json:"output"`
	ParallelToolCalls  bool            `json:"parallel_tool_calls"`
	PreviousResponseID *string         `json:"previous_response_id"`
	Temperature        *float64        `json:"temperature"`
	TopP               *float64        `json:"top_p"`
	ToolChoice         json.RawMessage `json:"tool_choice"`
	Tools              []responseTool  `json:"tools"`
	Text               json.RawMessage `json:"text"`
	Truncation         string          `json:"truncation"`
	Usage              *responseUsage  `json:"usage,omitempty"`
	Metadata           map[string]any  `json:"metadata"`
}

type responseError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type incomplete struct {
	Reason string `json:"reason"`
}

// outputItem is a message or a function call the model produced.
type outputItem struct {
	Type      string      `json:"type"`
	ID        string      `json:"id"`
	Status    string      `json:"status"`
	Role      string      `json:"role,omitempty"`
	Content   *[]textPart `json:"content,omitempty"`
	CallID    string      `json:"call_id,omitempty"`
	Name      string      `json:"name,omitempty"`
	Arguments *string     `json:"arguments,omitempty"`
}

type textPart struct {
	Type        string `json:"type"`
	Text        string `json:"text"`
	Annotations []any  `json:"annotations"`
	Logprobs    []any  `json:"logprobs"`
}

type responseUsage struct {
	InputTokens        int64          `json:"input_tokens"`
	InputTokensDetails map[string]int `json:"input_tokens_details"`
	OutputTokens       int64          `json:"output_tokens"`
	OutputDetails      map[string]int `json:"output_tokens_details"`
	TotalTokens        int64          `json:"total_tokens"`
}

// messageID and callID name a response's output items after its task, so
// that every read of the response names them the same.
func messageID(taskID string) string { return "msg_" + strings.ReplaceAll(taskID, "-", "") }
func callItemID(taskID string, i int) string {
	return fmt.Sprintf("fc_%d_%s", i, strings.ReplaceAll(taskID, "-", ""))
}

// responseOf shows a generate_text record as a response, with what it
// kept of its request (k, which may be nil).
func responseOf(rec *task.Record, k *kept) response {
	var summary task.GenerateTextSummary
	_ = json.Unmarshal(rec.Input, &summary)
	format := "text"
	if summary.Format != "" {
		format = summary.Format
	}
	out := response{
		ID: responsePrefix + rec.ID, Object: "response", CreatedAt: rec.CreatedAt.Unix(), Status: responseStatus(rec.Status),
		Background: summary.Origin == task.OriginBackgroundResponse, MaxOutputTokens: summary.MaxTokens, Model: summary.Model,
		Output: []outputItem{}, ParallelToolCalls: true, Temperature: summary.Temperature, ToolChoice: json.RawMessage(`"auto"`),
		Tools: []responseTool{}, Text: json.RawMessage(`{"format":{"type":"` + format + `"}}`), Truncation: "disabled", Metadata: map[string]any{},
	}
	if rec.CompletedAt != nil {
		at := rec.CompletedAt.Unix()
		out.CompletedAt = &at
	}
	if k != nil {
		out.Instructions, out.TopP = k.Instructions, k.TopP
		if k.Tools != nil {
			out.Tools = k.Tools
		}
		if len(k.ToolChoice) > 0 && string(k.ToolChoice) != "null" {
			out.ToolChoice = k.ToolChoice
		}
		if len(k.Text) > 0 && string(k.Text) != "null" {
			out.Text = k.Text
		}
		for key, v := range k.Metadata {
			out.Metadata[key] = v
		}
	}
	switch rec.Status {
	case task.StatusSuccess:
		var result task.TextResult
		_ = json.Unmarshal(rec.Result, &result)
		out.Model = result.Model
		out.Output = outputOf(rec.ID, &result)
		out.Usage = &responseUsage{InputTokens: result.Usage.PromptTokens, OutputTokens: result.Usage.CompletionTokens,
			TotalTokens: result.Usage.TotalTokens, InputTokensDetails: map[string]int{"cached_tokens": 0, "cache_write_tokens": 0},
			OutputDetails: map[string]int{"reasoning_tokens": 0}}
		if result.FinishReason == "length" {
			out.Status, out.IncompleteDetails = "incomplete", &incomplete{Reason: "max_output_tokens"}
		}
	case task.StatusFailure:
		out.Error = &responseError{Code: "server_error", Message: "the task failed"}
		if rec.Error != nil {
			out.Error.Message = rec.Error.Message
			if strings.Contains(string(rec.Error.Code), "rate_limited") {
				out.Error.Code = "rate_limit_exceeded"
			}
		}
	}
	return out
}

// responseStatus maps the task's status word to the response's.
func responseStatus(s task.Status) string {
	switch s {
	case task.StatusPending:
		return "queued"
	case task.StatusStarted, task.StatusRetry:
		return "in_progress"
	case task.StatusSuccess:
		return "completed"
	case task.StatusRevoked:
		return "cancelled"
	}
	return "failed"
}

// outputOf is a result's output items: the message (when the model wrote
// text, or made no call), then its function calls.
func outputOf(taskID string, result *task.TextResult) []outputItem {
	items := []outputItem{}
	if result.Text != "" || len(result.ToolCalls) == 0 {
		items = append(items, messageItem(taskID, result.Text, "completed"))
	}
	for i, c := range result.ToolCalls {
		items = append(items, callItem(taskID, i, c, "completed"))
	}
	return items
}

func messageItem(taskID, text, status string) outputItem {
	content := []textPart{}
	if status == "completed" {
		content = append(content, textPart{Type: "output_text", Text: text, Annotations: []any{}, Logprobs: []any{}})
	}
	return outputItem{Type: "message", ID: messageID(taskID), Status: status, Role: "assistant", Content: &content}
}

func callItem(taskID string, i int, c task.ToolCall, status string) outputItem {
	args := c.Function.Arguments
	return outputItem{Type: "function_call", ID: callItemID(taskID, i), Status: status, CallID: c.ID, Name: c.Function.Name, Arguments: &args}
}

// responseTaskID is the task id inside a response id; "" for one that is
// not a response id.
func responseTaskID(id string) string {
	taskID, ok := strings.CutPrefix(id, responsePrefix)
	if !ok || taskID == "" {
		return ""
	}
	return taskID
}

func (a *api) createResponse(w http.ResponseWriter, r *http.Request) {
	var req responseRequest
	raw, ok := a.decodeKeeping(w, r, &req)
	if !ok {
		return
	}
	in, err := req.input()
	if err == nil {
		err = checkMetadata(req.Metadata)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	in.Stream = true // its deltas are kept, so a stream can be read, and resumed, at any time
	in.Origin = task.OriginResponse
	if req.Background {
		in.Origin = task.OriginBackgroundResponse
	}
	if req.Stream || !req.Background {
		// The connection it will hold is taken before the task is queued:
		// a 429 at the key's bound must not leave a task behind, which a
		// client's retry would queue again.
		release, err := a.deps.Tasks.HoldStream(r.Context())
		if err != nil {
			a.fail(w, r, err)
			return
		}
		defer release()
	}
	rec, err := a.deps.Tasks.SubmitGenerateTextKeeping(r.Context(), in, raw)
	if err != nil {
		a.fail(w, r, renamed(err, responseFields))
		return
	}
	k := parseKept(raw)
	switch {
	case req.Stream:
		a.streamResponse(w, r, rec, k, -1, !req.Background)
	case req.Background:
		writeJSON(w, http.StatusOK, responseOf(rec, k))
	default:
		a.awaitResponse(w, r, rec, k)
	}
}

// responseFields are the Responses API's names of generate_text's fields:
// the conversation is its input (whose items do not map one to one onto
// messages, so a message's index is left out).
var responseFields = map[string]string{"max_tokens": "max_output_tokens", "messages": "input"}

// lookup reads the record behind a response id; another key's response,
// or a task that is not a response, is a 404.
func (a *api) lookup(w http.ResponseWriter, r *http.Request) (*task.Record, bool) {
	id := r.PathValue("id")
	taskID := responseTaskID(id)
	var rec *task.Record
	var err error
	if taskID != "" {
		rec, err = a.deps.Tasks.Get(r.Context(), taskID)
	}
	switch {
	case taskID == "" || err == nil && rec.Type != task.TypeGenerateText || task.CodeOf(err) == task.ENOTFOUND:
		WriteError(w, http.StatusNotFound, fmt.Sprintf("No response found with id '%s'.", id), "", "not_found")
		return nil, false
	case err != nil:
		a.fail(w, r, err)
		return nil, false
	}
	return rec, true
}

// getResponse answers the response, or with stream=true (in the query, or
// in a JSON body as some SDK versions send it) its events after
// starting_after.
func (a *api) getResponse(w http.ResponseWriter, r *http.Request) {
	rec, ok := a.lookup(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	stream := q.Get("stream") == "true"
	after := -1
	if r.ContentLength > 0 {
		var body struct {
			Stream        bool `json:"stream"`
			StartingAfter *int `json:"starting_after"`
		}
		if !a.decode(w, r, &body) {
			return
		}
		stream = stream || body.Stream
		if body.StartingAfter != nil {
			after = *body.StartingAfter
		}
	}
	if s := q.Get("starting_after"); s != "" {
		if _, err := fmt.Sscan(s, &after); err != nil || after < 0 {
			WriteError(w, http.StatusBadRequest, "starting_after must be a sequence number (0 or more)", "starting_after", "invalid_value")
			return
		}
	}
	k := a.keptOf(r.Context(), rec)
	if !stream {
		writeJSON(w, http.StatusOK, responseOf(rec, k))
		return
	}
	release, err := a.deps.Tasks.HoldStream(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	defer release()
	a.streamResponse(w, r, rec, k, after, false)
}

func (a *api) cancelResponse(w http.ResponseWriter, r *http.Request) {
	rec, ok := a.lookup(w, r)
	if !ok {
		return
	}
	rec, err := a.deps.Tasks.Cancel(r.Context(), rec.ID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, responseOf(rec, a.keptOf(r.Context(), rec)))
}

func (a *api) deleteResponse(w http.ResponseWriter, r *http.Request) {
	rec, ok := a.lookup(w, r)
	if !ok {
		return
	}
	if err := a.deps.Tasks.Delete(r.Context(), rec.ID); err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Deleted bool   `json:"deleted"`
	}{responsePrefix + rec.ID, "response", true})
}

// inputItems lists a response's input, as its request gave it, with ids:
// GET /v1/responses/{id}/input_items (order desc by default, as OpenAI's;
// limit 1 to 100, default 20; after an item id).
func (a *api) inputItems(w http.ResponseWriter, r *http.Request) {
	rec, ok := a.lookup(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	limit := 20
	if s := q.Get("limit"); s != "" {
		if _, err := fmt.Sscan(s, &limit); err != nil || limit < 1 || limit > 100 {
			WriteError(w, http.StatusBadRequest, "limit must be between 1 and 100", "limit", "invalid_value")
			return
		}
	}
	order := q.Get("order")
	if order != "" && order != "asc" && order != "desc" {
		WriteError(w, http.StatusBadRequest, "order must be asc or desc", "order", "invalid_value")
		return
	}
	k := a.keptOf(r.Context(), rec)
	if k == nil {
		WriteError(w, http.StatusNotFound, fmt.Sprintf("response %s kept no copy of its input (it was not made through /v1/responses, or the copy expired)", r.PathValue("id")), "", "not_found")
		return
	}
	items := shownItems(rec.ID, k.Input)
	if order != "asc" {
		slices.Reverse(items)
	}
	if after := q.Get("after"); after != "" {
		i := slices.IndexFunc(items, func(it map[string]any) bool { return it["id"] == after })
		if i < 0 {
			WriteError(w, http.StatusBadRequest, "after names no item of this response", "after", "invalid_value")
			return
		}
		items = items[i+1:]
	}
	more := len(items) > limit
	items = items[:min(limit, len(items))]
	page := struct {
		Object  string           `json:"object"`
		Data    []map[string]any `json:"data"`
		FirstID *string          `json:"first_id"`
		LastID  *string          `json:"last_id"`
		HasMore bool             `json:"has_more"`
	}{Object: "list", Data: items, HasMore: more}
	if len(items) > 0 {
		first, last := items[0]["id"].(string), items[len(items)-1]["id"].(string)
		page.FirstID, page.LastID = &first, &last
	}
	writeJSON(w, http.StatusOK, page)
}

// shownItems is a request's input as Responses items, each with an id
// (its own, or one made from the task's id and its place) and a status.
func shownItems(taskID string, raw json.RawMessage) []map[string]any {
	var items []map[string]any
	var text string
	if json.Unmarshal(raw, &text) == nil {
		items = []map[string]any{{"type": "message", "role": "user", "content": text}}
	} else if json.Unmarshal(raw, &items) != nil {
		return []map[string]any{}
	}
	plain := strings.ReplaceAll(taskID, "-", "")
	for i, it := range items {
		if it["type"] == nil || it["type"] == "" {
			it["type"] = "message"
		}
		if _, ok := it["id"]; !ok {
			prefix := map[string]string{"message": "msg", "function_call": "fc", "function_call_output": "fco"}[fmt.Sprint(it["type"])]
			if prefix == "" {
				prefix = "item"
			}
			it["id"] = fmt.Sprintf("%s_in%d_%s", prefix, i, plain)
		}
		if _, ok := it["status"]; !ok {
			it["status"] = "completed"
		}
		if s, ok := it["content"].(string); ok && it["type"] == "message" {
			kind := "input_text"
			if it["role"] == task.RoleAssistant {
				kind = "output_text"
			}
			it["content"] = []map[string]any{{"type": kind, "text": s}}
		}
	}
	return items
}
