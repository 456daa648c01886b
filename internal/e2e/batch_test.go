package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider/providertest"
	"github.com/siganteng/siganteng/internal/redistest"
)

// chatLines is a batch input of n chat lines, custom_id req-i asking
// "prompt i"; bad lines (by number) carry a temperature the service
// refuses.
func chatLines(n int, bad ...int) []byte {
	var b bytes.Buffer
	for i := range n {
		temp := ""
		for _, x := range bad {
			if x == i {
				temp = `,"temperature":9`
			}
		}
		fmt.Fprintf(&b, `{"custom_id":"req-%d","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-test","messages":[{"role":"user","content":"prompt %d"}]%s}}`+"\n", i, i, temp)
	}
	return b.Bytes()
}

// upload sends a batch input file through the SDK.
func uploadBatchInput(t *testing.T, client openai.Client, content []byte) string {
	t.Helper()
	f, err := client.Files.New(context.Background(), openai.FileNewParams{File: openai.File(bytes.NewReader(content), "input.jsonl", "application/jsonl"),
		Purpose: openai.FilePurposeBatch})
	require.NoError(t, err)
	require.Equal(t, "batch", string(f.Purpose))
	require.EqualValues(t, len(content), f.Bytes)
	require.True(t, strings.HasPrefix(f.ID, "file-"), f.ID)
	return f.ID
}

// awaitBatch polls a batch until it ends.
func awaitBatch(t *testing.T, client openai.Client, id string, within time.Duration) *openai.Batch {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		b, err := client.Batches.Get(context.Background(), id)
		require.NoError(t, err)
		switch b.Status {
		case openai.BatchStatusCompleted, openai.BatchStatusFailed, openai.BatchStatusCancelled, openai.BatchStatusExpired:
			return b
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("batch %s did not end within %s", id, within)
	return nil
}

// outputLine is a line of an output or error file, as clients read it.
type outputLine struct {
	ID       string `json:"id"`
	CustomID string `json:"custom_id"`
	Response *struct {
		StatusCode int             `json:"status_code"`
		RequestID  string          `json:"request_id"`
		Body       json.RawMessage `json:"body"`
	} `json:"response"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// readLines reads a file's content through the SDK, by custom_id, failing
// on a custom_id seen twice.
func readLines(t *testing.T, client openai.Client, fileID string) map[string]outputLine {
	t.Helper()
	res, err := client.Files.Content(context.Background(), fileID)
	require.NoError(t, err)
	defer res.Body.Close()
	out := map[string]outputLine{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l outputLine
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l), sc.Text())
		_, dup := out[l.CustomID]
		require.False(t, dup, "custom_id %s answered twice", l.CustomID)
		out[l.CustomID] = l
	}
	require.NoError(t, sc.Err())
	return out
}

func TestOpenAISDKBatches(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	env := frontEnv(t, fake, redistest.URL(t))
	env["BATCH_WINDOW"] = "8" // 40 lines go through in five windows at least
	env["BATCH_MAX_LINES"] = "45"
	s := start(t, "serve", env)
	client := sdk(s)
	ctx := context.Background()

	t.Run("ChatLinesAnsweredOnceEachJoinedOnCustomID", func(t *testing.T) {
		input := uploadBatchInput(t, client, chatLines(40, 7))
		b, err := client.Batches.New(ctx, openai.BatchNewParams{InputFileID: input, Endpoint: openai.BatchNewParamsEndpointV1ChatCompletions,
			CompletionWindow: openai.BatchNewParamsCompletionWindow24h, Metadata: shared.Metadata{"job": "nightly"}})
		require.NoError(t, err)
		require.Equal(t, openai.BatchStatusValidating, b.Status)
		require.True(t, strings.HasPrefix(b.ID, "batch_"))
		require.Equal(t, "nightly", b.Metadata["job"])

		done := awaitBatch(t, client, b.ID, 60*time.Second)
		require.Equal(t, openai.BatchStatusCompleted, done.Status, "%+v", done.Errors)
		require.EqualValues(t, 40, done.RequestCounts.Total)
		require.EqualValues(t, 39, done.RequestCounts.Completed)
		require.EqualValues(t, 1, done.RequestCounts.Failed)
		require.NotZero(t, done.InProgressAt)
		require.NotZero(t, done.FinalizingAt)
		require.NotZero(t, done.CompletedAt)
		require.Positive(t, done.Usage.InputTokens)
		require.Positive(t, done.Usage.OutputTokens)

		outputs := readLines(t, client, done.OutputFileID)
		require.Len(t, outputs, 39)
		for i := range 40 {
			l, ok := outputs[fmt.Sprintf("req-%d", i)]
			if i == 7 {
				require.False(t, ok, "the refused line is not in the output")
				continue
			}
			require.True(t, ok, "req-%d answered", i)
			require.Equal(t, 200, l.Response.StatusCode)
			require.Nil(t, l.Error)
			var c openai.ChatCompletion
			require.NoError(t, json.Unmarshal(l.Response.Body, &c))
			require.Equal(t, fmt.Sprintf("echo: prompt %d", i), c.Choices[0].Message.Content)
			require.Equal(t, "chat.completion", string(c.Object))
		}
		errs := readLines(t, client, done.ErrorFileID)
		require.Len(t, errs, 1)
		require.Equal(t, 400, errs["req-7"].Response.StatusCode)
		require.Contains(t, string(errs["req-7"].Response.Body), "temperature")

		out, err := client.Files.Get(ctx, done.OutputFileID)
		require.NoError(t, err)
		require.Equal(t, "batch_output", string(out.Purpose))
		require.NotZero(t, out.ExpiresAt, "output files expire (30 days by default)")

		page, err := client.Batches.List(ctx, openai.BatchListParams{Limit: openai.Int(10)})
		require.NoError(t, err)
		require.NotEmpty(t, page.Data)
		files, err := client.Files.List(ctx, openai.FileListParams{Purpose: openai.String("batch_output")})
		require.NoError(t, err)
		found := false
		for _, f := range files.Data {
			found = found || f.ID == done.OutputFileID
		}
		require.True(t, found, "the output file is listed")

		deleted, err := client.Files.Delete(ctx, input)
		require.NoError(t, err)
		require.True(t, deleted.Deleted)
		_, err = client.Files.Get(ctx, input)
		var apiErr *openai.Error
		require.ErrorAs(t, err, &apiErr)
		require.Equal(t, http.StatusNotFound, apiErr.StatusCode)
	})

	t.Run("Embeddings", func(t *testing.T) {
		var in bytes.Buffer
		for i := range 5 {
			fmt.Fprintf(&in, `{"custom_id":"e%d","method":"POST","url":"/v1/embeddings","body":{"model":"text-embedding-3-small","input":"text %d"}}`+"\n", i, i)
		}
		b, err := client.Batches.New(ctx, openai.BatchNewParams{InputFileID: uploadBatchInput(t, client, in.Bytes()),
			Endpoint: openai.BatchNewParamsEndpointV1Embeddings, CompletionWindow: openai.BatchNewParamsCompletionWindow24h})
		require.NoError(t, err)
		done := awaitBatch(t, client, b.ID, 30*time.Second)
		require.Equal(t, openai.BatchStatusCompleted, done.Status)
		require.EqualValues(t, 5, done.RequestCounts.Completed)
		for id, l := range readLines(t, client, done.OutputFileID) {
			var e openai.CreateEmbeddingResponse
			require.NoError(t, json.Unmarshal(l.Response.Body, &e), id)
			require.Len(t, e.Data, 1)
			require.NotEmpty(t, e.Data[0].Embedding)
		}
	})

	t.Run("AMalformedFileFailsNamingTheLines", func(t *testing.T) {
		bad := string(chatLines(2)) + "{not json\n" +
			`{"custom_id":"req-0","method":"POST","url":"/v1/chat/completions","body":{"messages":[{"role":"user","content":"x"}]}}` + "\n" +
			`{"custom_id":"other","method":"POST","url":"/v1/embeddings","body":{"input":"x"}}` + "\n" +
			`{"method":"POST","url":"/v1/chat/completions","body":{}}` + "\n" +
			`{"custom_id":"n3","method":"POST","url":"/v1/chat/completions","body":{"messages":[{"role":"user","content":"x"}],"n":3}}` + "\n"
		b, err := client.Batches.New(ctx, openai.BatchNewParams{InputFileID: uploadBatchInput(t, client, []byte(bad)),
			Endpoint: openai.BatchNewParamsEndpointV1ChatCompletions, CompletionWindow: openai.BatchNewParamsCompletionWindow24h})
		require.NoError(t, err)
		done := awaitBatch(t, client, b.ID, 30*time.Second)
		require.Equal(t, openai.BatchStatusFailed, done.Status)
		require.NotZero(t, done.FailedAt)
		got := map[int64]string{}
		for _, e := range done.Errors.Data {
			got[e.Line] = e.Code
		}
		require.Equal(t, map[int64]string{3: "invalid_json_line", 4: "duplicate_custom_id", 5: "mismatched_endpoint",
			6: "missing_required_parameter", 7: "invalid_request"}, got)
		require.Empty(t, done.OutputFileID)
	})

	t.Run("AFileOverTheLineLimitFails", func(t *testing.T) {
		b, err := client.Batches.New(ctx, openai.BatchNewParams{InputFileID: uploadBatchInput(t, client, chatLines(46)),
			Endpoint: openai.BatchNewParamsEndpointV1ChatCompletions, CompletionWindow: openai.BatchNewParamsCompletionWindow24h})
		require.NoError(t, err)
		done := awaitBatch(t, client, b.ID, 30*time.Second)
		require.Equal(t, openai.BatchStatusFailed, done.Status)
		require.Equal(t, "too_many_requests", done.Errors.Data[0].Code)
		require.EqualValues(t, 46, done.Errors.Data[0].Line)
	})

	t.Run("BadRequestsAreOpenAIErrors", func(t *testing.T) {
		input := uploadBatchInput(t, client, chatLines(1))
		for _, tc := range []struct {
			params openai.BatchNewParams
			param  string
		}{
			{openai.BatchNewParams{InputFileID: input, Endpoint: "/v1/completions", CompletionWindow: "24h"}, "endpoint"},
			{openai.BatchNewParams{InputFileID: input, Endpoint: "/v1/chat/completions", CompletionWindow: "1h"}, "completion_window"},
			{openai.BatchNewParams{InputFileID: "file-nope", Endpoint: "/v1/chat/completions", CompletionWindow: "24h"}, "input_file_id"},
		} {
			_, err := client.Batches.New(ctx, tc.params)
			var apiErr *openai.Error
			require.ErrorAs(t, err, &apiErr)
			require.Equal(t, http.StatusBadRequest, apiErr.StatusCode)
			require.Equal(t, tc.param, apiErr.Param)
		}
		_, err := client.Files.New(ctx, openai.FileNewParams{File: openai.File(strings.NewReader("x"), "x.txt", "text/plain"), Purpose: "sorcery"})
		var apiErr *openai.Error
		require.ErrorAs(t, err, &apiErr)
		require.Equal(t, http.StatusBadRequest, apiErr.StatusCode)
		require.Equal(t, "purpose", apiErr.Param)
		_, err = client.Batches.Get(ctx, "batch_nope")
		require.ErrorAs(t, err, &apiErr)
		require.Equal(t, http.StatusNotFound, apiErr.StatusCode)
	})
}

// A cancelled batch stops admitting, revokes its lines not yet started,
// lets running ones finish, writes what finished, and ends cancelled.
func TestOpenAISDKCancelsARunningBatch(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake(providertest.WithDelay(300 * time.Millisecond))
	t.Cleanup(fake.Close)
	env := frontEnv(t, fake, redistest.URL(t))
	env["BATCH_WINDOW"] = "4"
	s := start(t, "serve", env)
	client := sdk(s)
	ctx := context.Background()
	b, err := client.Batches.New(ctx, openai.BatchNewParams{InputFileID: uploadBatchInput(t, client, chatLines(60)),
		Endpoint: openai.BatchNewParamsEndpointV1ChatCompletions, CompletionWindow: openai.BatchNewParamsCompletionWindow24h})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		got, err := client.Batches.Get(ctx, b.ID)
		return err == nil && got.RequestCounts.Completed >= 4
	}, 30*time.Second, 50*time.Millisecond, "the batch runs")
	cancelling, err := client.Batches.Cancel(ctx, b.ID)
	require.NoError(t, err)
	require.Contains(t, []openai.BatchStatus{openai.BatchStatusCancelling, openai.BatchStatusCancelled}, cancelling.Status)
	done := awaitBatch(t, client, b.ID, 30*time.Second)
	require.Equal(t, openai.BatchStatusCancelled, done.Status)
	require.NotZero(t, done.CancelledAt)
	require.NotZero(t, done.CancellingAt)
	require.EqualValues(t, 60, done.RequestCounts.Total)
	require.Less(t, done.RequestCounts.Completed, int64(60), "lines past the cancel did not run")
	written := readLines(t, client, done.OutputFileID)
	require.Len(t, written, int(done.RequestCounts.Completed))
	if done.ErrorFileID != "" {
		for id, l := range readLines(t, client, done.ErrorFileID) {
			require.Equal(t, "batch_cancelled", l.Error.Code, id)
		}
	}
	calls := len(fake.Calls())
	require.Less(t, calls, 60, "the provider was not called for every line")
}

// Files and batches belong to their key: to another key they do not exist.
func TestBatchesAndFilesBelongToTheirKey(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	redisURL := redistest.URL(t)
	alice, bob := createKey(t, redisURL, "--name", "alice"), createKey(t, redisURL, "--name", "bob")
	s := start(t, "serve", frontEnv(t, fake, redisURL))
	clients := map[string]openai.Client{}
	for _, key := range []string{alice, bob} {
		clients[key] = openai.NewClient(option.WithBaseURL(s.url+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
	}
	as := func(key string) *openai.Client { c := clients[key]; return &c }
	ctx := context.Background()
	input := uploadBatchInput(t, *as(alice), chatLines(3))
	b, err := as(alice).Batches.New(ctx, openai.BatchNewParams{InputFileID: input, Endpoint: openai.BatchNewParamsEndpointV1ChatCompletions,
		CompletionWindow: openai.BatchNewParamsCompletionWindow24h})
	require.NoError(t, err)
	done := awaitBatch(t, *as(alice), b.ID, 30*time.Second)
	require.Equal(t, openai.BatchStatusCompleted, done.Status)

	notFound := func(err error) {
		t.Helper()
		var apiErr *openai.Error
		require.True(t, errors.As(err, &apiErr), "%v", err)
		require.Equal(t, http.StatusNotFound, apiErr.StatusCode)
	}
	_, err = as(bob).Batches.Get(ctx, b.ID)
	notFound(err)
	_, err = as(bob).Batches.Cancel(ctx, b.ID)
	notFound(err)
	_, err = as(bob).Files.Get(ctx, input)
	notFound(err)
	_, err = as(bob).Files.Content(ctx, done.OutputFileID)
	notFound(err)
	_, err = as(bob).Files.Delete(ctx, input)
	notFound(err)
	_, err = as(bob).Batches.New(ctx, openai.BatchNewParams{InputFileID: input, Endpoint: openai.BatchNewParamsEndpointV1ChatCompletions,
		CompletionWindow: openai.BatchNewParamsCompletionWindow24h})
	var apiErr *openai.Error
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, "input_file_id", apiErr.Param, "another key's file is not there to batch")
	list, err := as(bob).Batches.List(ctx, openai.BatchListParams{})
	require.NoError(t, err)
	require.Empty(t, list.Data)
	files, err := as(bob).Files.List(ctx, openai.FileListParams{})
	require.NoError(t, err)
	require.Empty(t, files.Data)
	res, err := as(alice).Files.Content(ctx, done.OutputFileID)
	require.NoError(t, err)
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.Equal(t, 3, bytes.Count(raw, []byte("\n")))
}

// A worker SIGKILLed mid-batch leaves a batch that another worker finishes,
// with every line answered exactly once (its provider call may have been
// made twice; its output line is written once).
func TestABatchSurvivesItsWorkerBeingKilled(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake(providertest.WithDelay(20 * time.Millisecond))
	t.Cleanup(fake.Close)
	env := frontEnv(t, fake, redistest.URL(t))
	env["BATCH_WINDOW"] = "32"
	env["LOG_LEVEL"] = "warn"
	s := start(t, "api", env)
	victim, _ := child(t, "worker", env)
	client := sdk(s)
	ctx := context.Background()
	const lines = 300
	b, err := client.Batches.New(ctx, openai.BatchNewParams{InputFileID: uploadBatchInput(t, client, chatLines(lines)),
		Endpoint: openai.BatchNewParamsEndpointV1ChatCompletions, CompletionWindow: openai.BatchNewParamsCompletionWindow24h})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		got, err := client.Batches.Get(ctx, b.ID)
		return err == nil && got.RequestCounts.Completed >= 50
	}, 60*time.Second, 20*time.Millisecond, "the batch runs on the first worker")
	require.NoError(t, victim.Process.Signal(syscall.SIGKILL))
	_, _ = victim.Process.Wait()
	killedAt, _ := client.Batches.Get(ctx, b.ID)
	require.Less(t, killedAt.RequestCounts.Completed, int64(lines), "killed mid-batch")
	start(t, "worker", env)

	done := awaitBatch(t, client, b.ID, 240*time.Second)
	require.Equal(t, openai.BatchStatusCompleted, done.Status)
	require.EqualValues(t, lines, done.RequestCounts.Completed)
	require.Zero(t, done.RequestCounts.Failed)
	out := readLines(t, client, done.OutputFileID) // fails on a custom_id seen twice
	require.Len(t, out, lines)
	for i := range lines {
		l := out[fmt.Sprintf("req-%d", i)]
		require.Contains(t, string(l.Response.Body), fmt.Sprintf("echo: prompt %d", i))
	}
	t.Logf("killed at %d of %d lines written; provider called %d times for %d lines", killedAt.RequestCounts.Completed, lines, len(fake.Calls()), lines)
}

// A batch's end is posted to its webhook as OpenAI's event, signed so that
// the SDK's own verification accepts it.
func TestABatchsEndIsAWebhookTheSDKVerifies(t *testing.T) {
	t.Parallel()
	got := make(chan *http.Request, 4)
	bodies := make(chan []byte, 4)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		got <- r
		bodies <- raw
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rcv.Close)
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	env := frontEnv(t, fake, redistest.URL(t))
	env["WEBHOOK_SECRET"] = testWebhookSecret
	env["FETCH_ALLOW_PRIVATE"] = "true"
	s := start(t, "serve", env)
	client := sdk(s)
	ctx := context.Background()
	for _, tc := range []struct {
		input []byte
		event string
	}{{chatLines(3), "batch.completed"}, {[]byte("not json\n"), "batch.failed"}} {
		b, err := client.Batches.New(ctx, openai.BatchNewParams{InputFileID: uploadBatchInput(t, client, tc.input),
			Endpoint: openai.BatchNewParamsEndpointV1ChatCompletions, CompletionWindow: openai.BatchNewParamsCompletionWindow24h},
			option.WithJSONSet("webhook", rcv.URL+"/hooks?token=secret-of-the-receiver"))
		require.NoError(t, err)
		awaitBatch(t, client, b.ID, 30*time.Second)
		var req *http.Request
		select {
		case req = <-got:
		case <-time.After(30 * time.Second):
			t.Fatalf("no %s webhook", tc.event)
		}
		raw := <-bodies
		ev, err := client.Webhooks.Unwrap(raw, req.Header, option.WithWebhookSecret(testWebhookSecret))
		require.NoError(t, err, "the SDK verifies the signature: %s", raw)
		require.Equal(t, tc.event, ev.Type)
		require.Equal(t, b.ID, ev.Data.ID)
		require.True(t, strings.HasPrefix(ev.ID, "evt_"))
		_, err = client.Webhooks.Unwrap(raw, req.Header, option.WithWebhookSecret("whsec_"+strings.Repeat("A", 32)))
		require.Error(t, err, "another secret is refused")
		shown, err := client.Batches.Get(ctx, b.ID)
		require.NoError(t, err)
		require.NotContains(t, shown.RawJSON(), "secret-of-the-receiver", "the webhook URL is not shown")
	}
	require.NotContains(t, s.logs.String(), "secret-of-the-receiver")

	_, err := client.Batches.New(ctx, openai.BatchNewParams{InputFileID: uploadBatchInput(t, client, chatLines(1)),
		Endpoint: openai.BatchNewParamsEndpointV1ChatCompletions, CompletionWindow: openai.BatchNewParamsCompletionWindow24h},
		option.WithJSONSet("webhook", "ftp://example.com/x"))
	var apiErr *openai.Error
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, "webhook", apiErr.Param)
}
