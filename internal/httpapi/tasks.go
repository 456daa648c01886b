package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/siganteng/siganteng/internal/service"

	"github.com/siganteng/siganteng/internal/task"
)

// SubmitHeaders are the headers every submit takes. The type is exported
// only because huma reads the fields of embedded structs of exported types.
type SubmitHeaders struct {
	Prefer      string `header:"Prefer" doc:"wait=N (N up to 60): if the task ends within N seconds, the answer is 200 with the final record instead of 202."`
	CancelAfter int    `header:"Cancel-After" minimum:"0" maximum:"604800" doc:"Seconds: a task not started by then ends REVOKED. The body's cancel_after wins."`
	// IdempotencyKey makes a retried submit safe.
	IdempotencyKey string `header:"Idempotency-Key" maxLength:"255" doc:"Any unique string, kept 24 hours: the same key with the same body gives back the first request's task (Idempotent-Replayed: true) instead of a second one; with another body it is a 422."`
}

// options applies Cancel-After where the body has no cancel_after.
func (s SubmitHeaders) options(d *task.Options) {
	if d.CancelAfter == nil && s.CancelAfter > 0 {
		n := s.CancelAfter
		d.CancelAfter = &n
	}
}

// wait reads wait=N from Prefer; an absent or unreadable preference is 0,
// since preferences are hints.
func (p SubmitHeaders) wait() time.Duration {
	for _, pref := range strings.Split(p.Prefer, ",") {
		name, value, _ := strings.Cut(strings.TrimSpace(strings.SplitN(pref, ";", 2)[0]), "=")
		if strings.EqualFold(strings.TrimSpace(name), "wait") {
			if n, err := strconv.Atoi(strings.Trim(strings.TrimSpace(value), `"`)); err == nil && n > 0 {
				return min(time.Duration(n)*time.Second, service.MaxWait)
			}
		}
	}
	return 0
}

type submitOutput struct {
	Status            int
	Location          string `header:"Location" doc:"The task's status URL."`
	PreferenceApplied string `header:"Preference-Applied" doc:"wait=N when the request's Prefer: wait was honoured."`
	Replayed          string `header:"Idempotent-Replayed" doc:"true when the task is the one an earlier request with the same Idempotency-Key made."`
	Body              *task.Record
}

// submit runs one submit under its Idempotency-Key and answers it: 202 with
// the record, or, when the client prefers to wait and the task ends in time,
// 200 with the final record.
func (h *handlers) submit(ctx context.Context, hdr SubmitHeaders, typ task.Type, input any, submit func() (*task.Record, error)) (*submitOutput, error) {
	rec, replayed, err := h.deps.Tasks.Idempotent(ctx, hdr.IdempotencyKey, typ, input, submit)
	if err != nil {
		return nil, h.problem(ctx, err)
	}
	out := &submitOutput{Status: http.StatusAccepted, Location: "/background/tasks/" + rec.ID, Body: rec}
	if info := infoOf(ctx); info != nil {
		info.taskID = rec.ID
	}
	if replayed {
		out.Replayed = "true"
	} else {
		h.deps.Metrics.Submitted(string(typ))
	}
	prefer := hdr
	if d := prefer.wait(); d > 0 {
		final, err := h.deps.Tasks.Wait(ctx, rec.ID, d)
		if err == nil && final != nil {
			out.Body = final
			out.PreferenceApplied = fmt.Sprintf("wait=%d", int(d.Seconds()))
			if final.Status.Terminal() {
				out.Status = http.StatusOK
			}
		}
	}
	return out, nil
}

type getTaskInput struct {
	TaskID string `path:"task_id" maxLength:"64" doc:"The task_id from the submit answer."`
}

type statusInput struct {
	TaskID string `path:"task_id" maxLength:"64" doc:"The task_id from the submit answer."`
	Result string `query:"result" enum:"inline,link" default:"inline" doc:"link leaves a result larger than LARGE_RESULT_BYTES out of the answer and names it in result_url (read this record without link to have it inlined)."`
}

type recordOutput struct {
	Body *task.Record
}

func (h *handlers) getTask(ctx context.Context, in *statusInput) (*recordOutput, error) {
	get := h.deps.Tasks.Get
	if in.Result == "link" {
		get = h.deps.Tasks.GetLinked
	}
	rec, err := get(ctx, in.TaskID)
	if err != nil {
		return nil, h.problem(ctx, err)
	}
	return &recordOutput{Body: rec}, nil
}

func (h *handlers) cancelTask(ctx context.Context, in *getTaskInput) (*recordOutput, error) {
	rec, err := h.deps.Tasks.Cancel(ctx, in.TaskID)
	if err != nil {
		return nil, h.problem(ctx, err)
	}
	return &recordOutput{Body: rec}, nil
}
