package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider/providertest"
	"github.com/siganteng/siganteng/internal/redistest"
)

// sseEvent is one server-sent event as a client received it.
type sseEvent struct {
	ID, Kind string
	Data     json.RawMessage
	At       time.Time // when it arrived
}

// follow reads a task's event stream until the server ends it, or ctx ends.
func follow(t *testing.T, ctx context.Context, base, id, lastEventID string) []sseEvent {
	t.Helper()
	return followClient(t, ctx, http.DefaultClient, base, id, lastEventID)
}

// followClient is follow through client.
func followClient(t *testing.T, ctx context.Context, client *http.Client, base, id, lastEventID string) []sseEvent {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/background/tasks/"+id+"/events", nil)
	require.NoError(t, err)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	res, err := client.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "text/event-stream", res.Header.Get("Content-Type"))
	var (
		events []sseEvent
		cur    sseEvent
	)
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.Kind != "" {
				cur.At = time.Now()
				events = append(events, cur)
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, "id: "):
			cur.ID = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			cur.Kind = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.Data = json.RawMessage(strings.TrimPrefix(line, "data: "))
		}
	}
	require.NoError(t, ctx.Err(), "the stream did not end by itself")
	return events
}

func statusOf(t *testing.T, e sseEvent) string {
	t.Helper()
	var v struct {
		Status string `json:"status"`
	}
	require.NoError(t, json.Unmarshal(e.Data, &v))
	return v.Status
}

func TestStreamedTextArrivesAsEventsAsItIsMade(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	const text = "Queues wait for no one; workers wake and write the answer word by word."
	fake.Script(fake.TextReply(text, "gpt-test", 9, 14))
	fake.SetStreamChunkDelay(40 * time.Millisecond)
	s := start(t, "serve", openAIEnv(t, fake, redistest.URL(t)))

	rec, _ := submit(t, s.url, `{"prompt":"write","stream":true}`)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	events := follow(t, ctx, s.url, rec.TaskID, "")

	require.GreaterOrEqual(t, len(events), 4)
	require.Equal(t, "status", events[0].Kind)
	require.Equal(t, "PENDING", statusOf(t, events[0]))
	require.Equal(t, "STARTED", statusOf(t, events[1]))
	last := events[len(events)-1]
	require.Equal(t, "status", last.Kind)
	var final record
	require.NoError(t, json.Unmarshal(last.Data, &final), "the last event carries the final record")
	require.Equal(t, "SUCCESS", final.Status)
	require.Equal(t, text, final.Result.Text)

	var streamed strings.Builder
	var deltas []sseEvent
	for _, e := range events {
		require.NotEmpty(t, e.ID)
		if e.Kind == "delta" {
			var d struct {
				Attempt int    `json:"attempt"`
				Text    string `json:"text"`
			}
			require.NoError(t, json.Unmarshal(e.Data, &d))
			require.Equal(t, 1, d.Attempt)
			streamed.WriteString(d.Text)
			deltas = append(deltas, e)
		}
	}
	require.Equal(t, text, streamed.String(), "the deltas add up to the result")
	require.GreaterOrEqual(t, len(deltas), 3, "text came in several events while it was made")
	// 14 words 40 ms apart: the first text arrives long before the end.
	require.Greater(t, last.At.Sub(deltas[0].At), 250*time.Millisecond, "first text %s, end %s", deltas[0].At, last.At)

	var progress struct {
		Progress struct {
			Done int    `json:"done"`
			Unit string `json:"unit"`
		} `json:"progress"`
	}
	require.NoError(t, json.Unmarshal(last.Data, &progress))
	require.Equal(t, len(text), progress.Progress.Done)
	require.Equal(t, "characters", progress.Progress.Unit)

	// A client that reconnects after an event gets only what followed it,
	// and one that comes after the end still gets the whole story.
	rest := follow(t, ctx, s.url, rec.TaskID, deltas[0].ID)
	require.Equal(t, events[len(events)-len(rest)].ID, rest[0].ID)
	require.Equal(t, last.ID, rest[len(rest)-1].ID)
	again := follow(t, ctx, s.url, rec.TaskID, "")
	require.Len(t, again, len(events))
}

func TestEventsOnTheEmbeddedRedis(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOllamaFake()
	t.Cleanup(fake.Close)
	fake.Script(fake.TextReply("one two three", "llama3.2", 3, 3))
	s := start(t, "serve", map[string]string{"OLLAMA_BASE_URL": fake.URL()})
	rec, _ := submit(t, s.url, `{"prompt":"count","stream":true}`)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	events := follow(t, ctx, s.url, rec.TaskID, "")
	var kinds []string
	for _, e := range events {
		kinds = append(kinds, e.Kind)
	}
	require.Contains(t, kinds, "delta", "%s", s.logs.String())
	require.Equal(t, "SUCCESS", statusOf(t, events[len(events)-1]))
	require.True(t, fake.Calls()[0].Stream)
}

func TestListTasksEndToEnd(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	s := start(t, "serve", openAIEnv(t, fake, redistest.URL(t)))
	first, _ := submit(t, s.url, `{"prompt":"one"}`)
	await(t, s.url, first.TaskID, 10*time.Second)
	second, _ := submitTo(t, s.url, "embed", `{"input":["two"]}`)
	await(t, s.url, second.TaskID, 10*time.Second)

	var page struct {
		Tasks []record `json:"tasks"`
	}
	getJSON(t, s.url+"/background/tasks", &page)
	require.Len(t, page.Tasks, 2)
	require.Equal(t, second.TaskID, page.Tasks[0].TaskID, "newest first")
	getJSON(t, s.url+"/background/tasks?type=generate_text&status=SUCCESS", &page)
	require.Len(t, page.Tasks, 1)
	require.Equal(t, first.TaskID, page.Tasks[0].TaskID)
}

func TestEventsOfUnknownTaskAre404(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	s := start(t, "serve", openAIEnv(t, fake, redistest.URL(t)))
	res, err := http.Get(s.url + "/background/tasks/6f1c1d2e-0000-4000-8000-000000000000/events")
	require.NoError(t, err)
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	require.Equal(t, http.StatusNotFound, res.StatusCode)
}

// Tasks carry metadata labels, and a listing filters by one, within the
// caller's own tasks; bad labels are a 422 naming metadata.
func TestMetadataLabelsAndListsTasks(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	s := start(t, "serve", openAIEnv(t, fake, redistest.URL(t)))
	acme, _ := submit(t, s.url, `{"prompt":"one","metadata":{"customer":"acme","run":"7"}}`)
	submit(t, s.url, `{"prompt":"two","metadata":{"customer":"globex"}}`)
	embed, _ := submitTo(t, s.url, "embed", `{"input":["three"],"metadata":{"customer":"acme"}}`)
	final, _ := await(t, s.url, acme.TaskID, 10*time.Second)
	require.Equal(t, "SUCCESS", final.Status)

	var page struct {
		Tasks []struct {
			TaskID   string            `json:"task_id"`
			Metadata map[string]string `json:"metadata"`
		} `json:"tasks"`
	}
	getJSON(t, s.url+"/background/tasks?metadata%5Bcustomer%5D=acme", &page)
	require.Len(t, page.Tasks, 2)
	require.Equal(t, embed.TaskID, page.Tasks[0].TaskID)
	require.Equal(t, map[string]string{"customer": "acme", "run": "7"}, page.Tasks[1].Metadata)
	getJSON(t, s.url+"/background/tasks?metadata[customer]=acme&type=embed", &page)
	require.Len(t, page.Tasks, 1)

	many := map[string]string{}
	for i := range 17 {
		many[fmt.Sprint("k", i)] = "v"
	}
	body, _ := json.Marshal(map[string]any{"prompt": "x", "metadata": many})
	for _, bad := range []string{string(body), `{"prompt":"x","metadata":{"` + strings.Repeat("k", 65) + `":"v"}}`} {
		res, err := http.Post(s.url+"/background/generate_text", "application/json", strings.NewReader(bad))
		require.NoError(t, err)
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		require.Equal(t, http.StatusUnprocessableEntity, res.StatusCode, "%s", raw)
		require.Contains(t, string(raw), "metadata")
	}
	res, err := http.Get(s.url + "/background/tasks?metadata[a]=1&metadata[b]=2")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusUnprocessableEntity, res.StatusCode, "one metadata filter at a time")
}
