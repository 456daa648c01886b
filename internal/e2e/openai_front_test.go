package e2e_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/openai/openai-go/v3/shared"
	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider/providertest"
	"github.com/siganteng/siganteng/internal/redistest"
)

// frontEnv is a server whose every capability is the OpenAI fake.
func frontEnv(t testing.TB, fake *providertest.OpenAIFake, redisURL string) map[string]string {
	env := openAIEnv(t, fake, redisURL)
	for _, k := range []string{"EMBED_PROVIDER", "TTS_PROVIDER", "STT_PROVIDER"} {
		env[k] = "openai"
	}
	return env
}

// sdk is the official Go SDK pointed at s, as an application would point
// it: only the base URL changes. The key is any string: the API is open.
func sdk(s *server) openai.Client {
	return openai.NewClient(option.WithBaseURL(s.url+"/v1/"), option.WithAPIKey("sk-anything"), option.WithMaxRetries(0))
}

func TestOpenAISDKChatCompletions(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	env := frontEnv(t, fake, redistest.URL(t))
	env["MAX_UPLOAD_BYTES"] = "1048576" // bodies up to about 2.4 MB: the JSON's 1 MiB and an image's
	s := start(t, "serve", env)
	client := sdk(s)
	ctx := context.Background()

	t.Run("Plain", func(t *testing.T) {
		out, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-test",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Be brief."), openai.UserMessage("hello front")},
			Seed:     openai.Int(7), Stop: openai.ChatCompletionNewParamsStopUnion{OfString: openai.String("END")}})
		require.NoError(t, err)
		require.Equal(t, "chat.completion", string(out.Object))
		require.Len(t, out.Choices, 1)
		require.Equal(t, "echo: hello front", out.Choices[0].Message.Content)
		require.Equal(t, "stop", out.Choices[0].FinishReason)
		require.Equal(t, "gpt-test", out.Model)
		require.EqualValues(t, 5, out.Usage.TotalTokens)
		require.True(t, strings.HasPrefix(out.ID, "chatcmpl-"))
	})

	t.Run("Streamed", func(t *testing.T) {
		stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "gpt-test",
			Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("one two three")},
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}})
		acc := openai.ChatCompletionAccumulator{}
		chunks := 0
		for stream.Next() {
			acc.AddChunk(stream.Current())
			chunks++
		}
		require.NoError(t, stream.Err())
		require.Greater(t, chunks, 3, "the text came in pieces")
		require.Equal(t, "echo: one two three", acc.Choices[0].Message.Content)
		require.Equal(t, "stop", acc.Choices[0].FinishReason)
		require.EqualValues(t, 3, acc.Usage.CompletionTokens, "include_usage sends the usage")
	})

	t.Run("ToolCallRoundTrip", func(t *testing.T) {
		tools := []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
			Name: "get_weather", Description: openai.String("The weather in a city."),
			Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{"q": map[string]any{"type": "string"}}},
		})}
		messages := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Weather in Bandung?")}
		first, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-test", Messages: messages, Tools: tools})
		require.NoError(t, err)
		require.Equal(t, "tool_calls", first.Choices[0].FinishReason)
		calls := first.Choices[0].Message.ToolCalls
		require.Len(t, calls, 1)
		require.Equal(t, "get_weather", calls[0].Function.Name)
		require.JSONEq(t, `{"q":"Weather in Bandung?"}`, calls[0].Function.Arguments)

		messages = append(messages, first.Choices[0].Message.ToParam(), openai.ToolMessage("24°C, rain", calls[0].ID))
		second, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-test", Messages: messages, Tools: tools})
		require.NoError(t, err)
		require.Equal(t, "the tool said: 24°C, rain", second.Choices[0].Message.Content)

		stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "gpt-test",
			Messages: messages[:1], Tools: tools})
		acc := openai.ChatCompletionAccumulator{}
		for stream.Next() {
			acc.AddChunk(stream.Current())
		}
		require.NoError(t, stream.Err())
		require.Len(t, acc.Choices[0].Message.ToolCalls, 1, "a streamed answer carries the tool call")
		require.Equal(t, "get_weather", acc.Choices[0].Message.ToolCalls[0].Function.Name)
	})

	t.Run("JSONSchema", func(t *testing.T) {
		out, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-test",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("structured please")},
			ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
				JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "answer", Strict: openai.Bool(true),
					Schema: map[string]any{"type": "object", "properties": map[string]any{"echo": map[string]any{"type": "string"}}}}}}})
		require.NoError(t, err)
		var parsed struct {
			Echo string `json:"echo"`
		}
		require.NoError(t, json.Unmarshal([]byte(out.Choices[0].Message.Content), &parsed))
		require.Equal(t, "structured please", parsed.Echo)
	})

	t.Run("BadInput", func(t *testing.T) {
		for name, params := range map[string]openai.ChatCompletionNewParams{
			"messages": {Model: "gpt-test", Messages: []openai.ChatCompletionMessageParamUnion{}},
			"messages[0].tool_call_id": {Model: "gpt-test", Messages: []openai.ChatCompletionMessageParamUnion{
				openai.ToolMessage("orphan", "call_nobody")}},
			"response_format.json_schema.schema": {Model: "gpt-test", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x")},
				ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
					JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "s", Schema: map[string]any{"type": "array"}}}}},
		} {
			_, err := client.Chat.Completions.New(ctx, params)
			var apiErr *openai.Error
			require.True(t, errors.As(err, &apiErr), "%s: %v", name, err)
			require.Equal(t, http.StatusBadRequest, apiErr.StatusCode, name)
			require.True(t, strings.HasPrefix(apiErr.Param, name), "%s: param %q", name, apiErr.Param)
			require.Equal(t, "invalid_request_error", apiErr.Type)
		}
		// An unknown role, as raw JSON: the SDK would not build one.
		res, body := rawPost(t, s.url+"/v1/chat/completions", `{"model":"gpt-test","messages":[{"role":"wizard","content":"x"}]}`)
		require.Equal(t, http.StatusBadRequest, res.StatusCode, "%s", body)
		require.Contains(t, body, `"param":"messages[0].role"`)
		res, body = rawPost(t, s.url+"/v1/chat/completions", `{"model":`)
		require.Equal(t, http.StatusBadRequest, res.StatusCode, "%s", body)
		require.Contains(t, body, `"type":"invalid_request_error"`)
		res, body = rawPost(t, s.url+"/v1/chat/completions", `{"messages":[{"role":"user","content":"`+strings.Repeat("x", 3<<20)+`"}]}`)
		require.Equal(t, http.StatusRequestEntityTooLarge, res.StatusCode, "%s", body)
		require.Contains(t, body, `"error"`)
	})
}

func rawPost(t *testing.T, url, body string) (*http.Response, string) {
	t.Helper()
	res, err := http.Post(url, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func TestOpenAISDKBackgroundResponses(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	redisURL := redistest.URL(t)
	s := start(t, "serve", frontEnv(t, fake, redisURL))
	client := sdk(s)
	ctx := context.Background()

	t.Run("CreateThenPoll", func(t *testing.T) {
		created, err := client.Responses.New(ctx, responses.ResponseNewParams{Model: "gpt-test", Background: openai.Bool(true),
			Instructions: openai.String("Be brief."), Metadata: shared.Metadata{"customer": "acme"},
			Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hello background")}})
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(created.ID, "resp_"))
		require.Contains(t, []string{"queued", "in_progress", "completed"}, string(created.Status))
		require.True(t, created.Background)
		done := pollResponse(t, client, created.ID, "completed")
		require.Equal(t, "echo: hello background", done.OutputText())
		require.EqualValues(t, 3, done.Usage.OutputTokens)
		require.Equal(t, "system", fake.Calls()[len(fake.Calls())-1].Messages[0].Role, "instructions are the system message")

		require.Equal(t, "Be brief.", done.Instructions.OfString, "the request is shown back")
		require.Equal(t, "acme", done.Metadata["customer"])
		items, err := client.Responses.InputItems.List(ctx, created.ID, responses.InputItemListParams{})
		require.NoError(t, err)
		require.Len(t, items.Data, 1)
		require.Equal(t, "message", items.Data[0].Type)
		require.Equal(t, "hello background", items.Data[0].AsMessage().Content[0].Text)

		// The response is a task like any other.
		rec := get(t, s.url, strings.TrimPrefix(created.ID, "resp_"))
		require.Equal(t, "SUCCESS", rec.Status)
	})

	t.Run("Foreground", func(t *testing.T) {
		out, err := client.Responses.New(ctx, responses.ResponseNewParams{Model: "gpt-test",
			Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("right now")}})
		require.NoError(t, err)
		require.Equal(t, "completed", string(out.Status))
		require.Equal(t, "echo: right now", out.OutputText())
		require.False(t, out.Background)
	})

	t.Run("FunctionCall", func(t *testing.T) {
		params := responses.ResponseNewParams{Model: "gpt-test",
			Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Weather in Medan?")},
			Tools: []responses.ToolUnionParam{{OfFunction: &responses.FunctionToolParam{Name: "get_weather",
				Parameters: map[string]any{"type": "object", "properties": map[string]any{"q": map[string]any{"type": "string"}}}}}}}
		out, err := client.Responses.New(ctx, params)
		require.NoError(t, err)
		require.Len(t, out.Output, 1)
		call := out.Output[0].AsFunctionCall()
		require.Equal(t, "get_weather", call.Name)

		output := responses.ResponseInputItemParamOfFunctionCallOutput("33°C")
		output.OfFunctionCallOutput.CallID = openai.String(call.CallID)
		params.Input = responses.ResponseNewParamsInputUnion{OfInputItemList: responses.ResponseInputParam{
			responses.ResponseInputItemParamOfMessage("Weather in Medan?", responses.EasyInputMessageRoleUser),
			responses.ResponseInputItemParamOfFunctionCall(call.Arguments, call.CallID, call.Name),
			output,
		}}
		out, err = client.Responses.New(ctx, params)
		require.NoError(t, err)
		require.Equal(t, "the tool said: 33°C", out.OutputText())
	})

	t.Run("StreamThenResume", func(t *testing.T) {
		stream := client.Responses.NewStreaming(ctx, responses.ResponseNewParams{Model: "gpt-test", Background: openai.Bool(true),
			Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("alpha beta gamma delta")}})
		var events []responses.ResponseStreamEventUnion
		var text strings.Builder
		id := ""
		for stream.Next() {
			ev := stream.Current()
			events = append(events, ev)
			if ev.Type == "response.output_text.delta" {
				text.WriteString(ev.Delta)
			}
			if ev.Type == "response.created" {
				id = ev.Response.ID
			}
		}
		require.NoError(t, stream.Err())
		require.Equal(t, "echo: alpha beta gamma delta", text.String())
		require.Equal(t, "response.created", events[0].Type)
		require.Equal(t, "response.completed", events[len(events)-1].Type)
		require.Equal(t, "completed", string(events[len(events)-1].Response.Status))
		for i, ev := range events {
			require.EqualValues(t, i, ev.SequenceNumber, "sequence numbers count from 0 without gaps")
		}

		// Resumed after event 3: the same events, numbered the same.
		resumed := client.Responses.GetStreaming(ctx, id, responses.ResponseGetParams{StartingAfter: openai.Int(3)})
		var again []responses.ResponseStreamEventUnion
		for resumed.Next() {
			again = append(again, resumed.Current())
		}
		require.NoError(t, resumed.Err())
		require.Len(t, again, len(events)-4)
		for i, ev := range again {
			require.Equal(t, events[i+4].Type, ev.Type)
			require.Equal(t, events[i+4].SequenceNumber, ev.SequenceNumber)
			require.Equal(t, events[i+4].Delta, ev.Delta)
		}
	})

	t.Run("UnknownIsNotFound", func(t *testing.T) {
		_, err := client.Responses.Get(ctx, "resp_00000000-0000-4000-8000-000000000000", responses.ResponseGetParams{})
		var apiErr *openai.Error
		require.True(t, errors.As(err, &apiErr), "%v", err)
		require.Equal(t, http.StatusNotFound, apiErr.StatusCode)
		_, err = client.Responses.Get(ctx, "nonsense", responses.ResponseGetParams{})
		require.True(t, errors.As(err, &apiErr), "%v", err)
		require.Equal(t, http.StatusNotFound, apiErr.StatusCode)
	})

	t.Run("Delete", func(t *testing.T) {
		out, err := client.Responses.New(ctx, responses.ResponseNewParams{Model: "gpt-test",
			Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("to be deleted")}})
		require.NoError(t, err)
		require.NoError(t, client.Responses.Delete(ctx, out.ID))
		_, err = client.Responses.Get(ctx, out.ID, responses.ResponseGetParams{})
		var apiErr *openai.Error
		require.True(t, errors.As(err, &apiErr), "%v", err)
		require.Equal(t, http.StatusNotFound, apiErr.StatusCode)
	})
}

func pollResponse(t *testing.T, client openai.Client, id, status string) *responses.Response {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, err := client.Responses.Get(context.Background(), id, responses.ResponseGetParams{})
		require.NoError(t, err)
		if string(got.Status) == status {
			return got
		}
		require.True(t, time.Now().Before(deadline), "response %s is %s, not %s", id, got.Status, status)
		time.Sleep(20 * time.Millisecond)
	}
}

// A background response survives its client and its worker: cancel while
// it runs, and read one back after the server restarted on the same Redis.
func TestOpenAISDKBackgroundResponsesCancelAndRestart(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake(providertest.WithDelay(3 * time.Second))
	t.Cleanup(fake.Close)
	redisURL := redistest.URL(t)
	env := frontEnv(t, fake, redisURL)
	s := start(t, "serve", env)
	client := sdk(s)
	ctx := context.Background()

	running, err := client.Responses.New(ctx, responses.ResponseNewParams{Model: "gpt-test", Background: openai.Bool(true),
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("slow one")}})
	require.NoError(t, err)
	pollResponse(t, client, running.ID, "in_progress")
	cancelled, err := client.Responses.Cancel(ctx, running.ID)
	require.NoError(t, err)
	require.Equal(t, "cancelled", string(cancelled.Status))

	kept, err := client.Responses.New(ctx, responses.ResponseNewParams{Model: "gpt-test", Background: openai.Bool(true),
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("outlives the server")}})
	require.NoError(t, err)
	pollResponse(t, client, kept.ID, "in_progress")
	s.stop()           // SIGTERM's path: the running attempt finishes, the record keeps it
	s.done <- <-s.done // stopped; the cleanup reads it again
	again := start(t, "serve", env)
	done := pollResponse(t, sdk(again), kept.ID, "completed")
	require.Equal(t, "echo: outlives the server", done.OutputText())
	require.Equal(t, "cancelled", string(pollResponse(t, sdk(again), running.ID, "cancelled").Status))
}

func TestOpenAISDKEmbeddingsAudioAndModels(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	s := start(t, "serve", frontEnv(t, fake, redistest.URL(t)))
	client := sdk(s)
	ctx := context.Background()

	out, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "text-embedding-3-small",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"kucing", "cat"}}})
	require.NoError(t, err)
	require.Len(t, out.Data, 2)
	require.Equal(t, providertest.Vector(0, "kucing", len(out.Data[0].Embedding)), out.Data[0].Embedding)
	require.EqualValues(t, 1, out.Data[1].Index)

	// base64, as the Node SDK asks by default: little-endian float32s.
	res, body := rawPost(t, s.url+"/v1/embeddings", `{"model":"m","input":"kucing","encoding_format":"base64"}`)
	require.Equal(t, http.StatusOK, res.StatusCode, body)
	var packed struct {
		Data []struct {
			Embedding string `json:"embedding"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &packed))
	raw, err := base64.StdEncoding.DecodeString(packed.Data[0].Embedding)
	require.NoError(t, err)
	want := out.Data[0].Embedding
	require.Len(t, raw, 4*len(want))
	for i, f := range want {
		require.InDelta(t, f, float64(math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))), 1e-6)
	}

	speech, err := client.Audio.Speech.New(ctx, openai.AudioSpeechNewParams{Model: "tts-1", Input: "Selamat pagi",
		Voice: openai.AudioSpeechNewParamsVoiceUnion{OfString: openai.String("alloy")}})
	require.NoError(t, err)
	audio, err := io.ReadAll(speech.Body)
	speech.Body.Close()
	require.NoError(t, err)
	require.NotEmpty(t, audio)
	require.Equal(t, "audio/mpeg", speech.Header.Get("Content-Type"))

	wav := providertest.WAV(48000)
	transcript, err := client.Audio.Transcriptions.New(ctx, openai.AudioTranscriptionNewParams{Model: "whisper-1",
		File: openai.File(bytes.NewReader(wav), "rapat.wav", "audio/wav"), Language: openai.String("id")})
	require.NoError(t, err)
	require.Equal(t, providertest.TranscriptOf(wav), transcript.Text)
	stt := fake.STTCalls()
	require.Equal(t, "id", stt[len(stt)-1].Language, "a field is read wherever the form puts it")
	require.Equal(t, wav, stt[len(stt)-1].Audio)

	models, err := client.Models.List(ctx)
	require.NoError(t, err)
	var ids []string
	for _, m := range models.Data {
		ids = append(ids, m.ID)
	}
	require.Contains(t, ids, "gpt-test")
	one, err := client.Models.Get(ctx, "gpt-test")
	require.NoError(t, err)
	require.Equal(t, "gpt-test", one.ID)
	_, err = client.Models.Get(ctx, "no-such-model")
	var apiErr *openai.Error
	require.True(t, errors.As(err, &apiErr), "%v", err)
	require.Equal(t, http.StatusNotFound, apiErr.StatusCode)
	require.Equal(t, "model_not_found", apiErr.Code)
}

// The official Node SDK (openai on npm, the 6.x line that runs on Node 20)
// runs sdk/node/check.mjs against a server. .ci/run installs it; elsewhere
// the test skips until `npm install --prefix sdk/node` has been run.
func TestOfficialNodeSDK(t *testing.T) {
	t.Parallel()
	dir, err := filepath.Abs("../../sdk/node")
	require.NoError(t, err)
	node, err := exec.LookPath("node")
	if _, statErr := os.Stat(filepath.Join(dir, "node_modules", "openai")); err != nil || statErr != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("node or the openai npm package is missing; .ci/run installs them")
		}
		t.Skip("run `npm install --prefix sdk/node` (Node 20) to test the official Node SDK")
	}
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	s := start(t, "serve", frontEnv(t, fake, redistest.URL(t)))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "check.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SIGANTENG_URL="+s.url)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Equal(t, 10, strings.Count(string(out), "ok "), "every check ran: %s", out)
}

// A stream dropped part-way is resumed with starting_after: the events
// after the last one seen, numbered as before, and the text is whole.
func TestOpenAISDKResumesADroppedStream(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	fake.SetStreamChunkDelay(40 * time.Millisecond)
	s := start(t, "serve", frontEnv(t, fake, redistest.URL(t)))
	client := sdk(s)

	ctx, drop := context.WithCancel(context.Background())
	stream := client.Responses.NewStreaming(ctx, responses.ResponseNewParams{Model: "gpt-test", Background: openai.Bool(true),
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("one two three four five six seven eight")}})
	var id string
	var last int64
	var text strings.Builder
	for stream.Next() {
		ev := stream.Current()
		if ev.Type == "response.created" {
			id = ev.Response.ID
		}
		last = ev.SequenceNumber
		if ev.Type == "response.output_text.delta" {
			text.WriteString(ev.Delta)
			if strings.Contains(ev.Delta, "three") {
				break // the connection drops here
			}
		}
	}
	drop()
	stream.Close()
	require.NotEmpty(t, id)
	require.Contains(t, text.String(), "three")
	require.NotContains(t, text.String(), "eight", "dropped before the end")

	resumed := client.Responses.GetStreaming(context.Background(), id, responses.ResponseGetParams{StartingAfter: openai.Int(last)})
	var final string
	for resumed.Next() {
		ev := resumed.Current()
		require.Equal(t, last+1, ev.SequenceNumber, "no event is lost or sent twice")
		last = ev.SequenceNumber
		if ev.Type == "response.output_text.delta" {
			text.WriteString(ev.Delta)
		}
		final = ev.Type
	}
	require.NoError(t, resumed.Err())
	require.Equal(t, "response.completed", final)
	require.Equal(t, "echo: one two three four five six seven eight", text.String())
}

// With keys and a routing file: the SDK's bearer key is checked, another
// key's response is a 404, a model the file does not name is a 404
// model_not_found, /v1/models lists the file's names, and the refusals
// before the front (a bad key) are OpenAI's error object too.
func TestOpenAIFrontWithKeysAndRoutedModels(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	routes := filepath.Join(t.TempDir(), "routes.yaml")
	require.NoError(t, os.WriteFile(routes, []byte(fmt.Sprintf(`
models:
  - name: chat-fast
    capability: generate_text
    deployments:
      - {provider: openai, model: small, base_url: %q}
`, fake.URL())), 0o600))
	redisURL := redistest.URL(t)
	env := frontEnv(t, fake, redisURL)
	env["ROUTES_FILE"] = routes
	alice, bob := createKey(t, redisURL, "--name", "alice"), createKey(t, redisURL, "--name", "bob")
	s := start(t, "serve", env)
	ctx := context.Background()
	as := func(key string) *openai.Client {
		c := openai.NewClient(option.WithBaseURL(s.url+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
		return &c
	}

	out, err := as(alice).Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "chat-fast",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("routed")}})
	require.NoError(t, err)
	require.Equal(t, "echo: routed", out.Choices[0].Message.Content)
	require.Equal(t, "small", fake.Calls()[len(fake.Calls())-1].Model, "the file's model went to the provider")

	var apiErr *openai.Error
	_, err = as(alice).Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-nope",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x")}})
	require.True(t, errors.As(err, &apiErr), "%v", err)
	require.Equal(t, http.StatusNotFound, apiErr.StatusCode)
	require.Equal(t, "model_not_found", apiErr.Code)

	var res *http.Response
	models, err := as(alice).Models.List(ctx, option.WithResponseInto(&res))
	require.NoError(t, err)
	require.Equal(t, "chat-fast", models.Data[0].ID)
	require.NotEmpty(t, res.Header.Get("x-ratelimit-remaining-requests"), "OpenAI's rate-limit headers")
	require.NotEmpty(t, res.Header.Get("x-ratelimit-reset-requests"))

	mine, err := as(alice).Responses.New(ctx, responses.ResponseNewParams{Model: "chat-fast", Background: openai.Bool(true),
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("alice's")}})
	require.NoError(t, err)
	_, err = as(bob).Responses.Get(ctx, mine.ID, responses.ResponseGetParams{})
	require.True(t, errors.As(err, &apiErr), "%v", err)
	require.Equal(t, http.StatusNotFound, apiErr.StatusCode, "another key's response does not exist for bob")
	_, err = as(bob).Responses.Cancel(ctx, mine.ID)
	require.True(t, errors.As(err, &apiErr), "%v", err)
	require.Equal(t, http.StatusNotFound, apiErr.StatusCode)

	_, err = as("sgk_not_a_real_key").Models.List(ctx)
	require.True(t, errors.As(err, &apiErr), "%v", err)
	require.Equal(t, http.StatusUnauthorized, apiErr.StatusCode)
	require.Equal(t, "invalid_api_key", apiErr.Code)
	require.NotEmpty(t, apiErr.Message)
	require.NotContains(t, s.logs.String(), alice, "keys are never logged")
}

// The OpenAI SDK in front of Ollama: SIGANTENG translates a tool-call round
// trip and a background response to Ollama's native API, and refuses,
// naming the field and the provider, what Ollama cannot do.
func TestOpenAISDKOverOllama(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOllamaFake()
	t.Cleanup(fake.Close)
	s := start(t, "serve", map[string]string{"REDIS_URL": redistest.URL(t), "LLM_PROVIDER": "ollama", "OLLAMA_BASE_URL": fake.URL()})
	client := sdk(s)
	ctx := context.Background()
	tools := []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
		Name: "get_weather", Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{"q": map[string]any{"type": "string"}}},
	})}
	messages := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Weather in Makassar?")}
	first, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "llama3.2", Messages: messages, Tools: tools})
	require.NoError(t, err)
	require.Equal(t, "tool_calls", first.Choices[0].FinishReason)
	call := first.Choices[0].Message.ToolCalls[0]
	require.Equal(t, "get_weather", call.Function.Name)
	require.NotEmpty(t, call.ID, "Ollama gives no id; SIGANTENG makes one")

	messages = append(messages, first.Choices[0].Message.ToParam(), openai.ToolMessage("29°C", call.ID))
	second, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "llama3.2", Messages: messages, Tools: tools})
	require.NoError(t, err)
	require.Equal(t, "the tool said: 29°C", second.Choices[0].Message.Content)
	sent := fake.Calls()[1].Messages
	require.Equal(t, []string{"get_weather"}, sent[1].ToolCalls, "the assistant's call went to Ollama in its own shape")

	resp, err := client.Responses.New(ctx, responses.ResponseNewParams{Model: "llama3.2", Background: openai.Bool(true),
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hello ollama")}})
	require.NoError(t, err)
	require.Equal(t, "echo: hello ollama", pollResponse(t, client, resp.ID, "completed").OutputText())

	_, err = client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "llama3.2", Messages: messages[:1], Tools: tools,
		ToolChoice: openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")}})
	var apiErr *openai.Error
	require.True(t, errors.As(err, &apiErr), "%v", err)
	require.Equal(t, http.StatusBadRequest, apiErr.StatusCode)
	require.Equal(t, "tool_choice", apiErr.Param)
	require.Contains(t, apiErr.Message, "ollama")
}
