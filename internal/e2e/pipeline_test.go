package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider/espeak"
	"github.com/siganteng/siganteng/internal/provider/providertest"
	"github.com/siganteng/siganteng/internal/redistest"
	"github.com/siganteng/siganteng/internal/store"
)

// pipelineRecord is what the tests read of a pipeline.
type pipelineRecord struct {
	ID     string `json:"pipeline_id"`
	Status string `json:"status"`
	Steps  []struct {
		Name    string   `json:"name"`
		Kind    string   `json:"kind"`
		Status  string   `json:"status"`
		Skipped bool     `json:"skipped"`
		TaskID  string   `json:"task_id"`
		TaskIDs []string `json:"task_ids"`
	} `json:"steps"`
	Metadata map[string]string `json:"metadata"`
	Result   json.RawMessage   `json:"result"`
	Error    *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Step    string `json:"step"`
		TaskID  string `json:"task_id"`
	} `json:"error"`
}

// refusesCall is a provider that refuses its n-th chat call for good (a
// 400) and answers every other.
func refusesCall(n int) *providertest.OpenAIFake {
	return providertest.NewOpenAIFake(providertest.WithFailures(func(call int) *providertest.Reply {
		if call != n {
			return nil
		}
		return &providertest.Reply{Status: http.StatusBadRequest, Body: []byte(`{"error":{"message":"This model cannot do that.","type":"invalid_request_error"}}`)}
	}))
}

// submitPipeline posts a pipeline and returns the answer's status and body.
func submitPipeline(t testing.TB, base, body string) (int, []byte) {
	t.Helper()
	res, err := http.Post(base+"/background/pipelines", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return res.StatusCode, raw
}

// startPipeline posts a pipeline that must be accepted.
func startPipeline(t testing.TB, base, body string) pipelineRecord {
	t.Helper()
	status, raw := submitPipeline(t, base, body)
	require.Equal(t, http.StatusAccepted, status, "%s", raw)
	var p pipelineRecord
	require.NoError(t, json.Unmarshal(raw, &p))
	return p
}

func getPipeline(t testing.TB, base, id string) pipelineRecord {
	t.Helper()
	var p pipelineRecord
	getJSON(t, base+"/background/pipelines/"+id, &p)
	return p
}

// awaitPipeline polls until the pipeline ends.
func awaitPipeline(t testing.TB, base, id string, within time.Duration) pipelineRecord {
	t.Helper()
	deadline := time.Now().Add(within)
	var p pipelineRecord
	for time.Now().Before(deadline) {
		p = getPipeline(t, base, id)
		switch p.Status {
		case "SUCCESS", "FAILURE", "REVOKED":
			return p
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("pipeline %s did not end within %s: %+v", id, within, p)
	return p
}

// uploadFile puts data in the Files API and returns the file's id.
func uploadFile(t *testing.T, base, name string, data []byte) string {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	require.NoError(t, mw.WriteField("purpose", "user_data"))
	fw, err := mw.CreateFormFile("file", name)
	require.NoError(t, err)
	_, _ = fw.Write(data)
	require.NoError(t, mw.Close())
	res, err := http.Post(base+"/v1/files", mw.FormDataContentType(), &body)
	require.NoError(t, err)
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	require.Equal(t, http.StatusOK, res.StatusCode, "%s", raw)
	var f struct {
		ID string `json:"id"`
	}
	require.NoError(t, json.Unmarshal(raw, &f))
	return f.ID
}

// The README's example: a voice note is uploaded, transcribed, summarized,
// and the summary spoken by the real espeak-ng; the pipeline's events tell
// each step's start and end, and each step is an ordinary task.
func TestAPipelineTranscribesSummarizesAndSpeaks(t *testing.T) {
	t.Parallel()
	if !espeak.Available("") {
		if os.Getenv("CI") != "" {
			t.Fatal("espeak-ng is not installed; .ci/run installs it")
		}
		t.Skip("espeak-ng is not installed")
	}
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	env := openAIEnv(t, fake, redistest.URL(t))
	env["STT_PROVIDER"], env["TTS_PROVIDER"] = "openai", "espeak"
	s := start(t, "serve", env)

	note, err := exec.Command("espeak-ng", "--stdout", "Meeting moved to Thursday at ten.").Output()
	require.NoError(t, err)
	fileID := uploadFile(t, s.url, "note.wav", note)

	p := startPipeline(t, s.url, fmt.Sprintf(`{"metadata":{"customer":"acme"},"steps":[
	  {"name":"transcript","kind":"speech_to_text","input":{"file_id":%q,"language":"en"}},
	  {"name":"summary","kind":"generate_text","input":{"prompt":"Summarize: {{steps.transcript.text}}","max_tokens":60}},
	  {"name":"speech","kind":"text_to_speech","input":{"text":"{{ steps.summary.text }}","voice":"en"}}]}`, fileID))
	require.Equal(t, "PENDING", p.Status)
	require.Len(t, p.Steps, 3)

	// The event stream, from the start, until the pipeline ends.
	events := make(chan []string, 1)
	go func() { events <- readEvents(t, s.url+"/background/pipelines/"+p.ID+"/events") }()

	final := awaitPipeline(t, s.url, p.ID, 30*time.Second)
	require.Equal(t, "SUCCESS", final.Status, "%+v", final.Error)
	for _, st := range final.Steps {
		require.Equal(t, "SUCCESS", st.Status, st.Name)
		require.NotEmpty(t, st.TaskID)
	}
	transcript := providertest.TranscriptOf(note)
	calls := fake.Calls()
	require.Len(t, calls, 1, "the summary's call; its task: %+v", get(t, s.url, final.Steps[1].TaskID))
	require.Equal(t, "Summarize: "+transcript, calls[0].Messages[len(calls[0].Messages)-1].Content,
		"the summary's prompt took the transcript")

	var spoken speechRecord
	getJSON(t, s.url+"/background/tasks/"+final.Steps[2].TaskID, &spoken)
	require.Equal(t, "espeak", spoken.Result.Provider)
	res, wav := download(t, s.url+spoken.Result.Artifact.URL, "")
	require.Equal(t, http.StatusOK, res.StatusCode)
	info, err := providertest.ParseWAV(wav)
	require.NoError(t, err)
	require.Greater(t, info.Duration, time.Second, "the summary, spoken")
	var raw struct {
		Result json.RawMessage `json:"result"`
	}
	getJSON(t, s.url+"/background/tasks/"+final.Steps[2].TaskID, &raw)
	require.JSONEq(t, string(raw.Result), string(final.Result), "the pipeline's result is its last step's")

	// Each step is an ordinary task of the pipeline, with its labels.
	var step struct {
		PipelineID   string            `json:"pipeline_id"`
		PipelineStep string            `json:"pipeline_step"`
		Metadata     map[string]string `json:"metadata"`
	}
	getJSON(t, s.url+"/background/tasks/"+final.Steps[1].TaskID, &step)
	require.Equal(t, p.ID, step.PipelineID)
	require.Equal(t, "summary", step.PipelineStep)
	require.Equal(t, "acme", step.Metadata["customer"])

	seen := <-events
	require.Equal(t, []string{
		"status PENDING", "status STARTED", "step transcript STARTED", "step transcript SUCCESS", "step summary STARTED",
		"step summary SUCCESS", "step speech STARTED", "step speech SUCCESS", "status SUCCESS",
	}, seen)

	// Listed, without its result.
	var list struct {
		Pipelines []pipelineRecord `json:"pipelines"`
	}
	getJSON(t, s.url+"/background/pipelines", &list)
	require.Len(t, list.Pipelines, 1)
	require.Equal(t, p.ID, list.Pipelines[0].ID)
	require.Empty(t, list.Pipelines[0].Result)
}

func mustMarshal(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// readEvents follows a server-sent event stream to its end and returns
// each event as "KIND [STEP] STATUS".
func readEvents(t *testing.T, url string) []string {
	res, err := http.Get(url)
	if err != nil {
		return []string{err.Error()}
	}
	defer res.Body.Close()
	var out []string
	kind := ""
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			kind = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			var d struct {
				Status string `json:"status"`
				Step   string `json:"step"`
			}
			_ = json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &d)
			if d.Step != "" {
				out = append(out, kind+" "+d.Step+" "+d.Status)
			} else {
				out = append(out, kind+" "+d.Status)
			}
		}
	}
	return out
}

// A step runs over a list, one task per item, and the next step takes its
// outputs in the items' order.
func TestAPipelineFansOutOverAHundredItems(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	s := start(t, "serve", openAIEnv(t, fake, redistest.URL(t)))

	items := make([]string, 100)
	for i := range items {
		items[i] = fmt.Sprintf("chunk %03d", i)
	}
	p := startPipeline(t, s.url, fmt.Sprintf(`{"steps":[
	  {"name":"each","kind":"generate_text","for_each":%s,"input":{"prompt":"{{index}}: {{item}}"}},
	  {"name":"again","kind":"generate_text","for_each":"{{steps.each.text}}","input":{"prompt":"{{item}}"}},
	  {"name":"all","kind":"generate_text","input":{"prompt":"{{steps.again.text}}"}}]}`, mustMarshal(t, items)))
	final := awaitPipeline(t, s.url, p.ID, 60*time.Second)
	require.Equal(t, "SUCCESS", final.Status, "%+v", final.Error)
	require.Len(t, final.Steps[0].TaskIDs, 100)
	require.Len(t, final.Steps[1].TaskIDs, 100)

	var joined []string
	for i, item := range items {
		joined = append(joined, fmt.Sprintf("echo: echo: %d: %s", i, item))
	}
	var last struct {
		Text string `json:"text"`
	}
	require.NoError(t, json.Unmarshal(final.Result, &last))
	require.Equal(t, "echo: "+strings.Join(joined, "\n\n"), last.Text, "every item's output, in order")
	require.Len(t, fake.Calls(), 201, "each item ran once")
}

// A middle step that fails for good fails the pipeline, naming the step;
// the step after it never runs.
func TestAPipelineWhoseMiddleStepFailsSkipsTheRest(t *testing.T) {
	t.Parallel()
	fake := refusesCall(2)
	t.Cleanup(fake.Close)
	s := start(t, "serve", openAIEnv(t, fake, redistest.URL(t)))

	p := startPipeline(t, s.url, `{"steps":[
	  {"name":"first","kind":"generate_text","input":{"prompt":"hello"}},
	  {"name":"middle","kind":"generate_text","input":{"prompt":"refuse me: {{steps.first.text}}"}},
	  {"name":"last","kind":"generate_text","input":{"prompt":"{{steps.middle.text}}"}}]}`)
	final := awaitPipeline(t, s.url, p.ID, 30*time.Second)
	require.Equal(t, "FAILURE", final.Status)
	require.Equal(t, "middle", final.Error.Step)
	require.Equal(t, "provider_rejected", final.Error.Code)
	require.Contains(t, final.Error.Message, "middle")
	require.Equal(t, final.Steps[1].TaskID, final.Error.TaskID)
	require.Equal(t, []string{"SUCCESS", "FAILURE", "REVOKED"}, []string{final.Steps[0].Status, final.Steps[1].Status, final.Steps[2].Status})
	require.True(t, final.Steps[2].Skipped)
	require.Empty(t, final.Steps[2].TaskID)
	require.Equal(t, "FAILURE", get(t, s.url, final.Steps[1].TaskID).Status)
	require.Len(t, fake.Calls(), 2, "the last step never ran")
}

// Cancelling a pipeline cuts its running step's call and skips the rest.
func TestCancellingAPipelineStopsItsRunningStep(t *testing.T) {
	t.Parallel()
	slow := providertest.NewOpenAIFake(providertest.WithDelay(30 * time.Second))
	t.Cleanup(slow.Close)
	s := start(t, "serve", openAIEnv(t, slow, redistest.URL(t)))

	p := startPipeline(t, s.url, `{"steps":[
	  {"name":"slow","kind":"generate_text","input":{"prompt":"take your time"}},
	  {"name":"never","kind":"generate_text","input":{"prompt":"{{steps.slow.text}}"}}]}`)
	require.Eventually(t, func() bool {
		st := getPipeline(t, s.url, p.ID).Steps[0]
		return st.TaskID != "" && get(t, s.url, st.TaskID).Status == "STARTED"
	}, 15*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return len(slow.Calls()) == 1 }, 5*time.Second, 5*time.Millisecond, "the call is under way")

	began := time.Now()
	res, raw := call(t, "POST", s.url+"/background/pipelines/"+p.ID+"/cancel", "", "")
	require.Equal(t, http.StatusOK, res.StatusCode, "%s", raw)
	var cancelled pipelineRecord
	require.NoError(t, json.Unmarshal(raw, &cancelled))
	require.Equal(t, "REVOKED", cancelled.Status)
	require.Equal(t, "revoked", cancelled.Error.Code)
	require.Equal(t, "slow", cancelled.Error.Step)
	require.True(t, cancelled.Steps[1].Skipped)

	rec, _ := await(t, s.url, cancelled.Steps[0].TaskID, 10*time.Second)
	require.Equal(t, "REVOKED", rec.Status)
	require.Less(t, time.Since(began), 10*time.Second, "the 30 s call was cut")
	time.Sleep(300 * time.Millisecond) // a next step would have started by now
	require.Len(t, slow.Calls(), 1, "the next step never ran")
	require.Equal(t, "REVOKED", getPipeline(t, s.url, p.ID).Status)
}

// A pipeline's deadline cuts its running step and revokes it.
func TestAPipelinesDeadlineCutsItsRunningStep(t *testing.T) {
	t.Parallel()
	slow := providertest.NewOpenAIFake(providertest.WithDelay(30 * time.Second))
	t.Cleanup(slow.Close)
	s := start(t, "serve", openAIEnv(t, slow, redistest.URL(t)))
	p := startPipeline(t, s.url, `{"deadline_after":1,"steps":[{"kind":"generate_text","input":{"prompt":"slow"}},
	  {"kind":"generate_text","input":{"prompt":"{{steps.0.text}}"}}]}`)
	final := awaitPipeline(t, s.url, p.ID, 15*time.Second)
	require.Equal(t, "REVOKED", final.Status)
	require.Equal(t, "deadline_exceeded", final.Error.Code)
	require.Equal(t, "0", final.Error.Step)
}

// Mistakes in the steps are a 422 naming the step and the field.
func TestAPipelineWithMistakesIsRefusedNamingTheStep(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	s := start(t, "serve", openAIEnv(t, fake, redistest.URL(t)))
	tooMany := make([]string, 17)
	for i := range tooMany {
		tooMany[i] = `{"kind":"generate_text","input":{"prompt":"x"}}`
	}
	cases := []struct{ body, field, says string }{
		{`{"steps":[{"kind":"generate_text","input":{"prompt":"a"}},{"kind":"paint","input":{}}]}`, "steps[1].kind", "one of"},
		{`{"steps":[{"name":"a","kind":"generate_text","input":{"prompt":"{{steps.b.text}}"}},{"name":"b","kind":"generate_text","input":{"prompt":"x"}}]}`, "steps[0].input.prompt", "does not run before"},
		{`{"steps":[{"kind":"generate_text","input":{"prompt":"{{steps.nope.text}}"}}]}`, "steps[0].input.prompt", "no step"},
		{`{"steps":[{"name":"v","kind":"embed","input":{"input":["a"]}},{"kind":"generate_text","input":{"prompt":"{{steps.v.text}}"}}]}`, "steps[1].input.prompt", "gives no"},
		{`{"steps":[{"name":"s","kind":"text_to_speech","input":{"text":"hi"}},{"kind":"generate_text","input":{"prompt":"{{steps.s.audio}}"}},{"kind":"generate_text","for_each":"{{steps.s.audio}}","input":{"prompt":"{{item}}"}}]}`, "steps[2].for_each", "needs a list"},
		{`{"steps":[{"kind":"generate_text","input":{"prompt":"{{item}}"}}]}`, "steps[0].input.prompt", "for_each"},
		{`{"steps":[{"kind":"text_to_speech","input":{"text":"hi","speed":9}}]}`, "steps[0].input.speed", ""},
		{`{"steps":[{"kind":"speech_to_text","input":{"file_id":"file-nope"}}]}`, "steps[0].input.file_id", "no such file"},
		{`{"steps":[` + strings.Join(tooMany, ",") + `]}`, "body.steps", ""},
	}
	for _, c := range cases {
		status, raw := submitPipeline(t, s.url, c.body)
		require.Equal(t, http.StatusUnprocessableEntity, status, "%s: %s", c.body, raw)
		require.Contains(t, string(raw), c.field, "%s", c.body)
		require.Contains(t, string(raw), c.says, "%s", c.body)
	}
	require.Empty(t, fake.Calls())
}

// A push lost with the worker that held it (taken from the list, never
// acted on) is found by the recheck: the pipeline still finishes.
func TestAPipelineWhosePushWasLostStillFinishes(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	url := redistest.URL(t)
	env := openAIEnv(t, fake, url)
	env["PIPELINE_RECHECK_INTERVAL"] = "1s"
	api := start(t, "api", env)
	p := startPipeline(t, api.url, `{"steps":[{"kind":"generate_text","input":{"prompt":"a"}},{"kind":"generate_text","input":{"prompt":"{{steps.0.text}}"}}]}`)

	opts, err := redis.ParseURL(url)
	require.NoError(t, err)
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	taken, err := rdb.LPop(context.Background(), store.PipelineOutboxKey).Result()
	require.NoError(t, err)
	require.Equal(t, p.ID, taken, "the push the dead worker held")

	start(t, "worker", env)
	final := awaitPipeline(t, api.url, p.ID, 20*time.Second)
	require.Equal(t, "SUCCESS", final.Status, "%+v", final.Error)
}

// Workers SIGKILLed while pipelines run (some mid-step, some between two
// steps) leave pipelines that finish on another worker, each step's task
// created once.
func TestPipelinesSurviveTheirWorkerBeingKilled(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake(providertest.WithDelay(40 * time.Millisecond))
	t.Cleanup(fake.Close)
	env := openAIEnv(t, fake, redistest.URL(t))
	env["PIPELINE_RECHECK_INTERVAL"] = "1s"
	env["RECONCILE_INTERVAL"] = "5s" // a step recorded but not queued when the worker died is queued again by it
	env["HTTP_ADDR"] = freeAddr(t)
	api, _ := child(t, "api", env)
	base := "http://" + env["HTTP_ADDR"]
	waitHealthy(t, base, nil)
	_ = api
	victim, logs := child(t, "worker", env)
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "worker started") }, 15*time.Second, 10*time.Millisecond)

	var ids []string
	for i := range 20 {
		p := startPipeline(t, base, fmt.Sprintf(`{"steps":[{"kind":"generate_text","input":{"prompt":"p%d"}},
		  {"kind":"generate_text","input":{"prompt":"{{steps.0.text}}"}},{"kind":"generate_text","input":{"prompt":"{{steps.1.text}}"}}]}`, i))
		ids = append(ids, p.ID)
	}
	// Kill the worker once some pipelines are past their first step and
	// none has ended.
	require.Eventually(t, func() bool {
		moved := 0
		for _, id := range ids {
			if getPipeline(t, base, id).Steps[1].Status != "PENDING" {
				moved++
			}
		}
		return moved > 0
	}, 15*time.Second, time.Millisecond)
	require.NoError(t, victim.Process.Signal(syscall.SIGKILL))
	_, _ = victim.Process.Wait()
	stages := map[string]int{}
	for _, id := range ids {
		p := getPipeline(t, base, id)
		for k, st := range p.Steps {
			if st.Status == "STARTED" {
				stages[fmt.Sprintf("killed during step %d", k)]++
			}
		}
		if p.Status == "SUCCESS" {
			stages["ended before the kill"]++
		}
	}
	t.Logf("at the kill: %v", stages)

	rescuer := start(t, "worker", env)
	var wg sync.WaitGroup
	finals := make([]pipelineRecord, len(ids))
	for i, id := range ids {
		wg.Go(func() { finals[i] = awaitPipeline(t, base, id, 150*time.Second) })
	}
	wg.Wait()
	for i, p := range finals {
		require.Equal(t, "SUCCESS", p.Status, "%+v", p.Error)
		var last struct {
			Text string `json:"text"`
		}
		require.NoError(t, json.Unmarshal(p.Result, &last))
		require.Equal(t, fmt.Sprintf("echo: echo: echo: p%d", i), last.Text)
		for _, st := range p.Steps {
			rec := get(t, base, st.TaskID)
			require.Equal(t, "SUCCESS", rec.Status)
		}
	}
	t.Logf("steps recorded but not queued when the worker died, queued again by the reconciler: %d",
		strings.Count(rescuer.logs.String(), "queued again a task recorded but never queued"))
	// Every step's task was created once: the tasks listed are the steps'.
	var page struct {
		Tasks []struct {
			TaskID string `json:"task_id"`
		} `json:"tasks"`
	}
	getJSON(t, base+"/background/tasks?limit=100", &page)
	require.Len(t, page.Tasks, 60, "three tasks per pipeline, no more")
}

// Retrying a failed task runs it again as a new task linked both ways;
// concurrent retries make one new task, an Idempotency-Key gives back the
// first answer, and a task that succeeded is not retried.
func TestRetryRunsAFailedTaskAgainOnce(t *testing.T) {
	t.Parallel()
	fake := refusesCall(1)
	t.Cleanup(fake.Close)
	env := openAIEnv(t, fake, redistest.URL(t))
	env["WEBHOOK_SECRET"] = testWebhookSecret
	hooks := make(chan string, 10)
	receiver := httptestServer(t, func(body []byte) { hooks <- string(body) })
	env["FETCH_ALLOW_PRIVATE"] = "true"
	s := start(t, "serve", env)

	rec, _ := submit(t, s.url, fmt.Sprintf(`{"prompt":"again","max_tokens":7,"metadata":{"job":"j1"},"priority":"low","webhook":%q}`, receiver+"/hook?token=s3cret"))
	failed, _ := await(t, s.url, rec.TaskID, 10*time.Second)
	require.Equal(t, "FAILURE", failed.Status)
	<-hooks

	var wg sync.WaitGroup
	ids := make([]string, 8)
	for i := range ids {
		wg.Go(func() {
			res, raw := call(t, "POST", s.url+"/background/tasks/"+rec.TaskID+"/retry", "", "")
			require.Equal(t, http.StatusAccepted, res.StatusCode, "%s", raw)
			var r record
			require.NoError(t, json.Unmarshal(raw, &r))
			ids[i] = r.TaskID
		})
	}
	wg.Wait()
	slices.Sort(ids)
	require.Equal(t, ids[0], ids[len(ids)-1], "eight concurrent retries, one new task: %v", ids)
	retried, _ := await(t, s.url, ids[0], 10*time.Second)
	require.Equal(t, "SUCCESS", retried.Status)
	require.Equal(t, "echo: again", retried.Result.Text)
	require.Len(t, fake.Calls(), 2, "one new run")
	require.Equal(t, 7, *fake.Calls()[1].MaxTokens, "the same input")

	var links struct {
		RetryOf   string            `json:"retry_of"`
		RetriedBy string            `json:"retried_by"`
		Priority  string            `json:"priority"`
		Metadata  map[string]string `json:"metadata"`
		Webhook   *struct {
			URL string `json:"url"`
		} `json:"webhook"`
	}
	getJSON(t, s.url+"/background/tasks/"+ids[0], &links)
	require.Equal(t, rec.TaskID, links.RetryOf)
	require.Equal(t, "low", links.Priority)
	require.Equal(t, "j1", links.Metadata["job"])
	require.NotNil(t, links.Webhook, "the webhook carries over")
	hook := <-hooks
	require.Contains(t, hook, ids[0], "the new task's end is posted to the same webhook")
	getJSON(t, s.url+"/background/tasks/"+rec.TaskID, &links)
	require.Equal(t, ids[0], links.RetriedBy)

	// The same Idempotency-Key: the first answer, marked replayed.
	res, raw := call(t, "POST", s.url+"/background/tasks/"+rec.TaskID+"/retry", "", "", "Idempotency-Key", "k1")
	require.Equal(t, http.StatusAccepted, res.StatusCode, "%s", raw)
	require.Equal(t, "true", res.Header.Get("Idempotent-Replayed"))
	require.Contains(t, string(raw), ids[0])

	res, raw = call(t, "POST", s.url+"/background/tasks/"+ids[0]+"/retry", "", "")
	require.Equal(t, http.StatusConflict, res.StatusCode, "a SUCCESS is not retried: %s", raw)
	res, _ = call(t, "POST", s.url+"/background/tasks/00000000-0000-4000-8000-000000000000/retry", "", "")
	require.Equal(t, http.StatusNotFound, res.StatusCode)
	require.NotContains(t, s.logs.String(), "s3cret")
}

// httptestServer receives webhook posts, handing each body to got.
func httptestServer(t *testing.T, got func([]byte)) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got(b)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// A pipeline, its steps' tasks and a task's retry are their key's only;
// a for_each step wider than the key's limit of unfinished tasks waits for
// room rather than failing.
func TestPipelinesAndRetriesBelongToTheirKey(t *testing.T) {
	t.Parallel()
	fake := refusesCall(1)
	t.Cleanup(fake.Close)
	url := redistest.URL(t)
	owner := createKey(t, url, "--name", "owner", "--max-unfinished", "5")
	other := createKey(t, url, "--name", "other")
	s := start(t, "serve", openAIEnv(t, fake, url))

	res, raw := call(t, "POST", s.url+"/background/generate_text", owner, `{"prompt":"fails once"}`)
	require.Equal(t, http.StatusAccepted, res.StatusCode, "%s", raw)
	var failed record
	require.NoError(t, json.Unmarshal(raw, &failed))
	final, _ := await(t, s.url, failed.TaskID, 10*time.Second, owner)
	require.Equal(t, "FAILURE", final.Status)
	res, _ = call(t, "POST", s.url+"/background/tasks/"+failed.TaskID+"/retry", other, "")
	require.Equal(t, http.StatusNotFound, res.StatusCode, "another key's task is unknown to it")

	items := make([]string, 20)
	for i := range items {
		items[i] = fmt.Sprint("item ", i)
	}
	res, raw = call(t, "POST", s.url+"/background/pipelines", owner,
		fmt.Sprintf(`{"steps":[{"name":"each","kind":"generate_text","for_each":%s,"input":{"prompt":"{{item}}"}}]}`, mustMarshal(t, items)))
	require.Equal(t, http.StatusAccepted, res.StatusCode, "%s", raw)
	var p pipelineRecord
	require.NoError(t, json.Unmarshal(raw, &p))
	for _, path := range []string{"", "/events"} {
		res, _ = call(t, "GET", s.url+"/background/pipelines/"+p.ID+path, other, "")
		require.Equal(t, http.StatusNotFound, res.StatusCode, path)
	}
	res, _ = call(t, "POST", s.url+"/background/pipelines/"+p.ID+"/cancel", other, "")
	require.Equal(t, http.StatusNotFound, res.StatusCode)
	res, raw = call(t, "GET", s.url+"/background/pipelines", other, "")
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.JSONEq(t, `{"pipelines":[],"has_more":false}`, string(raw))

	deadline := time.Now().Add(30 * time.Second)
	for {
		res, raw = call(t, "GET", s.url+"/background/pipelines/"+p.ID, owner, "")
		require.Equal(t, http.StatusOK, res.StatusCode)
		require.NoError(t, json.Unmarshal(raw, &p))
		if p.Status == "SUCCESS" || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.Equal(t, "SUCCESS", p.Status, "20 items through a limit of 5 unfinished: %+v", p.Error)
	var results []struct {
		Text string `json:"text"`
	}
	require.NoError(t, json.Unmarshal(p.Result, &results))
	require.Len(t, results, 20)
	require.Equal(t, "echo: item 19", results[19].Text)
	res, _ = call(t, "GET", s.url+"/background/tasks/"+p.Steps[0].TaskIDs[0], other, "")
	require.Equal(t, http.StatusNotFound, res.StatusCode, "a step's task is its key's")
	res, _ = call(t, "GET", s.url+"/background/tasks/"+p.Steps[0].TaskIDs[0], owner, "")
	require.Equal(t, http.StatusOK, res.StatusCode)
}

// Pipelines run on the one-command default too: no Redis server.
func TestAPipelineRunsOnTheEmbeddedDefault(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	env := openAIEnv(t, fake, "")
	delete(env, "REDIS_URL")
	s := start(t, "serve", env)
	p := startPipeline(t, s.url, `{"steps":[{"kind":"generate_text","input":{"prompt":"one\n\ntwo"}},
	  {"kind":"generate_text","for_each":"{{steps.0.paragraphs}}","input":{"prompt":"{{item}}!"}}]}`)
	final := awaitPipeline(t, s.url, p.ID, 20*time.Second)
	require.Equal(t, "SUCCESS", final.Status, "%+v", final.Error)
	require.JSONEq(t, `["echo: echo: one!","echo: two!"]`, texts(t, final.Result))
}

// texts is the text of each result in a list of results, as JSON.
func texts(t *testing.T, results json.RawMessage) string {
	var rs []struct {
		Text string `json:"text"`
	}
	require.NoError(t, json.Unmarshal(results, &rs))
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Text
	}
	return string(mustMarshal(t, out))
}

// An Idempotency-Key makes a retried pipeline submit safe.
func TestAPipelineSubmitHonoursIdempotencyKey(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	s := start(t, "serve", openAIEnv(t, fake, redistest.URL(t)))
	body := `{"steps":[{"kind":"generate_text","input":{"prompt":"once"}}]}`
	res, first := call(t, "POST", s.url+"/background/pipelines", "", body, "Idempotency-Key", "p-1")
	require.Equal(t, http.StatusAccepted, res.StatusCode, "%s", first)
	res, again := call(t, "POST", s.url+"/background/pipelines", "", body, "Idempotency-Key", "p-1")
	require.Equal(t, http.StatusAccepted, res.StatusCode, "%s", again)
	require.Equal(t, "true", res.Header.Get("Idempotent-Replayed"))
	var a, b pipelineRecord
	require.NoError(t, json.Unmarshal(first, &a))
	require.NoError(t, json.Unmarshal(again, &b))
	require.Equal(t, a.ID, b.ID)
	res, _ = call(t, "POST", s.url+"/background/pipelines", "", `{"steps":[{"kind":"generate_text","input":{"prompt":"other"}}]}`, "Idempotency-Key", "p-1")
	require.Equal(t, http.StatusUnprocessableEntity, res.StatusCode)
	require.Equal(t, "SUCCESS", awaitPipeline(t, s.url, a.ID, 10*time.Second).Status)
	require.Len(t, fake.Calls(), 1)
}

// A pipeline's end is posted to its webhook, signed, with the final record;
// the webhook's token shows nowhere.
func TestAPipelinesEndIsPostedToItsWebhook(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	wh, err := standardwebhooks.NewWebhook(testWebhookSecret)
	require.NoError(t, err)
	bodies := make(chan []byte, 4)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if wh.Verify(body, r.Header) != nil || r.URL.Query().Get("token") != "pipe-secret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		bodies <- body
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rcv.Close)
	env := openAIEnv(t, fake, redistest.URL(t))
	env["WEBHOOK_SECRET"] = testWebhookSecret
	env["FETCH_ALLOW_PRIVATE"] = "true"
	s := start(t, "serve", env)

	p := startPipeline(t, s.url, `{"webhook":"`+rcv.URL+`/hook?token=pipe-secret","steps":[{"kind":"generate_text","input":{"prompt":"a"}},
	  {"kind":"generate_text","input":{"prompt":"{{steps.0.text}}"}}]}`)
	var posted pipelineRecord
	select {
	case body := <-bodies:
		require.NoError(t, json.Unmarshal(body, &posted))
	case <-time.After(15 * time.Second):
		t.Fatal("no webhook came")
	}
	require.Equal(t, p.ID, posted.ID)
	require.Equal(t, "SUCCESS", posted.Status)
	require.Contains(t, string(posted.Result), "echo: echo: a")
	raw, _ := json.Marshal(getPipeline(t, s.url, p.ID))
	require.NotContains(t, string(raw), "pipe-secret")
	require.NotContains(t, s.logs.String(), "pipe-secret")
	select {
	case <-bodies:
		t.Fatal("one end, one post: the steps' tasks have no webhook of their own")
	case <-time.After(300 * time.Millisecond):
	}
}
