package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"github.com/siganteng/siganteng/internal/service"
	"github.com/siganteng/siganteng/internal/task"
)

type listTasksInput struct {
	Status string `query:"status" enum:"PENDING,STARTED,RETRY,SUCCESS,FAILURE,REVOKED" doc:"Only tasks with this status."`
	Type   string `query:"type" enum:"generate_text,describe_image,embed,text_to_speech,speech_to_text" doc:"Only tasks of this type."`
	Limit  int    `query:"limit" minimum:"1" maximum:"100" default:"20" doc:"Tasks per page."`
	Cursor string `query:"cursor" maxLength:"200" doc:"next_cursor from the previous page."`
	// metaKey and metaValue are a metadata[KEY]=VALUE parameter, which
	// huma cannot declare: Resolve reads it from the query.
	metaKey, metaValue string
}

// Resolve reads the one metadata[KEY]=VALUE filter a listing may have.
func (in *listTasksInput) Resolve(ctx huma.Context) []error {
	u := ctx.URL()
	for name, values := range u.Query() {
		key, ok := strings.CutPrefix(name, "metadata[")
		if !ok {
			continue
		}
		key, ok = strings.CutSuffix(key, "]")
		switch {
		case !ok || key == "" || len(key) > task.MaxMetadataKey || len(values) != 1 || len(values[0]) > task.MaxMetadataValue:
			return []error{&huma.ErrorDetail{Location: "query." + name, Message: "want one metadata[KEY]=VALUE, KEY up to 64 characters, VALUE up to 512", Value: values}}
		case in.metaKey != "":
			return []error{&huma.ErrorDetail{Location: "query." + name, Message: "a listing takes one metadata filter"}}
		}
		in.metaKey, in.metaValue = key, values[0]
	}
	return nil
}

// TaskList is one page of tasks.
type TaskList struct {
	Tasks []*task.Record `json:"tasks" doc:"Newest first."`
	// NextCursor is absent on the last page.
	NextCursor string `json:"next_cursor,omitempty" doc:"Pass as cursor for the next page; absent on the last. A filtered page may hold fewer than limit tasks and still have a next one."`
}

type listTasksOutput struct {
	Body TaskList
}

func (h *handlers) listTasks(ctx context.Context, in *listTasksInput) (*listTasksOutput, error) {
	page, err := h.deps.Tasks.List(ctx, service.ListQuery{
		Status: task.Status(in.Status), Type: task.Type(in.Type), Limit: in.Limit, Cursor: in.Cursor,
		MetaKey: in.metaKey, MetaValue: in.metaValue,
	})
	if err != nil {
		return nil, h.problem(ctx, err)
	}
	if page.Tasks == nil {
		page.Tasks = []*task.Record{}
	}
	return &listTasksOutput{Body: TaskList{Tasks: page.Tasks, NextCursor: page.NextCursor}}, nil
}

type taskEventsInput struct {
	TaskID      string `path:"task_id" maxLength:"64" doc:"The task_id from the submit answer."`
	LastEventID string `header:"Last-Event-ID" maxLength:"64" doc:"The id of the last event received: the stream resumes after it. Browsers' EventSource sends it when reconnecting."`
}

// keepaliveEvery is how often an idle event stream gets a comment line,
// well under the 60 s that proxies such as nginx wait by default.
const keepaliveEvery = 15 * time.Second

func (h *handlers) taskEvents(ctx context.Context, in *taskEventsInput) (*huma.StreamResponse, error) {
	// Unknown ids are a 404 before the stream starts.
	if _, err := h.deps.Tasks.Get(ctx, in.TaskID); err != nil {
		return nil, h.problem(ctx, err)
	}
	return h.eventStream(ctx, in.LastEventID, "task_id", in.TaskID, h.deps.Tasks.FollowEvents)
}

// follower sends a stream's events; see service.FollowEvents.
type follower func(ctx context.Context, id, after string, keepalive time.Duration, send func(service.Event) error, idle func() error) error

// eventStream answers with the events follow sends of id, as server-sent
// events, after the event lastEventID.
func (h *handlers) eventStream(ctx context.Context, lastEventID, idName, id string, follow follower) (*huma.StreamResponse, error) {
	if lastEventID != "" && lastEventID != "0" && !task.ValidEventID(lastEventID) {
		return nil, h.problem(ctx, task.Invalid("Last-Event-ID", "Last-Event-ID is not an event id this API sent"))
	}
	keepalive := h.deps.EventKeepalive
	if keepalive <= 0 {
		keepalive = keepaliveEvery
	}
	// The key's bound on open streams is a 429 before the stream starts.
	release, err := h.deps.Tasks.HoldStream(ctx)
	if err != nil {
		return nil, h.problem(ctx, err)
	}
	return &huma.StreamResponse{Body: func(hctx huma.Context) {
		defer release()
		r, w := humago.Unwrap(hctx)
		rc := http.NewResponseController(w)
		// The server's write timeout is sized for ordinary answers; a stream
		// lasts as long as its task.
		_ = rc.SetWriteDeadline(time.Time{})
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Accel-Buffering", "no") // nginx: pass events on as they come
		w.WriteHeader(http.StatusOK)
		write := func(s string) error {
			if _, err := fmt.Fprint(w, s); err != nil {
				return err
			}
			return rc.Flush()
		}
		if write("retry: 2000\n\n") != nil {
			return
		}
		send := func(e service.Event) error {
			eid := ""
			if e.ID != "" {
				eid = "id: " + e.ID + "\n"
			}
			return write(eid + "event: " + e.Kind + "\ndata: " + string(e.Data) + "\n\n")
		}
		idle := func() error { return write(": keepalive\n\n") }
		err := follow(r.Context(), id, lastEventID, keepalive, send, idle)
		if err != nil && !errors.Is(err, context.Canceled) {
			h.deps.Log.Warn("event stream ended early", idName, id, "err", err)
			// The client reconnects with Last-Event-ID and misses nothing.
		}
	}}, nil
}
