package task

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// Limits on a conversation: OpenAI's own where it states them (128 tools,
// four stop sequences, 64-character function names).
const (
	MaxMessages     = 2048
	MaxTools        = 128
	MaxStops        = 4
	MaxStopChars    = 256
	MaxUserChars    = 256
	MaxSchemaBytes  = 64 << 10
	MaxMessageParts = 64
)

// The roles a message may have.
const (
	RoleSystem    = "system"
	RoleDeveloper = "developer" // OpenAI's newer name for system
	RoleUser      = "user"
	RoleAssistant = "assistant"
	RoleTool      = "tool"
)

// Message is one turn of a conversation, in OpenAI's chat shape, which the
// native API and /v1 both take.
type Message struct {
	Role string `json:"role" enum:"system,developer,user,assistant,tool" doc:"Who speaks."`
	// Content is a string, or a list of parts; null or absent only for an
	// assistant turn that makes tool calls.
	Content    json.RawMessage `json:"content,omitempty" doc:"A string, or a list of parts: {\"type\":\"text\",\"text\":…} and, in user turns, {\"type\":\"image_url\",\"image_url\":{\"url\":…}} (https or a data: URL)."`
	Name       string          `json:"name,omitempty" maxLength:"64" doc:"An optional name for the speaker."`
	ToolCalls  []ToolCall      `json:"tool_calls,omitempty" doc:"An assistant turn's calls of tools; each is answered by a tool turn with its id."`
	ToolCallID string          `json:"tool_call_id,omitempty" maxLength:"256" doc:"A tool turn: the id of the call it answers."`
}

// Part is one piece of a message's content.
type Part struct {
	Type     string    `json:"type"`
	Text     string    `json:"text,omitempty"`
	ImageURL *ImageURL `json:"image_url,omitempty"`
}

// ImageURL is an image part's address: https, or a data: URL.
type ImageURL struct {
	URL    string `json:"url"`
	Detail string `json:"detail,omitempty"`
}

// ToolCall is a model's request to run a function.
type ToolCall struct {
	ID       string       `json:"id" doc:"Answer the call with a tool message carrying this id."`
	Type     string       `json:"type" enum:"function"`
	Function FunctionCall `json:"function"`
}

// FunctionCall names the function and its arguments, as a JSON string.
type FunctionCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments" doc:"The arguments as a JSON object in a string, as the model wrote them: check them before use."`
}

// Tool is a function the model may call.
type Tool struct {
	Type     string      `json:"type" enum:"function"`
	Function FunctionDef `json:"function"`
}

// FunctionDef describes a function to the model.
type FunctionDef struct {
	Name        string          `json:"name" minLength:"1" maxLength:"64" pattern:"^[a-zA-Z0-9_-]+$"`
	Description string          `json:"description,omitempty" maxLength:"8192"`
	Parameters  json.RawMessage `json:"parameters,omitempty" doc:"A JSON Schema object for the arguments."`
	Strict      *bool           `json:"strict,omitempty"`
}

// ResponseFormat asks for JSON output, optionally to a schema.
type ResponseFormat struct {
	Type       string      `json:"type" enum:"text,json_object,json_schema"`
	JSONSchema *JSONSchema `json:"json_schema,omitempty" doc:"With type json_schema: the schema the answer follows."`
}

// JSONSchema is a named schema for structured output.
type JSONSchema struct {
	Name        string          `json:"name" minLength:"1" maxLength:"64" pattern:"^[a-zA-Z0-9_-]+$"`
	Description string          `json:"description,omitempty" maxLength:"8192"`
	Schema      json.RawMessage `json:"schema,omitempty" doc:"A JSON Schema object."`
	Strict      *bool           `json:"strict,omitempty"`
}

// The tool_choice words; a named function is {"type":"function","function":{"name":…}}.
const (
	ToolChoiceNone     = "none"
	ToolChoiceAuto     = "auto"
	ToolChoiceRequired = "required"
)

var functionName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// Parts returns a message's content as parts: a string is one text part.
func (m Message) Parts() ([]Part, error) {
	raw := bytes.TrimSpace(m.Content)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		return []Part{{Type: "text", Text: s}}, nil
	}
	var parts []Part
	if err := json.Unmarshal(raw, &parts); err != nil {
		return nil, fmt.Errorf("content must be a string or a list of parts")
	}
	return parts, nil
}

// Text is a message's text parts joined; images are left out.
func (m Message) Text() string {
	parts, _ := m.Parts()
	var b strings.Builder
	for _, p := range parts {
		if p.Type == "text" {
			b.WriteString(p.Text)
		}
	}
	return b.String()
}

// TextMessage is a message whose content is one string.
func TextMessage(role, text string) Message {
	content, _ := json.Marshal(text)
	return Message{Role: role, Content: content}
}

// ToolChoiceOf reads a tool_choice: a word, or the name of the one function
// the model must call.
func ToolChoiceOf(raw json.RawMessage) (word, function string, err error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", "", nil
	}
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &word); err != nil {
			return "", "", err
		}
		switch word {
		case ToolChoiceNone, ToolChoiceAuto, ToolChoiceRequired:
			return word, "", nil
		}
		return "", "", fmt.Errorf("tool_choice must be none, auto, required or {\"type\":\"function\",\"function\":{\"name\":…}}, not %q", word)
	}
	var named struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(raw, &named); err != nil || named.Type != "function" || named.Function.Name == "" {
		return "", "", fmt.Errorf("tool_choice must be none, auto, required or {\"type\":\"function\",\"function\":{\"name\":…}}")
	}
	return "", named.Function.Name, nil
}

// validateConversation checks messages as a conversation: known roles,
// content where it is needed, images only from users, and every tool call
// answered by a tool message before the conversation goes on.
func validateConversation(messages []Message, maxChars int) error {
	if len(messages) > MaxMessages {
		return Invalid("messages", fmt.Sprintf("messages holds more than %d messages", MaxMessages))
	}
	chars := 0
	open := map[string]bool{} // tool calls not yet answered
	for i, m := range messages {
		field := fmt.Sprintf("messages[%d]", i)
		parts, err := m.Parts()
		if err != nil {
			return Invalid(field+".content", err.Error())
		}
		if len(parts) > MaxMessageParts {
			return Invalid(field+".content", fmt.Sprintf("content holds more than %d parts", MaxMessageParts))
		}
		if m.Role != RoleTool && len(open) > 0 {
			return Invalid(field, fmt.Sprintf("the assistant's tool call %s has no tool message answering it before this message", anyKey(open)))
		}
		for j, p := range parts {
			pf := fmt.Sprintf("%s.content[%d]", field, j)
			switch p.Type {
			case "text", "input_text", "output_text":
				chars += utf8.RuneCountInString(p.Text)
			case "image_url":
				if m.Role != RoleUser {
					return Invalid(pf, "only user messages may hold images")
				}
				if p.ImageURL == nil || !(strings.HasPrefix(p.ImageURL.URL, "https://") || strings.HasPrefix(p.ImageURL.URL, "http://") || strings.HasPrefix(p.ImageURL.URL, "data:image/")) {
					return Invalid(pf+".image_url.url", "an image part needs an https URL or a data:image/… URL")
				}
			default:
				return Invalid(pf+".type", fmt.Sprintf("unknown content part type %q; the types are text and image_url", p.Type))
			}
		}
		hasText := strings.TrimSpace(m.Text()) != "" || slices.ContainsFunc(parts, func(p Part) bool { return p.Type == "image_url" })
		switch m.Role {
		case RoleSystem, RoleDeveloper, RoleUser:
			if !hasText {
				return Invalid(field+".content", m.Role+" messages need content")
			}
			if len(m.ToolCalls) > 0 || m.ToolCallID != "" {
				return Invalid(field, "only assistant messages make tool calls, and only tool messages answer them")
			}
		case RoleAssistant:
			if !hasText && len(m.ToolCalls) == 0 {
				return Invalid(field+".content", "an assistant message needs content or tool_calls")
			}
			for j, c := range m.ToolCalls {
				cf := fmt.Sprintf("%s.tool_calls[%d]", field, j)
				switch {
				case c.ID == "":
					return Invalid(cf+".id", "a tool call needs an id")
				case c.Type != "" && c.Type != "function":
					return Invalid(cf+".type", "a tool call's type is function")
				case !functionName.MatchString(c.Function.Name):
					return Invalid(cf+".function.name", "a function name is 1 to 64 letters, digits, _ or -")
				}
				open[c.ID] = true
			}
		case RoleTool:
			if m.ToolCallID == "" {
				return Invalid(field+".tool_call_id", "a tool message names the call it answers in tool_call_id")
			}
			if !open[m.ToolCallID] {
				return Invalid(field+".tool_call_id", fmt.Sprintf("no earlier assistant message made a tool call with id %q that is still unanswered", m.ToolCallID))
			}
			delete(open, m.ToolCallID)
		default:
			return Invalid(field+".role", fmt.Sprintf("unknown role %q; the roles are system, developer, user, assistant and tool", m.Role))
		}
		chars += len(m.ToolCallID)
		for _, c := range m.ToolCalls {
			chars += len(c.Function.Arguments)
		}
	}
	if len(open) > 0 {
		return Invalid("messages", fmt.Sprintf("the assistant's tool call %s has no tool message answering it", anyKey(open)))
	}
	if chars > maxChars {
		return Invalid("messages", fmt.Sprintf("the messages hold more than %d characters", maxChars))
	}
	return nil
}

func anyKey(m map[string]bool) string {
	for k := range m {
		return k
	}
	return ""
}

// validateTools checks tools, tool_choice and response_format together.
func (in GenerateTextInput) validateTools() error {
	if len(in.Tools) > MaxTools {
		return Invalid("tools", fmt.Sprintf("tools holds more than %d tools", MaxTools))
	}
	names := map[string]bool{}
	for i, t := range in.Tools {
		field := fmt.Sprintf("tools[%d]", i)
		switch {
		case t.Type != "function":
			return Invalid(field+".type", "a tool's type is function")
		case !functionName.MatchString(t.Function.Name):
			return Invalid(field+".function.name", "a function name is 1 to 64 letters, digits, _ or -")
		case names[t.Function.Name]:
			return Invalid(field+".function.name", fmt.Sprintf("two tools are named %q", t.Function.Name))
		}
		if err := schemaObject(t.Function.Parameters, field+".function.parameters", true); err != nil {
			return err
		}
		names[t.Function.Name] = true
	}
	word, function, err := ToolChoiceOf(in.ToolChoice)
	switch {
	case err != nil:
		return Invalid("tool_choice", err.Error())
	case function != "" && !names[function]:
		return Invalid("tool_choice", fmt.Sprintf("tool_choice names function %q, which is not in tools", function))
	case word == ToolChoiceRequired && len(in.Tools) == 0:
		return Invalid("tool_choice", "tool_choice required needs tools")
	}
	if f := in.ResponseFormat; f != nil {
		switch f.Type {
		case "text", "json_object":
			if f.JSONSchema != nil {
				return Invalid("response_format.json_schema", "json_schema goes with type json_schema")
			}
		case "json_schema":
			if f.JSONSchema == nil {
				return Invalid("response_format.json_schema", "type json_schema needs json_schema with a name and a schema")
			}
			if !functionName.MatchString(f.JSONSchema.Name) {
				return Invalid("response_format.json_schema.name", "a schema name is 1 to 64 letters, digits, _ or -")
			}
			if err := schemaObject(f.JSONSchema.Schema, "response_format.json_schema.schema", false); err != nil {
				return err
			}
		default:
			return Invalid("response_format.type", fmt.Sprintf("response_format type must be text, json_object or json_schema, not %q", f.Type))
		}
	}
	return nil
}

// schemaObject checks that raw is a JSON Schema object of bounded size;
// absent is allowed where optional.
func schemaObject(raw json.RawMessage, field string, optional bool) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		if optional {
			return nil
		}
		return Invalid(field, "a schema is needed")
	}
	if len(raw) > MaxSchemaBytes {
		return Invalid(field, fmt.Sprintf("the schema is larger than %d bytes", MaxSchemaBytes))
	}
	var obj map[string]json.RawMessage
	if raw[0] != '{' || json.Unmarshal(raw, &obj) != nil {
		return Invalid(field, "a schema must be a JSON object")
	}
	if t, ok := obj["type"]; ok && !bytes.Equal(bytes.TrimSpace(t), []byte(`"object"`)) {
		return Invalid(field+".type", `the top of the schema must be of type "object"`)
	}
	return nil
}

// validateSampling checks stop, the penalties, top_p and user.
func (in GenerateTextInput) validateSampling() error {
	switch {
	case len(in.Stop) > MaxStops:
		return Invalid("stop", fmt.Sprintf("stop holds more than %d sequences", MaxStops))
	case in.TopP != nil && (*in.TopP < 0 || *in.TopP > 1):
		return Invalid("top_p", "top_p must be between 0 and 1")
	case in.PresencePenalty != nil && (*in.PresencePenalty < -2 || *in.PresencePenalty > 2):
		return Invalid("presence_penalty", "presence_penalty must be between -2 and 2")
	case in.FrequencyPenalty != nil && (*in.FrequencyPenalty < -2 || *in.FrequencyPenalty > 2):
		return Invalid("frequency_penalty", "frequency_penalty must be between -2 and 2")
	case utf8.RuneCountInString(in.User) > MaxUserChars:
		return Invalid("user", fmt.Sprintf("user is longer than %d characters", MaxUserChars))
	}
	for _, s := range in.Stop {
		if s == "" || utf8.RuneCountInString(s) > MaxStopChars {
			return Invalid("stop", fmt.Sprintf("a stop sequence is 1 to %d characters", MaxStopChars))
		}
	}
	return nil
}

// Conversation is the input as messages: its own, or the prompt with its
// system instruction.
func (in GenerateTextInput) Conversation() []Message {
	if len(in.Messages) > 0 {
		return in.Messages
	}
	var out []Message
	if in.System != "" {
		out = append(out, TextMessage(RoleSystem, in.System))
	}
	return append(out, TextMessage(RoleUser, in.Prompt))
}

// inputChars counts the characters the model reads, for estimates.
func (in GenerateTextInput) inputChars() int {
	if len(in.Messages) == 0 {
		return len(in.Prompt) + len(in.System)
	}
	n := 0
	for _, m := range in.Messages {
		n += len(m.Content) + len(m.ToolCallID)
		for _, c := range m.ToolCalls {
			n += len(c.Function.Arguments) + len(c.Function.Name)
		}
	}
	for _, t := range in.Tools {
		n += len(t.Function.Name) + len(t.Function.Description) + len(t.Function.Parameters)
	}
	return n
}

// images counts the image parts of the messages.
func (in GenerateTextInput) images() int {
	n := 0
	for _, m := range in.Messages {
		parts, _ := m.Parts()
		for _, p := range parts {
			if p.Type == "image_url" {
				n++
			}
		}
	}
	return n
}
