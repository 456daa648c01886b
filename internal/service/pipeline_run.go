package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"

	"github.com/siganteng/siganteng/internal/artifact"
	"github.com/siganteng/siganteng/internal/auth"
	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
)

// AdvancePipeline moves pipeline id on as far as its steps allow: it
// submits the running step's tasks not yet submitted, and once they have
// all succeeded, starts the next step (or ends the pipeline); a step's
// task that failed or was revoked ends it. Every part is safe to repeat:
// a step's tasks have ids derived from the pipeline's, so two advances at
// once, or one after a crash, submit each task once, and a stage moves on
// by a compare-and-set.
func (s *Service) AdvancePipeline(ctx context.Context, id string) error {
	p, err := s.deps.Pipelines.GetPipeline(ctx, id)
	if task.CodeOf(err) == task.ENOTFOUND {
		return s.deps.Pipelines.ForgetPipeline(ctx, id)
	}
	if err != nil {
		return err
	}
	var c auth.Caller
	if err := json.Unmarshal(p.Caller, &c); err != nil {
		return fmt.Errorf("service: pipeline %s: its caller: %w", id, err)
	}
	ctx = auth.WithCaller(ctx, c)
	if p.Status.Terminal() {
		// Ended, and still looked at: its webhook was not queued yet.
		return s.announceEnd(ctx, p)
	}
	fresh := false
	for !p.Status.Terminal() {
		moved, err := s.advanceStage(ctx, p, fresh)
		if err != nil || !moved {
			return err
		}
		fresh = true
	}
	return nil
}

// advanceStage does what can be done at p's stage; moved is true when p
// has moved on to the next (p then says so). fresh says the stage has just
// begun, so none of its tasks exist yet.
func (s *Service) advanceStage(ctx context.Context, p *store.Pipeline, fresh bool) (moved bool, err error) {
	k := p.Stage
	now := s.deps.Now().UTC()
	if p.DeadlineAt != nil && !now.Before(*p.DeadlineAt) {
		return false, s.endQuietly(ctx, p, task.StatusRevoked, &task.PipelineFailure{Code: task.FailureDeadline, Message: "the pipeline's deadline passed before it ended"})
	}
	ids, failure, err := s.stageIDs(ctx, p, k)
	if failure != nil {
		return false, s.endQuietly(ctx, p, task.StatusFailure, failure)
	}
	if err != nil {
		return false, err
	}
	statuses := make([]task.Status, len(ids))
	if !fresh && len(ids) > 0 {
		if statuses, err = s.deps.Pipelines.Statuses(ctx, ids); err != nil {
			return false, err
		}
	}
	if p.Status == task.StatusPending {
		if err := s.movePipeline(ctx, p, store.PipelineMove{From: k, Stage: k, Status: task.StatusStarted, At: now, Events: [][2]string{
			{store.EventStatus, string(mustJSON(store.PipelineStatusEvent{PipelineID: p.ID, Status: task.StatusStarted}))},
			stepEvent(p, k, task.StatusStarted)}}); err != nil {
			if errors.Is(err, store.ErrPipelineMoved) {
				return false, nil // another advance started it, and goes on
			}
			return false, err
		}
	}
	submitted := false
	var look task.Lookup // read once a task is to be submitted
	for i, st := range statuses {
		if st != "" {
			continue
		}
		if look == nil {
			var failure *task.PipelineFailure
			if look, _, failure, err = s.stageInputs(ctx, p, k); failure != nil {
				return false, s.endQuietly(ctx, p, task.StatusFailure, failure)
			}
			if err != nil {
				return false, err
			}
		}
		rec, err := s.submitStep(ctx, p, k, i, look)
		switch {
		case err == nil:
			statuses[i], submitted = rec.Status, true
		case task.CodeOf(err) == task.ELIMITED || task.CodeOf(err) == task.EUNAVAILABLE:
			// The key at its limit of unfinished tasks or past its budget,
			// or Redis away: the rest of the step is submitted as its tasks
			// end, or when the limit says to try again.
			wait := stepRetry
			var terr *task.Error
			if errors.As(err, &terr) {
				wait = max(wait, terr.RetryAfter)
			}
			s.deps.Log.Info("a pipeline's step waits to be submitted", "pipeline_id", p.ID, "step", p.Spec.StepName(k), "retry_in", wait, "err", err)
			return false, s.deps.Pipelines.LookAgain(ctx, p.ID, now.Add(wait))
		default:
			failure := &task.PipelineFailure{Code: task.FailureInvalidInput, Message: err.Error(), TaskID: StepTaskID(p.ID, k, i)}
			var terr *task.Error
			if errors.As(err, &terr) {
				failure.Message = terr.Message
				if terr.Field != "" {
					failure.Message = fmt.Sprintf("input.%s: %s", terr.Field, terr.Message)
				}
			}
			return false, s.endQuietly(ctx, p, task.StatusFailure, failure)
		}
	}
	if submitted {
		// A cancel may have come while the step was submitted: what it
		// could not revoke then is revoked now.
		if cur, err := s.deps.Pipelines.GetPipeline(ctx, p.ID); err == nil && cur.Status.Terminal() {
			s.revokeStage(ctx, p, k, now)
			return false, nil
		}
	}
	for i, st := range statuses {
		if st == task.StatusFailure || st == task.StatusRevoked {
			return false, s.stepFailed(ctx, p, k, ids[i])
		}
	}
	for _, st := range statuses {
		if st != task.StatusSuccess {
			return false, nil // its tasks' ends push the pipeline again
		}
	}
	if k == len(p.Spec.Steps)-1 {
		return false, s.endQuietly(ctx, p, task.StatusSuccess, nil)
	}
	next := *p
	next.Stage = k + 1
	err = s.movePipeline(ctx, p, store.PipelineMove{From: k, Stage: k + 1, Status: task.StatusStarted, At: now,
		Events: [][2]string{stepEvent(p, k, task.StatusSuccess), stepEvent(&next, k+1, task.StatusStarted)}})
	if errors.Is(err, store.ErrPipelineMoved) {
		return false, nil // another advance moved it: that one goes on
	}
	if err != nil {
		return false, err
	}
	p.Stage, p.Status = k+1, task.StatusStarted
	return true, nil
}

// movePipeline applies m to p in the store.
func (s *Service) movePipeline(ctx context.Context, p *store.Pipeline, m store.PipelineMove) error {
	if err := s.deps.Pipelines.MovePipeline(ctx, p.ID, m); err != nil {
		return err
	}
	p.Status = m.Status
	return nil
}

// endQuietly is endPipeline where another advance ending it first is no
// error.
func (s *Service) endQuietly(ctx context.Context, p *store.Pipeline, status task.Status, failure *task.PipelineFailure) error {
	err := s.endPipeline(ctx, p, status, failure)
	if errors.Is(err, store.ErrPipelineMoved) {
		return nil
	}
	if err == nil {
		p.Status = status
	}
	return err
}

// stepFailed ends p because task id of step k ended without success: a
// task revoked (by its deadline, a cancel) revokes the pipeline, any other
// end fails it; either names the step and carries the task's error.
func (s *Service) stepFailed(ctx context.Context, p *store.Pipeline, k int, id string) error {
	status := task.StatusFailure
	failure := &task.PipelineFailure{Code: task.FailureInternal, Message: "the step's task failed", TaskID: id}
	if recs, err := s.deps.Pipelines.GetMany(ctx, []string{id}); err == nil && recs[0] != nil {
		if recs[0].Status == task.StatusRevoked {
			status = task.StatusRevoked
		}
		if e := recs[0].Error; e != nil {
			failure.Code, failure.Message = e.Code, e.Message
		}
	}
	failure.Message = fmt.Sprintf("step %q: %s", p.Spec.StepName(k), failure.Message)
	return s.endQuietly(ctx, p, status, failure)
}

// stageIDs are the ids of step k's tasks. A for_each over an earlier
// step's list has its count fixed the first time, from the list; after
// that the ids are known without reading anything.
func (s *Service) stageIDs(ctx context.Context, p *store.Pipeline, k int) ([]string, *task.PipelineFailure, error) {
	if _, known := fanOut(p, k); known {
		return stepTaskIDs(p, k), nil, nil
	}
	_, items, failure, err := s.stageInputs(ctx, p, k)
	if failure != nil || err != nil {
		return nil, failure, err
	}
	n, err := s.deps.Pipelines.SetFanOut(ctx, p.ID, k, len(items))
	if err != nil {
		return nil, nil, err
	}
	p.FanOut[k] = n
	return stepTaskIDs(p, k), nil, nil
}

// stageInputs reads what step k's references stand for, and its for_each
// items. An earlier step's result that is gone, or a list too long, is the
// pipeline's failure; an unreadable store is an error, tried again later.
func (s *Service) stageInputs(ctx context.Context, p *store.Pipeline, k int) (task.Lookup, []string, *task.PipelineFailure, error) {
	spec := p.Spec
	values := map[int]map[string]task.Value{}
	for _, j := range spec.Referenced(k) {
		outs, err := s.stepResults(ctx, p, j)
		if err == nil {
			values[j], err = combine(spec, j, outs)
		}
		switch {
		case err == nil:
		case task.CodeOf(err) == task.EUNAVAILABLE:
			return nil, nil, nil, err
		default:
			return nil, nil, &task.PipelineFailure{Code: task.FailureInternal,
				Message: fmt.Sprintf("step %q: the result of step %q cannot be read: %v", spec.StepName(k), spec.StepName(j), err)}, nil
		}
	}
	var items []string
	if len(spec.Steps[k].ForEach) > 0 {
		if ref, ok := spec.ForEachRef(k); ok {
			items = values[ref.Step][ref.Output].List
		} else {
			_ = json.Unmarshal(spec.Steps[k].ForEach, &items)
		}
		if len(items) > task.MaxFanOut {
			return nil, nil, &task.PipelineFailure{Code: task.FailureInvalidInput,
				Message: fmt.Sprintf("step %q: for_each gave %d items; at most %d", spec.StepName(k), len(items), task.MaxFanOut)}, nil
		}
	}
	look := func(ref task.Ref) (task.Value, bool) {
		switch {
		case ref.Step >= 0:
			v, ok := values[ref.Step][ref.Output]
			return v, ok
		case ref.Output == "item":
			if ref.Index >= len(items) {
				return task.Value{}, false
			}
			return task.Value{Text: items[ref.Index]}, true
		default:
			return task.Value{Text: fmt.Sprint(ref.Index)}, true
		}
	}
	return look, items, nil, nil
}

// combine reads step j's outputs from its tasks' results: a for_each
// step's outputs are lists, one entry per item (a list output's entries
// follow one another).
func combine(spec task.PipelineInput, j int, results []json.RawMessage) (map[string]task.Value, error) {
	kind := spec.Steps[j].Kind
	if len(spec.Steps[j].ForEach) == 0 {
		if len(results) != 1 {
			return nil, errors.New("no result")
		}
		return task.Outputs(kind, results[0])
	}
	out := map[string]task.Value{}
	for name := range task.PipelineOutputs[kind] {
		out[name] = task.Value{Shape: task.List, List: []string{}}
	}
	for _, r := range results {
		one, err := task.Outputs(kind, r)
		if err != nil {
			return nil, err
		}
		for name, v := range one {
			agg := out[name]
			if v.Shape == task.List {
				agg.List = append(agg.List, v.List...)
			} else {
				agg.List = append(agg.List, v.Text)
			}
			out[name] = agg
		}
	}
	return out, nil
}

// submitStep submits item i of step k as a task of its own kind, under its
// derived id; the pipeline's options fill those the step does not give.
func (s *Service) submitStep(ctx context.Context, p *store.Pipeline, k, i int, look task.Lookup) (*task.Record, error) {
	spec := p.Spec
	body, err := spec.Substitute(k, func(ref task.Ref) (task.Value, bool) {
		if ref.Step < 0 {
			ref.Index = i
		}
		return look(ref)
	})
	if err != nil {
		return nil, task.Invalid("input", err.Error())
	}
	fill := func(o *task.Options) {
		if o.Priority == "" {
			o.Priority = spec.Priority
		}
		if o.Deadline == nil && o.DeadlineAfter == nil {
			o.Deadline = spec.Deadline
		}
		if len(spec.Metadata) > 0 {
			merged := map[string]string{}
			for key, v := range spec.Metadata {
				merged[key] = v
			}
			for key, v := range o.Metadata {
				merged[key] = v
			}
			o.Metadata = merged
		}
		if k == 0 {
			if o.RunAt == nil && o.Delay == nil {
				o.RunAt = spec.RunAt
			}
			if o.CancelAfter == nil {
				o.CancelAfter = spec.CancelAfter
			}
		}
	}
	ctx = withPreset(ctx, preset{id: StepTaskID(p.ID, k, i), pipeline: p.ID, step: spec.StepName(k)})
	rec, err := stepKinds[spec.Steps[k].Kind].submit(s, ctx, body, fill)
	if err != nil {
		return nil, err
	}
	return rec, nil
}

// stepKind is how a pipeline's step of one kind is checked at the
// pipeline's submit and submitted when it runs.
type stepKind struct {
	check  func(s *Service, ctx context.Context, body json.RawMessage) error
	submit func(s *Service, ctx context.Context, body json.RawMessage, fill func(*task.Options)) (*task.Record, error)
}

// validated is an input with its kind's own checks.
type validated interface{ Validate() error }

// stepOf makes the stepKind of a kind whose submit takes an input I.
func stepOf[I any, P interface {
	*I
	OptionsRef() *task.Options
}](submit func(s *Service, ctx context.Context, in I) (*task.Record, error)) stepKind {
	decode := func(body json.RawMessage) (I, error) {
		var in I
		if err := json.Unmarshal(body, &in); err != nil {
			return in, task.Invalid("", "the input does not fit its kind: "+err.Error())
		}
		return in, nil
	}
	return stepKind{
		check: func(_ *Service, _ context.Context, body json.RawMessage) error {
			in, err := decode(body)
			if err != nil {
				return err
			}
			if v, ok := any(in).(validated); ok {
				return v.Validate()
			}
			return nil
		},
		submit: func(s *Service, ctx context.Context, body json.RawMessage, fill func(*task.Options)) (*task.Record, error) {
			in, err := decode(body)
			if err != nil {
				return nil, err
			}
			fill(P(&in).OptionsRef())
			return submit(s, ctx, in)
		},
	}
}

// stepKinds are the kinds a step may be.
var stepKinds = map[task.Type]stepKind{
	task.TypeGenerateText:  stepOf((*Service).SubmitGenerateText),
	task.TypeDescribeImage: stepOf((*Service).SubmitDescribeImage),
	task.TypeEmbed:         stepOf((*Service).SubmitEmbed),
	task.TypeTextToSpeech:  stepOf((*Service).SubmitTextToSpeech),
	task.TypeSpeechToText:  {check: checkAudioStep, submit: submitAudioStep},
}

// audioStep is a speech_to_text step's input: the audio is a file of the
// Files API or an artifact of a task, not an upload.
type audioStep struct {
	task.SpeechToTextInput
	FileID string `json:"file_id,omitempty"`
	Audio  string `json:"audio,omitempty"`
}

// artifactPath matches an artifact URL, as text_to_speech results give.
var artifactPath = regexp.MustCompile(`^(?:https?://[^/]+)?/background/tasks/([0-9a-fA-F-]{36})/artifact$`)

func decodeAudioStep(body json.RawMessage) (audioStep, error) {
	var in audioStep
	if err := json.Unmarshal(body, &in); err != nil {
		return in, task.Invalid("", "the input does not fit its kind: "+err.Error())
	}
	switch {
	case (in.FileID == "") == (in.Audio == ""):
		return in, task.Invalid("file_id", "a speech_to_text step takes file_id (a file uploaded to /v1/files) or audio (an artifact URL such as {{steps.NAME.audio}}), one of them")
	case in.Audio != "" && !artifactPath.MatchString(in.Audio):
		return in, task.Invalid("audio", "audio is an artifact URL, /background/tasks/TASK_ID/artifact, such as {{steps.NAME.audio}} gives")
	}
	return in, in.Validate()
}

func checkAudioStep(s *Service, ctx context.Context, body json.RawMessage) error {
	in, err := decodeAudioStep(body)
	if err != nil || in.FileID == "" {
		return err
	}
	if _, err := s.GetFile(ctx, in.FileID); err != nil {
		if task.CodeOf(err) == task.ENOTFOUND {
			return task.Invalid("file_id", fmt.Sprintf("no such file: %s", in.FileID))
		}
		return err
	}
	return nil
}

func submitAudioStep(s *Service, ctx context.Context, body json.RawMessage, fill func(*task.Options)) (*task.Record, error) {
	in, err := decodeAudioStep(body)
	if err != nil {
		return nil, err
	}
	fill(&in.Options)
	var audio io.ReadCloser
	if in.FileID != "" {
		_, obj, err := s.OpenFile(ctx, in.FileID)
		if task.CodeOf(err) == task.ENOTFOUND {
			return nil, task.Invalid("file_id", fmt.Sprintf("no such file: %s", in.FileID))
		}
		if err != nil {
			return nil, err
		}
		audio = obj
	} else {
		id := artifactPath.FindStringSubmatch(in.Audio)[1]
		if _, err := s.GetLinked(ctx, id); err != nil {
			return nil, task.Invalid("audio", fmt.Sprintf("no such artifact: %s", in.Audio))
		}
		obj, err := s.deps.Artifacts.Open(ctx, id)
		if errors.Is(err, artifact.ErrNotFound) {
			return nil, task.Invalid("audio", fmt.Sprintf("the artifact is gone: %s", in.Audio))
		}
		if err != nil {
			return nil, task.Unavailable("the artifact store is unavailable", err)
		}
		audio = obj
	}
	defer audio.Close()
	return s.SubmitSpeechToText(ctx, in.SpeechToTextInput, audio)
}

// preset is what a task submitted for a pipeline or a retry is given
// besides its input: its id, and its links.
type preset struct {
	id       string
	pipeline string
	step     string
	retryOf  string
	// webhookURL (sealed) and webhook are a retried task's webhook.
	webhookURL string
	webhook    *task.WebhookInfo
}

type presetKey struct{}

func withPreset(ctx context.Context, p preset) context.Context {
	return context.WithValue(ctx, presetKey{}, p)
}

func presetOf(ctx context.Context) (preset, bool) {
	p, ok := ctx.Value(presetKey{}).(preset)
	return p, ok
}
