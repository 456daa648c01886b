package openaiapi

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/siganteng/siganteng/internal/service"
	"github.com/siganteng/siganteng/internal/task"
)

// responseEvents turns a response task's stored events into the Responses
// API's stream. Sequence numbers are a function of the stored events and
// the final record alone, so every read of the stream, live or replayed,
// numbers each event the same, and a client resumes with starting_after.
type responseEvents struct {
	out     *sse
	after   int // events numbered up to after are not sent again
	next    int
	rec     *task.Record
	kept    *kept
	text    string
	opened  bool // the message item has been announced
	sendErr error
}

func (e *responseEvents) emit(typ string, fields map[string]any) error {
	n := e.next
	e.next++
	if n <= e.after || e.sendErr != nil {
		return e.sendErr
	}
	fields["type"], fields["sequence_number"] = typ, n
	e.sendErr = e.out.data(typ, fields)
	return e.sendErr
}

// event is one event of the stream before it is numbered.
type event struct {
	typ    string
	fields map[string]any
}

// emitAll emits events in order, stopping at the first that fails.
func (e *responseEvents) emitAll(events ...event) error {
	for _, ev := range events {
		if err := e.emit(ev.typ, ev.fields); err != nil {
			return err
		}
	}
	return nil
}

// snapshot is the response as it stands before its end, for the events
// that open the stream.
func snapshot(rec *task.Record, k *kept, status string) response {
	r := responseOf(rec, k)
	r.Status, r.Output, r.Usage, r.Error, r.IncompleteDetails, r.CompletedAt = status, []outputItem{}, nil, nil, nil, nil
	return r
}

func (e *responseEvents) begin() error {
	if err := e.emit("response.created", map[string]any{"response": snapshot(e.rec, e.kept, "queued")}); err != nil {
		return err
	}
	return e.emit("response.in_progress", map[string]any{"response": snapshot(e.rec, e.kept, "in_progress")})
}

// openMessage announces the message item and its text part.
func (e *responseEvents) openMessage() error {
	if e.opened {
		return nil
	}
	e.opened = true
	id := messageID(e.rec.ID)
	if err := e.emit("response.output_item.added", map[string]any{"output_index": 0, "item": messageItem(e.rec.ID, "", "in_progress")}); err != nil {
		return err
	}
	return e.emit("response.content_part.added", map[string]any{"item_id": id, "output_index": 0, "content_index": 0,
		"part": textPart{Type: "output_text", Text: "", Annotations: []any{}, Logprobs: []any{}}})
}

func (e *responseEvents) delta(piece string) error {
	if piece == "" {
		return nil
	}
	if err := e.openMessage(); err != nil {
		return err
	}
	e.text += piece
	return e.emit("response.output_text.delta", map[string]any{"item_id": messageID(e.rec.ID), "output_index": 0,
		"content_index": 0, "delta": piece, "logprobs": []any{}})
}

// finish sends the output's closing events and the response's last one.
func (e *responseEvents) finish(final *task.Record) error {
	r := responseOf(final, e.kept)
	var result task.TextResult
	_ = json.Unmarshal(final.Result, &result)
	index := 0
	if final.Status == task.StatusSuccess && !e.opened && (result.Text != "" || len(result.ToolCalls) == 0) {
		if err := e.openMessage(); err != nil {
			return err
		}
		if err := e.delta(result.Text); err != nil {
			return err
		}
	}
	if e.opened {
		text := e.text
		if final.Status == task.StatusSuccess {
			text = result.Text // a retried attempt may have started over
		}
		id := messageID(final.ID)
		part := textPart{Type: "output_text", Text: text, Annotations: []any{}, Logprobs: []any{}}
		if err := e.emitAll(
			event{"response.output_text.done", map[string]any{"item_id": id, "output_index": 0, "content_index": 0, "text": text, "logprobs": []any{}}},
			event{"response.content_part.done", map[string]any{"item_id": id, "output_index": 0, "content_index": 0, "part": part}},
			event{"response.output_item.done", map[string]any{"output_index": 0, "item": messageItem(final.ID, text, "completed")}},
		); err != nil {
			return err
		}
		index = 1
	}
	for i, c := range result.ToolCalls {
		at := index + i
		id := callItemID(final.ID, i)
		pending := callItem(final.ID, i, c, "in_progress")
		empty := ""
		pending.Arguments = &empty
		if err := e.emitAll(
			event{"response.output_item.added", map[string]any{"output_index": at, "item": pending}},
			event{"response.function_call_arguments.delta", map[string]any{"item_id": id, "output_index": at, "delta": c.Function.Arguments}},
			event{"response.function_call_arguments.done", map[string]any{"item_id": id, "output_index": at, "name": c.Function.Name, "arguments": c.Function.Arguments}},
			event{"response.output_item.done", map[string]any{"output_index": at, "item": callItem(final.ID, i, c, "completed")}},
		); err != nil {
			return err
		}
	}
	last := "response.completed"
	switch r.Status {
	case "incomplete":
		last = "response.incomplete"
	case "failed", "cancelled":
		// The Responses API has no event for a cancelled response: it ends
		// as failed does, its response saying cancelled.
		last = "response.failed"
	}
	return e.emit(last, map[string]any{"response": r})
}

// follow reads the task's events to its end, handing deltas to delta, and
// returns the final record.
func (a *api) follow(ctx context.Context, id string, delta func(string) error, idle func() error) (*task.Record, error) {
	var final *task.Record
	err := a.deps.Tasks.FollowEvents(ctx, id, "", a.deps.Keepalive, func(ev service.Event) error {
		switch ev.Kind {
		case "delta":
			var d struct {
				Text string `json:"text"`
			}
			_ = json.Unmarshal(ev.Data, &d)
			return delta(d.Text)
		case "status":
			var rec task.Record
			if json.Unmarshal(ev.Data, &rec) == nil && rec.Status.Terminal() {
				final = &rec
			}
		}
		return nil
	}, idle)
	if err == nil && final == nil {
		final, err = a.deps.Tasks.Get(ctx, id)
	}
	return final, err
}

// streamResponse sends the response's events numbered after after. A
// foreground response whose client goes away is cancelled, as OpenAI
// does; a background one runs on. The caller holds the key's waiting
// connection (HoldStream) around it, as around awaitResponse.
func (a *api) streamResponse(w http.ResponseWriter, r *http.Request, rec *task.Record, k *kept, after int, cancelOnLeave bool) {
	ctx := r.Context()
	e := &responseEvents{out: newSSE(w), after: after, rec: rec, kept: k}
	err := e.begin()
	var final *task.Record
	if err == nil {
		final, err = a.follow(ctx, rec.ID, e.delta, func() error { return e.out.raw(": keepalive") })
	}
	if err == nil {
		err = e.finish(final)
	}
	if err == nil {
		return
	}
	if ctx.Err() != nil || e.sendErr != nil {
		if cancelOnLeave {
			_, _ = a.deps.Tasks.Cancel(context.WithoutCancel(ctx), rec.ID)
		}
		return
	}
	_, message, param, code, _ := a.statusOf(ctx, err)
	var p any
	if param != "" {
		p = param
	}
	_ = e.emit("error", map[string]any{"code": code, "message": message, "param": p})
}

// awaitResponse answers a foreground response once its task has ended.
func (a *api) awaitResponse(w http.ResponseWriter, r *http.Request, rec *task.Record, k *kept) {
	ctx := r.Context()
	// The answer waits for the task, however long it takes.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	final, err := a.follow(ctx, rec.ID, func(string) error { return nil }, func() error { return nil })
	if err != nil {
		if ctx.Err() != nil {
			_, _ = a.deps.Tasks.Cancel(context.WithoutCancel(ctx), rec.ID)
			return
		}
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, responseOf(final, k))
}
