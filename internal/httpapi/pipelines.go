package httpapi

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/siganteng/siganteng/internal/task"
)

// registerPipelines registers the pipelines' routes and a task's retry.
func registerPipelines(api huma.API, h *handlers, maxBody int64) {
	huma.Register(api, huma.Operation{
		OperationID:   "submit-pipeline",
		Method:        http.MethodPost,
		Path:          "/background/pipelines",
		Summary:       "Queue a pipeline of steps",
		Description:   pipelineDoc,
		Tags:          []string{"Pipelines"},
		DefaultStatus: http.StatusAccepted,
		MaxBodyBytes:  maxBody,
		Errors:        []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity, http.StatusServiceUnavailable},
	}, h.submitPipeline)

	huma.Register(api, huma.Operation{
		OperationID: "get-pipeline",
		Method:      http.MethodGet,
		Path:        "/background/pipelines/{pipeline_id}",
		Summary:     "Read a pipeline's status, steps and result",
		Description: "Every step with its status and task id(s); on SUCCESS, the last step's result (a list of results for a for_each step). Another key's pipeline is a 404.",
		Tags:        []string{"Pipelines"},
		Errors:      []int{http.StatusNotFound, http.StatusUnprocessableEntity, http.StatusServiceUnavailable},
	}, h.getPipeline)

	huma.Register(api, huma.Operation{
		OperationID: "list-pipelines",
		Method:      http.MethodGet,
		Path:        "/background/pipelines",
		Summary:     "List pipelines",
		Description: "Your pipelines, newest first, without results; pass the last one's pipeline_id as after for the next page. Ended pipelines drop out after RESULT_TTL.",
		Tags:        []string{"Pipelines"},
		Errors:      []int{http.StatusUnprocessableEntity, http.StatusServiceUnavailable},
	}, h.listPipelines)

	huma.Register(api, huma.Operation{
		OperationID: "cancel-pipeline",
		Method:      http.MethodPost,
		Path:        "/background/pipelines/{pipeline_id}/cancel",
		Summary:     "Cancel a pipeline",
		Description: "The running step's tasks are revoked (a running provider call is cut), the steps after it are skipped, and the pipeline ends REVOKED. A pipeline that has ended is left as it is. The answer is the record.",
		Tags:        []string{"Pipelines"},
		Errors:      []int{http.StatusNotFound, http.StatusUnprocessableEntity, http.StatusServiceUnavailable},
	}, h.cancelPipeline)

	huma.Register(api, huma.Operation{
		OperationID: "pipeline-events",
		Method:      http.MethodGet,
		Path:        "/background/pipelines/{pipeline_id}/events",
		Summary:     "Follow a pipeline as server-sent events",
		Description: "`status` events of the pipeline (the last one carries the whole final record) and `step` events as each step starts and ends (data: step, index, status, task_ids). " +
			"Resumable with Last-Event-ID, as a task's stream is. Each step's task has its own stream too.",
		Tags: []string{"Pipelines"},
		Responses: map[string]*huma.Response{
			"200": {
				Description: "The events.",
				Content:     map[string]*huma.MediaType{"text/event-stream": {Schema: &huma.Schema{Type: huma.TypeString}}},
			},
		},
		Errors: []int{http.StatusNotFound, http.StatusUnprocessableEntity, http.StatusServiceUnavailable},
	}, h.pipelineEvents)

	huma.Register(api, huma.Operation{
		OperationID:   "retry-task",
		Method:        http.MethodPost,
		Path:          "/background/tasks/{task_id}/retry",
		Summary:       "Run a failed or revoked task again",
		Description:   retryDoc,
		Tags:          []string{"Background tasks"},
		DefaultStatus: http.StatusAccepted,
		Errors:        []int{http.StatusNotFound, http.StatusConflict, http.StatusUnprocessableEntity, http.StatusServiceUnavailable},
	}, h.retryTask)
}

const pipelineDoc = "Ordered steps, each an ordinary task of an existing kind (visible at /background/tasks/{task_id}, retried, flow-controlled, routed and counted like any), " +
	"run one after the other. A step's `input` is the body its kind's own submit takes; its strings may take earlier steps' outputs by reference: " +
	"`{{steps.NAME.OUTPUT}}`, where OUTPUT is `text` or `paragraphs` (generate_text, describe_image), `text`, `language`, `paragraphs` or `segments` (speech_to_text), " +
	"or `audio` (text_to_speech: an artifact URL, which a speech_to_text step takes as `audio`). A string that is exactly one reference to a list becomes that list; " +
	"a list written into a longer string is joined by blank lines. `for_each` runs a step once per item of a list (given, or a reference), with `{{item}}` and `{{index}}`; " +
	"its outputs are then lists in the items' order. The options (priority, metadata, deadline, run_at, …) apply to every step; webhook receives the pipeline's end. " +
	"A step that fails for good fails the pipeline, naming it, and the steps after it are skipped. Mistakes in the steps (an unknown kind, a reference to a later or missing step " +
	"or to an output that step does not give, too many steps) are a 422 naming the step and field."

const retryDoc = "The task's work runs again as a new task, with the same input, model, priority, metadata and webhook: the answer is the new record (retry_of names the old), " +
	"and the old record's retried_by names the new. A new task, not a new attempt, because a finished record is never changed back: it stays the story of what happened. " +
	"Retrying a task again (or concurrently) gives the same new task, with Idempotent-Replayed: true. 409 for a task that has not failed or been revoked, " +
	"or whose input is gone (an uploaded file or image is deleted when its task ends)."

type submitPipelineInput struct {
	IdempotencyKey string `header:"Idempotency-Key" maxLength:"255" doc:"Any unique string, kept 24 hours: the same key with the same body gives back the first request's pipeline (Idempotent-Replayed: true); with another body it is a 422."`
	Body           task.PipelineInput
}

type pipelineOutput struct {
	Status   int
	Location string `header:"Location" doc:"The pipeline's status URL."`
	Replayed string `header:"Idempotent-Replayed" doc:"true when the pipeline is the one an earlier request with the same Idempotency-Key made."`
	Body     *task.PipelineRecord
}

func (h *handlers) submitPipeline(ctx context.Context, in *submitPipelineInput) (*pipelineOutput, error) {
	rec, replayed, err := h.deps.Tasks.CreatePipelineIdempotent(ctx, in.IdempotencyKey, in.Body)
	if err != nil {
		return nil, h.problem(ctx, err)
	}
	out := &pipelineOutput{Status: http.StatusAccepted, Location: "/background/pipelines/" + rec.ID, Body: rec}
	if replayed {
		out.Replayed = "true"
	}
	return out, nil
}

type pipelineIDInput struct {
	PipelineID string `path:"pipeline_id" maxLength:"64" doc:"The pipeline_id from the submit answer."`
}

type pipelineRecordOutput struct {
	Body *task.PipelineRecord
}

func (h *handlers) getPipeline(ctx context.Context, in *pipelineIDInput) (*pipelineRecordOutput, error) {
	rec, err := h.deps.Tasks.GetPipeline(ctx, in.PipelineID)
	if err != nil {
		return nil, h.problem(ctx, err)
	}
	return &pipelineRecordOutput{Body: rec}, nil
}

func (h *handlers) cancelPipeline(ctx context.Context, in *pipelineIDInput) (*pipelineRecordOutput, error) {
	rec, err := h.deps.Tasks.CancelPipeline(ctx, in.PipelineID)
	if err != nil {
		return nil, h.problem(ctx, err)
	}
	return &pipelineRecordOutput{Body: rec}, nil
}

type listPipelinesInput struct {
	Limit int    `query:"limit" minimum:"1" maximum:"100" default:"20" doc:"Pipelines per page."`
	After string `query:"after" maxLength:"64" doc:"The last pipeline_id of the previous page."`
}

// PipelineList is one page of pipelines.
type PipelineList struct {
	Pipelines []*task.PipelineRecord `json:"pipelines" doc:"Newest first, without results."`
	HasMore   bool                   `json:"has_more" doc:"true when a next page follows: pass the last pipeline_id as after."`
}

type listPipelinesOutput struct {
	Body PipelineList
}

func (h *handlers) listPipelines(ctx context.Context, in *listPipelinesInput) (*listPipelinesOutput, error) {
	page, err := h.deps.Tasks.ListPipelines(ctx, in.After, in.Limit)
	if err != nil {
		return nil, h.problem(ctx, err)
	}
	if page.Pipelines == nil {
		page.Pipelines = []*task.PipelineRecord{}
	}
	return &listPipelinesOutput{Body: PipelineList{Pipelines: page.Pipelines, HasMore: page.More}}, nil
}

type pipelineEventsInput struct {
	PipelineID  string `path:"pipeline_id" maxLength:"64"`
	LastEventID string `header:"Last-Event-ID" maxLength:"64" doc:"The id of the last event received: the stream resumes after it."`
}

func (h *handlers) pipelineEvents(ctx context.Context, in *pipelineEventsInput) (*huma.StreamResponse, error) {
	if _, err := h.deps.Tasks.GetPipeline(ctx, in.PipelineID); err != nil {
		return nil, h.problem(ctx, err)
	}
	return h.eventStream(ctx, in.LastEventID, "pipeline_id", in.PipelineID, h.deps.Tasks.FollowPipelineEvents)
}

type retryInput struct {
	TaskID         string `path:"task_id" maxLength:"64" doc:"The task to run again."`
	IdempotencyKey string `header:"Idempotency-Key" maxLength:"255" doc:"Any unique string, kept 24 hours: the same key gives back the first request's answer."`
}

func (h *handlers) retryTask(ctx context.Context, in *retryInput) (*submitOutput, error) {
	replayed := false
	rec, replayedKey, err := h.deps.Tasks.Idempotent(ctx, in.IdempotencyKey, "retry", struct {
		TaskID string `json:"task_id"`
	}{in.TaskID}, func() (*task.Record, error) {
		rec, again, err := h.deps.Tasks.Retry(ctx, in.TaskID)
		replayed = again
		return rec, err
	})
	if err != nil {
		return nil, h.problem(ctx, err)
	}
	out := &submitOutput{Status: http.StatusAccepted, Location: "/background/tasks/" + rec.ID, Body: rec}
	if replayed || replayedKey {
		out.Replayed = "true"
	}
	return out, nil
}
