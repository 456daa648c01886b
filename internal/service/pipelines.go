package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/siganteng/siganteng/internal/auth"
	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
)

// PipelineStore keeps pipelines, and reads their steps' tasks (see
// store.Store).
type PipelineStore interface {
	// CreatePipeline writes a pipeline and pushes it to be advanced.
	CreatePipeline(ctx context.Context, p store.Pipeline, recheck time.Time) error
	// GetPipeline returns a pipeline, or a task.ENOTFOUND error.
	GetPipeline(ctx context.Context, id string) (*store.Pipeline, error)
	// SetFanOut records a for_each step's item count once; the count kept.
	SetFanOut(ctx context.Context, id string, stage, n int) (int, error)
	// MovePipeline changes a pipeline; store.ErrPipelineMoved when it had
	// ended or was at another stage.
	MovePipeline(ctx context.Context, id string, m store.PipelineMove) error
	ListPipelines(ctx context.Context, owner string, all bool, after string, limit int) ([]*store.Pipeline, bool, error)
	// LookAgain brings a pipeline's next look forward to at.
	LookAgain(ctx context.Context, id string, at time.Time) error
	// ForgetPipeline drops a pipeline that no longer exists from the
	// ones looked at.
	ForgetPipeline(ctx context.Context, id string) error
	// Statuses reads tasks' statuses ("" for a missing one), GetMany their
	// records (nil for a missing one), each in one round trip.
	Statuses(ctx context.Context, ids []string) ([]task.Status, error)
	GetMany(ctx context.Context, ids []string) ([]*task.Record, error)
}

// Announcer queues a webhook event to a sealed URL (webhook.Announcer).
type Announcer interface {
	Announce(ctx context.Context, id, about, event, sealedURL string, body []byte) error
}

// DefaultPipelineRecheck is how often an unfinished pipeline is looked at
// even when nothing pushes it: the net under a worker that died holding
// one of its pushes.
const DefaultPipelineRecheck = 30 * time.Second

// stepRetry is how soon a step that could not be submitted (its key at
// its limit of unfinished tasks, Redis away) is tried again.
const stepRetry = time.Second

// StepTaskID is the task id of item i of step k of pipeline id: derived,
// so that every advance of the step (after a crash, or two at once)
// submits the same task, which the store creates once.
func StepTaskID(pipelineID string, k, i int) string {
	ns, err := uuid.Parse(pipelineID)
	if err != nil {
		ns = uuid.NameSpaceOID
	}
	return uuid.NewSHA1(ns, fmt.Appendf(nil, "%d/%d", k, i)).String()
}

// CreatePipeline checks a pipeline, keeps it, and leaves it to the workers,
// which submit its first step at once.
func (s *Service) CreatePipeline(ctx context.Context, in task.PipelineInput) (*task.PipelineRecord, error) {
	if s.deps.Pipelines == nil {
		return nil, task.Unavailable("pipelines are not served here", nil)
	}
	if err := in.Check(); err != nil {
		return nil, err
	}
	caller := auth.FromContext(ctx)
	if in.Priority == task.PriorityHigh && !caller.MayUseHighPriority() {
		return nil, task.Invalid("priority", "this API key may not submit priority high work; an operator gives the right with keys create --high-priority")
	}
	for i := range in.Steps {
		if err := s.checkStep(ctx, in, i); err != nil {
			return nil, err
		}
	}
	now := s.deps.Now().UTC()
	p := store.Pipeline{ID: uuid.NewString(), Owner: caller.Owner(), Status: task.StatusPending, CreatedAt: now, Metadata: in.Metadata}
	// Times given from now are fixed now, so that every step counts from
	// the pipeline's submit, however late it starts.
	rec := &task.Record{CreatedAt: now}
	if err := deadline(rec, in.Options); err != nil {
		return nil, err
	}
	if rec.DeadlineAt != nil {
		p.DeadlineAt, in.Deadline, in.DeadlineAfter = rec.DeadlineAt, rec.DeadlineAt, nil
	}
	if err := s.schedule(rec, in.Options); err != nil {
		return nil, err
	}
	if rec.ScheduledAt != nil {
		in.RunAt, in.Delay = rec.ScheduledAt, nil
	}
	if in.Webhook != "" {
		hook, err := s.batchWebhook(in.Webhook)
		if err != nil {
			return nil, err
		}
		p.WebhookURL, p.Webhook = hook, &task.WebhookInfo{URL: task.ShownWebhookURL(in.Webhook), Events: []string{task.WebhookCompleted}}
		in.Webhook, in.WebhookEvents = "", nil // kept sealed, never in the clear
	}
	rights, err := json.Marshal(caller)
	if err != nil {
		return nil, fmt.Errorf("service: encode the pipeline's caller: %w", err)
	}
	p.Caller, p.Spec = rights, in
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if err := s.deps.Pipelines.CreatePipeline(sctx, p, now.Add(s.pipelineRecheck())); err != nil {
		return nil, task.Unavailable("the task store is unavailable; nothing was queued", err)
	}
	return s.pipelineRecord(&p), nil
}

func (s *Service) pipelineRecheck() time.Duration {
	if s.cfg.PipelineRecheck > 0 {
		return s.cfg.PipelineRecheck
	}
	return DefaultPipelineRecheck
}

// checkStep checks step i's input against its kind's rules, with every
// reference standing for a sample value; a rule broken only by a field
// that holds a reference is left to the step's own submit.
func (s *Service) checkStep(ctx context.Context, in task.PipelineInput, i int) error {
	at := fmt.Sprintf("steps[%d].input", i)
	body, err := in.Substitute(i, func(ref task.Ref) (task.Value, bool) {
		if ref.Step < 0 {
			return task.Value{Text: "0"}, true
		}
		shape, _ := in.ShapeOf(ref.Step, ref.Output)
		return task.Value{Shape: shape, Text: "x", List: []string{"x"}}, true
	})
	if err != nil {
		return task.Invalid(at, err.Error())
	}
	kind := stepKinds[in.Steps[i].Kind]
	err = kind.check(s, ctx, body)
	if err == nil {
		return nil
	}
	field := task.FieldOf(err)
	if field != "" && holdsReference(in.Steps[i].Input, field) {
		return nil
	}
	var terr *task.Error
	if errors.As(err, &terr) {
		out := *terr
		out.Field = at
		if field != "" {
			out.Field += "." + field
		}
		out.Message = fmt.Sprintf("step %q: %s", in.StepName(i), terr.Message)
		return &out
	}
	return err
}

// holdsReference reports whether the top-level field of a step's input
// holds a reference.
func holdsReference(input json.RawMessage, field string) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(input, &m) != nil {
		return false
	}
	name, _, _ := strings.Cut(field, ".")
	name, _, _ = strings.Cut(name, "[")
	return strings.Contains(string(m[name]), "{{")
}

// GetPipeline returns one of the caller's pipelines, with its result once
// it has succeeded.
func (s *Service) GetPipeline(ctx context.Context, id string) (*task.PipelineRecord, error) {
	p, err := s.ownPipeline(ctx, id)
	if err != nil {
		return nil, err
	}
	rec := s.pipelineRecord(p)
	if p.Status == task.StatusSuccess {
		last := len(p.Spec.Steps) - 1
		outs, err := s.stepResults(ctx, p, last)
		if err != nil {
			return nil, err
		}
		if len(p.Spec.Steps[last].ForEach) > 0 {
			rec.Result = mustJSON(outs)
		} else if len(outs) == 1 {
			rec.Result = outs[0]
		}
	}
	return rec, nil
}

// ownPipeline reads a pipeline the caller may see; ENOTFOUND for another's.
func (s *Service) ownPipeline(ctx context.Context, id string) (*store.Pipeline, error) {
	if s.deps.Pipelines == nil {
		return nil, &task.Error{Code: task.ENOTFOUND, Message: fmt.Sprintf("pipeline %q not found", id)}
	}
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	p, err := s.deps.Pipelines.GetPipeline(sctx, id)
	switch {
	case task.CodeOf(err) == task.ENOTFOUND:
		return nil, err
	case err != nil:
		return nil, task.Unavailable("the task store is unavailable", err)
	case !auth.FromContext(ctx).CanSee(p.Owner):
		return nil, &task.Error{Code: task.ENOTFOUND, Message: fmt.Sprintf("pipeline %q not found", id)}
	}
	return p, nil
}

// stepResults reads the results of step k's tasks, in order.
func (s *Service) stepResults(ctx context.Context, p *store.Pipeline, k int) ([]json.RawMessage, error) {
	ids := stepTaskIDs(p, k)
	recs, err := s.deps.Pipelines.GetMany(ctx, ids)
	if err != nil {
		return nil, task.Unavailable("the task store is unavailable", err)
	}
	out := make([]json.RawMessage, len(ids))
	for i, rec := range recs {
		if rec == nil {
			return nil, &task.Error{Code: task.ENOTFOUND, Message: fmt.Sprintf("the task of step %q has expired (RESULT_TTL)", p.Spec.StepName(k))}
		}
		if out[i], err = s.resultOf(ctx, rec); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// resultOf is a record's result, read from the artifact store when it was
// too large for the record.
func (s *Service) resultOf(ctx context.Context, rec *task.Record) (json.RawMessage, error) {
	if rec.ResultKey == "" {
		return rec.Result, nil
	}
	obj, err := s.deps.Artifacts.Open(ctx, rec.ResultKey)
	if err != nil {
		return nil, task.Unavailable("the artifact store is unavailable; the result cannot be read", err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		return nil, task.Unavailable("the artifact store is unavailable; the result cannot be read", err)
	}
	return b, nil
}

// stepTaskIDs are the ids of step k's tasks, as far as they are known: a
// for_each step over an earlier step's list has none until it starts.
func stepTaskIDs(p *store.Pipeline, k int) []string {
	n, ok := fanOut(p, k)
	if !ok {
		return nil
	}
	ids := make([]string, n)
	for i := range n {
		ids[i] = StepTaskID(p.ID, k, i)
	}
	return ids
}

// fanOut is the number of tasks step k runs, if it is known yet.
func fanOut(p *store.Pipeline, k int) (int, bool) {
	raw := p.Spec.Steps[k].ForEach
	if len(raw) == 0 {
		return 1, true
	}
	var items []string
	if json.Unmarshal(raw, &items) == nil {
		return len(items), true
	}
	n, ok := p.FanOut[k]
	return n, ok
}

// pipelineRecord is what a client sees of p.
func (s *Service) pipelineRecord(p *store.Pipeline) *task.PipelineRecord {
	rec := &task.PipelineRecord{ID: p.ID, Status: p.Status, Owner: p.Owner, Metadata: p.Metadata, Webhook: p.Webhook,
		CreatedAt: p.CreatedAt, CompletedAt: p.CompletedAt, DeadlineAt: p.DeadlineAt, ExpiresAt: p.ExpiresAt, Error: p.Error}
	for k, st := range p.Spec.Steps {
		out := task.PipelineStepRecord{Name: p.Spec.StepName(k), Kind: st.Kind, Status: task.StatusPending}
		switch {
		case p.Status == task.StatusSuccess || k < p.Stage:
			out.Status = task.StatusSuccess
		case k == p.Stage && p.Status.Terminal():
			out.Status = p.Status
		case k == p.Stage && p.Status == task.StatusStarted:
			out.Status = task.StatusStarted
		case k > p.Stage && p.Status.Terminal():
			out.Status, out.Skipped = task.StatusRevoked, true
		}
		if k <= p.Stage && !out.Skipped && (p.Status != task.StatusPending) {
			ids := stepTaskIDs(p, k)
			if len(st.ForEach) > 0 {
				out.TaskIDs = ids
				if out.TaskIDs == nil {
					out.TaskIDs = []string{}
				}
			} else if len(ids) == 1 {
				out.TaskID = ids[0]
			}
		}
		rec.Steps = append(rec.Steps, out)
	}
	return rec
}

// PipelinePage is one page of pipelines.
type PipelinePage struct {
	Pipelines []*task.PipelineRecord
	More      bool
}

// ListPipelines lists the caller's pipelines (an admin's: every one's),
// newest first, after the one named; results are not included.
func (s *Service) ListPipelines(ctx context.Context, after string, limit int) (PipelinePage, error) {
	if s.deps.Pipelines == nil {
		return PipelinePage{}, nil
	}
	caller := auth.FromContext(ctx)
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	ps, more, err := s.deps.Pipelines.ListPipelines(sctx, caller.Owner(), caller.Admin, after, limit)
	if err != nil {
		if task.CodeOf(err) == task.EINVALID {
			return PipelinePage{}, err
		}
		return PipelinePage{}, task.Unavailable("the task store is unavailable", err)
	}
	out := PipelinePage{More: more, Pipelines: []*task.PipelineRecord{}}
	for _, p := range ps {
		out.Pipelines = append(out.Pipelines, s.pipelineRecord(p))
	}
	return out, nil
}

// CancelPipeline ends one of the caller's pipelines REVOKED: the running
// step's tasks are revoked (a running provider call is cut) and the steps
// after it are skipped. A pipeline that has ended is answered as it is.
func (s *Service) CancelPipeline(ctx context.Context, id string) (*task.PipelineRecord, error) {
	p, err := s.ownPipeline(ctx, id)
	if err != nil {
		return nil, err
	}
	if !p.Status.Terminal() {
		failure := &task.PipelineFailure{Code: task.FailureRevoked, Message: "cancelled by the client"}
		if err := s.endPipeline(ctx, p, task.StatusRevoked, failure); err != nil && !errors.Is(err, store.ErrPipelineMoved) {
			return nil, task.Unavailable("the task store is unavailable", err)
		}
	}
	return s.GetPipeline(ctx, id)
}

// FollowPipelineEvents is FollowEvents for a pipeline: status events of
// the pipeline, and step events as its steps start and end; the terminal
// status event carries the final record.
func (s *Service) FollowPipelineEvents(ctx context.Context, id, after string, keepalive time.Duration, send func(Event) error, idle func() error) error {
	return s.follow(ctx, id, after, keepalive, send, idle, func(ctx context.Context, e store.Event) Event {
		out := Event{ID: e.ID, Kind: e.Kind, Data: e.Data}
		if rec, err := s.GetPipeline(ctx, id); err == nil {
			out.Data = mustJSON(rec)
		}
		return out
	})
}

// endPipeline ends p with status, and its running step with it: that
// step's tasks not ended are revoked, and the webhook, if any, is told.
func (s *Service) endPipeline(ctx context.Context, p *store.Pipeline, status task.Status, failure *task.PipelineFailure) error {
	now := s.deps.Now().UTC()
	k := p.Stage
	if failure != nil && failure.Step == "" {
		failure.Step = p.Spec.StepName(k)
	}
	err := s.deps.Pipelines.MovePipeline(ctx, p.ID, store.PipelineMove{From: -1, Stage: -1, Status: status, Error: failure, At: now,
		Events: [][2]string{
			stepEvent(p, k, status),
			{store.EventStatus, string(mustJSON(store.PipelineStatusEvent{PipelineID: p.ID, Status: status, Error: failure}))},
		}})
	if err != nil {
		return err
	}
	log := s.deps.Log.With("pipeline_id", p.ID, "status", status)
	if failure != nil {
		log = log.With("step", failure.Step, "code", failure.Code)
	}
	log.Info("pipeline ended")
	if status != task.StatusSuccess {
		// The stage may have moved on since p was read: revoke the tasks of
		// the stage it is at now.
		if cur, err := s.deps.Pipelines.GetPipeline(ctx, p.ID); err == nil {
			p = cur
		}
		s.revokeStage(ctx, p, p.Stage, now)
	}
	if err := s.announceEnd(ctx, p); err != nil {
		s.deps.Log.Warn("the webhook of an ended pipeline was not queued; it is tried again", "pipeline_id", p.ID, "err", err)
	}
	return nil
}

// announceEnd queues the webhook delivery of an ended pipeline, if it has
// a webhook, and then stops looking at it. Until then the pipeline stays
// due (the script that ended it saw to that), so a worker that dies in
// between leaves the delivery to the next look; the delivery's id is the
// pipeline's, so a delivery still queued is not queued twice.
func (s *Service) announceEnd(ctx context.Context, p *store.Pipeline) error {
	if p.WebhookURL == "" || s.deps.Announcer == nil {
		return s.deps.Pipelines.ForgetPipeline(ctx, p.ID)
	}
	rec, err := s.GetPipeline(auth.WithCaller(ctx, auth.Caller{Admin: true}), p.ID)
	if err != nil {
		return err
	}
	if err := s.deps.Announcer.Announce(ctx, p.ID+"-completed", p.ID, "pipeline.completed", p.WebhookURL, mustJSON(rec)); err != nil {
		return err
	}
	return s.deps.Pipelines.ForgetPipeline(ctx, p.ID)
}

// revokeStage revokes step k's tasks that have not ended.
func (s *Service) revokeStage(ctx context.Context, p *store.Pipeline, k int, at time.Time) {
	if k >= len(p.Spec.Steps) {
		return
	}
	for _, id := range stepTaskIDs(p, k) {
		err := s.deps.Records.Revoked(ctx, id, "the pipeline ended", at)
		if err != nil && !errors.Is(err, store.ErrFinished) && task.CodeOf(err) != task.ENOTFOUND {
			s.deps.Log.Warn("a step's task of an ended pipeline was not revoked", "pipeline_id", p.ID, "task_id", id, "err", err)
		}
	}
}

func stepEvent(p *store.Pipeline, k int, status task.Status) [2]string {
	return [2]string{store.EventStep, string(mustJSON(store.StepEvent{PipelineID: p.ID, Step: p.Spec.StepName(k), Index: k, Status: status, TaskIDs: stepTaskIDs(p, k)}))}
}
