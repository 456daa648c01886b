package providertest

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/task"
)

// RunChat runs the conversation part of the conformance suite: messages,
// a tool-call round trip (plain and streamed), structured output and the
// sampling options, through the adapter's own wire format.
func RunChat(t *testing.T, h LLMHarness) {
	t.Helper()
	setup := h.setup
	ctx := context.Background()
	weather := []task.Tool{{Type: "function", Function: task.FunctionDef{Name: "get_weather", Description: "The weather in a city.",
		Parameters: json.RawMessage(`{"type":"object","properties":{"q":{"type":"string"}},"required":["q"]}`)}}}
	ask := task.TextMessage(task.RoleUser, "Weather in Jakarta?")

	t.Run("ToolCallRoundTrip", func(t *testing.T) {
		t.Parallel()
		fake, llm := setup(t)
		first, err := llm.GenerateText(ctx, provider.TextRequest{Messages: []task.Message{task.TextMessage(task.RoleSystem, "Be brief."), ask},
			Tools: weather, ToolChoice: json.RawMessage(`"auto"`)})
		require.NoError(t, err)
		require.Equal(t, "tool_calls", first.FinishReason)
		require.Len(t, first.ToolCalls, 1)
		c := first.ToolCalls[0]
		require.NotEmpty(t, c.ID)
		require.Equal(t, "get_weather", c.Function.Name)
		require.JSONEq(t, `{"q":"Weather in Jakarta?"}`, c.Function.Arguments)

		answer, _ := json.Marshal("31°C, humid")
		second, err := llm.GenerateText(ctx, provider.TextRequest{Tools: weather, Messages: []task.Message{ask,
			{Role: task.RoleAssistant, ToolCalls: first.ToolCalls},
			{Role: task.RoleTool, ToolCallID: c.ID, Content: answer}}})
		require.NoError(t, err)
		require.Equal(t, "the tool said: 31°C, humid", second.Text)
		require.Empty(t, second.ToolCalls)

		calls := fake.Calls()
		require.Len(t, calls, 2)
		require.Equal(t, []string{"get_weather"}, calls[0].Tools)
		require.Equal(t, "system", calls[0].Messages[0].Role)
		sent := calls[1].Messages
		require.Len(t, sent, 3)
		require.Equal(t, []string{"get_weather"}, sent[1].ToolCalls, "the assistant's call went back to the provider")
		require.Equal(t, Message{Role: "tool", Content: "31°C, humid"}, sent[2])
	})

	t.Run("StreamedToolCall", func(t *testing.T) {
		t.Parallel()
		_, llm := setup(t)
		streamer, ok := llm.(provider.TextStreamer)
		if !ok {
			t.Skip("the adapter does not stream")
		}
		out, err := streamer.StreamText(ctx, provider.TextRequest{Messages: []task.Message{ask}, Tools: weather}, func(string) {})
		require.NoError(t, err)
		require.Len(t, out.ToolCalls, 1)
		require.Equal(t, "get_weather", out.ToolCalls[0].Function.Name)
		require.JSONEq(t, `{"q":"Weather in Jakarta?"}`, out.ToolCalls[0].Function.Arguments, "the pieces were put together")
	})

	t.Run("StructuredOutputAndOptions", func(t *testing.T) {
		t.Parallel()
		fake, llm := setup(t)
		seed, topP, penalty := int64(7), 0.5, 0.25
		out, err := llm.GenerateText(ctx, provider.TextRequest{Messages: []task.Message{ask},
			ResponseFormat: &task.ResponseFormat{Type: "json_schema", JSONSchema: &task.JSONSchema{Name: "answer",
				Schema: json.RawMessage(`{"type":"object","properties":{"echo":{"type":"string"}}}`)}},
			Stop: []string{"END"}, Seed: &seed, TopP: &topP, PresencePenalty: &penalty, FrequencyPenalty: &penalty})
		require.NoError(t, err)
		var parsed map[string]string
		require.NoError(t, json.Unmarshal([]byte(out.Text), &parsed), "the answer is JSON: %s", out.Text)
		calls := fake.Calls()
		require.Len(t, calls, 1)
		require.Equal(t, "json_schema", calls[0].Format)
		raw := string(calls[0].Raw)
		for _, want := range []string{`"seed":7`, `"top_p":0.5`, `"presence_penalty":0.25`, `"frequency_penalty":0.25`, `"END"`, `"echo"`} {
			require.True(t, strings.Contains(raw, want), "%s is sent: %s", want, raw)
		}
	})
}
