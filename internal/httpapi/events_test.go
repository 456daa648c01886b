package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/service"
	"github.com/siganteng/siganteng/internal/task"
)

func TestListTasksPassesFiltersAndAnswersAPage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.tasks.records["a"] = &task.Record{ID: "a", Type: task.TypeEmbed, Status: task.StatusSuccess}
	b.tasks.records["b"] = &task.Record{ID: "b", Type: task.TypeEmbed, Status: task.StatusPending}

	res, raw := b.do(t, http.MethodGet, "/background/tasks?status=SUCCESS&type=embed&limit=5&cursor=abc", "")
	require.Equal(t, http.StatusOK, res.StatusCode, "%s", raw)
	require.Equal(t, service.ListQuery{Status: task.StatusSuccess, Type: task.TypeEmbed, Limit: 5, Cursor: "abc"}, b.tasks.gotList)
	var list struct {
		Tasks      []task.Record `json:"tasks"`
		NextCursor *string       `json:"next_cursor"`
	}
	require.NoError(t, json.Unmarshal(raw, &list))
	require.Len(t, list.Tasks, 1)
	require.Equal(t, "a", list.Tasks[0].ID)
	require.Nil(t, list.NextCursor, "absent on the last page")

	res, raw = b.do(t, http.MethodGet, "/background/tasks", "")
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, 20, b.tasks.gotList.Limit, "the default page size")
	require.Contains(t, string(raw), `"tasks":[`)

	for _, q := range []string{"status=DONE", "type=paint", "limit=0", "limit=101"} {
		res, raw := b.do(t, http.MethodGet, "/background/tasks?"+q, "")
		requireProblem(t, res, raw, http.StatusUnprocessableEntity)
	}
	res, raw = b.do(t, http.MethodGet, "/background/tasks?cursor=bad", "")
	p := requireProblem(t, res, raw, http.StatusUnprocessableEntity)
	require.Contains(t, string(raw), "cursor", "%+v", p)
}

func TestTaskEventsSpeakServerSentEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.tasks.records["t1"] = &task.Record{ID: "t1", Status: task.StatusStarted}
	b.tasks.idleFirst = true
	b.tasks.events = []service.Event{
		{ID: "1-0", Kind: "delta", Data: json.RawMessage(`{"task_id":"t1","attempt":1,"text":"Hi"}`)},
		{ID: "2-0", Kind: "status", Data: json.RawMessage(`{"task_id":"t1","status":"SUCCESS"}`)},
	}
	req, err := http.NewRequest(http.MethodGet, b.srv.URL+"/background/tasks/t1/events", nil)
	require.NoError(t, err)
	req.Header.Set("Last-Event-ID", "1700000000000-3")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "text/event-stream", res.Header.Get("Content-Type"))
	require.Equal(t, "no", res.Header.Get("X-Accel-Buffering"))
	require.Equal(t, "1700000000000-3", b.tasks.gotAfter)
	require.Equal(t, "retry: 2000\n\n"+
		": keepalive\n\n"+
		"id: 1-0\nevent: delta\ndata: {\"task_id\":\"t1\",\"attempt\":1,\"text\":\"Hi\"}\n\n"+
		"id: 2-0\nevent: status\ndata: {\"task_id\":\"t1\",\"status\":\"SUCCESS\"}\n\n", string(raw))
}

func TestTaskEventsRefuseUnknownTasksAndBadIDs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res, raw := b.do(t, http.MethodGet, "/background/tasks/nope/events", "")
	requireProblem(t, res, raw, http.StatusNotFound)

	b.tasks.records["t1"] = &task.Record{ID: "t1", Status: task.StatusStarted}
	req, err := http.NewRequest(http.MethodGet, b.srv.URL+"/background/tasks/t1/events", nil)
	require.NoError(t, err)
	req.Header.Set("Last-Event-ID", "x\r\nEvil: 1")
	res2, err := http.DefaultClient.Do(req)
	if err == nil { // Go's client may refuse the header itself
		defer res2.Body.Close()
		raw, _ := io.ReadAll(res2.Body)
		requireProblem(t, res2, raw, http.StatusUnprocessableEntity)
	}
	req.Header.Set("Last-Event-ID", "abc")
	res3, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res3.Body.Close()
	raw, _ = io.ReadAll(res3.Body)
	requireProblem(t, res3, raw, http.StatusUnprocessableEntity)
	require.Contains(t, string(raw), "Last-Event-ID")
}
