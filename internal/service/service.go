// Package service is the orchestrator between the API and the workers: it
// validates requests, writes task records, enqueues work, runs synchronous
// calls, and executes queued tasks. It knows providers only by interface.
package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/siganteng/siganteng/internal/artifact"
	"github.com/siganteng/siganteng/internal/auth"
	"github.com/siganteng/siganteng/internal/fetch"
	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
)

// Records is the task record store as the service uses it.
type Records interface {
	// Create writes a new record; store.ErrTooManyUnfinished when its owner
	// is at its limit of unfinished tasks, store.ErrTokenBudget or
	// store.ErrCostBudget when past a daily budget.
	Create(ctx context.Context, rec *task.Record, limits store.Limits) error
	// Get returns a record, or a task.ENOTFOUND error.
	Get(ctx context.Context, id string) (*task.Record, error)
	// Delete removes a record.
	Delete(ctx context.Context, id string) error
	// Revoked ends an unfinished task; store.ErrFinished if it had ended,
	// task.ENOTFOUND if unknown.
	Revoked(ctx context.Context, id, reason string, at time.Time) error
	// Events returns up to count events of a task after the event after.
	Events(ctx context.Context, id, after string, count int64) ([]store.Event, error)
	// List returns a page of tasks, newest first.
	List(ctx context.Context, q store.ListQuery) (task.Page, error)
}

// Enqueuer puts work on the queue.
type Enqueuer interface {
	// Enqueue queues a task to run at at (at once when zero).
	Enqueue(ctx context.Context, typ task.Type, priority task.Priority, id, owner string, weight int, at time.Time, payload []byte) error
}

// Providers are the adapters for each capability.
type Providers struct {
	LLM      provider.LLM
	TTS      provider.TTS
	Vision   provider.Vision
	Embedder provider.Embedder
	STT      provider.STT
}

// Models are the names a routing file gives.
type Models interface {
	// Resolve returns the model a request naming name ("" for the
	// default) gets, and false when the file does not route capability
	// (any name then passes to the provider); an error naming the valid
	// models when name is not one.
	Resolve(capability, name string) (string, bool, error)
}

// Artifacts stores binary results.
type Artifacts interface {
	// Put stores r under key and returns its size.
	Put(ctx context.Context, key string, r io.Reader) (int64, error)
	// Open returns the artifact under key, or artifact.ErrNotFound.
	Open(ctx context.Context, key string) (artifact.Object, error)
	// Delete removes the artifact under key, if there is one.
	Delete(ctx context.Context, key string) error
}

// Config holds the service's settings.
type Config struct {
	SyncTimeout    time.Duration // bound on synchronous calls
	MaxUploadBytes int64         // bound on an image in a data: URL
	MaxFileBytes   int64         // bound on a file of the Files API
	// LargeResultBytes is the size past which a result is kept in the
	// artifact store rather than the record; 0 keeps every one inline.
	LargeResultBytes int
	// MaxScheduleAhead bounds run_at and delay; 0 for no bound.
	MaxScheduleAhead time.Duration
	// MaxOutputTokens caps max_tokens and is sent when a request gives
	// none; 0 for no cap.
	MaxOutputTokens int
	// MaxUnfinishedPerKey bounds an API key's unfinished tasks unless the
	// key has a limit of its own; 0 for none.
	MaxUnfinishedPerKey int
	// WebhooksEnabled is true when WEBHOOK_SECRET is set: without a secret
	// deliveries could not be signed, so submits naming a webhook are refused.
	WebhooksEnabled bool
	// MaxStoredBytesPerKey bounds the bytes one API key keeps in the
	// artifact store (uploads and results); 0 for no bound.
	MaxStoredBytesPerKey int64
	// ArtifactTTL is how long an artifact is kept (RESULT_TTL): when the
	// sweep deletes it, it stops counting against its key's quota.
	ArtifactTTL time.Duration
	// MaxSyncPerKey and MaxWaitingPerKey bound one API key's synchronous
	// calls and waiting connections (event streams, Prefer: wait) open at
	// once on this process, unless the key has bounds of its own; 0 for
	// none.
	MaxSyncPerKey, MaxWaitingPerKey int
	// PipelineRecheck is how often an unfinished pipeline is looked at
	// even when nothing pushes it; DefaultPipelineRecheck when zero.
	PipelineRecheck time.Duration
	// RetryMaxDelay bounds the Retry-After a synchronous client is told,
	// whatever the provider said (RETRY_MAX_DELAY); 0 for MaxRetryAfter.
	RetryMaxDelay time.Duration
}

// Deps are the service's dependencies.
type Deps struct {
	Records   Records
	Queue     Enqueuer
	Providers Providers
	Artifacts Artifacts
	Fetcher   Fetcher
	// Batches keeps the records of files and batches, and Steps queues a
	// batch's runner; nil serves no Files or Batch API.
	Batches BatchStore
	Steps   BatchSteps
	// Pipelines keeps pipelines; nil serves none. Announcer queues their
	// webhooks.
	Pipelines PipelineStore
	Announcer Announcer
	// Retries names the tasks that run failed ones again; nil serves no
	// retries.
	Retries Retries
	// Holds counts each key's synchronous calls and waiting connections,
	// shared by every API process; nil counts them per process.
	Holds HoldStore
	// Fetches bounds the image downloads under way, in all and per API
	// key; nil for no bound.
	Fetches *fetch.Pool
	Endings Endings
	Keys    IdempotencyKeys
	// Models checks the model a request names; nil (no routing file)
	// lets the provider judge it.
	Models Models
	// Catalog lists the models for GET /models.
	Catalog Catalog
	// Usage reads summed usage for GET /usage.
	Usage UsageStore
	// Stored counts the bytes each key keeps in the artifact store; nil
	// for no quota.
	Stored StoredBytes
	// Sealer encrypts webhook URLs before they are stored, so their tokens
	// are not kept in the clear; nil stores them as given.
	Sealer interface{ Seal(plain string) string }
	Log    *slog.Logger
	Now    func() time.Time // time.Now when nil
}

// Service implements the task workflow.
type Service struct {
	deps  Deps
	cfg   Config
	holds holds
}

// New returns a service.
func New(deps Deps, cfg Config) *Service {
	if deps.Now == nil {
		deps.Now = time.Now
	}
	return &Service{deps: deps, cfg: cfg}
}

// SubmitGenerateText validates in, records a PENDING task and enqueues it.
func (s *Service) SubmitGenerateText(ctx context.Context, in task.GenerateTextInput) (*task.Record, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	if err := s.checkText(&in); err != nil {
		return nil, err
	}
	return s.submitText(ctx, in, nil)
}

// SubmitGenerateTextKeeping is SubmitGenerateText for a front that shows
// the request back as the client sent it (the Responses API's input items,
// instructions and tools): request is kept beside the task in the artifact
// store, under its input key, counted against the key's storage quota, and
// never in the record, which holds a summary only.
func (s *Service) SubmitGenerateTextKeeping(ctx context.Context, in task.GenerateTextInput, request []byte) (*task.Record, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	if err := s.checkText(&in); err != nil {
		return nil, err
	}
	if request == nil {
		request = []byte("{}")
	}
	return s.submitText(ctx, in, request)
}

// KeptRequest returns what SubmitGenerateTextKeeping kept for the task of
// rec, a record Get returned (the caller has it already, so Redis is not
// read again): ENOTFOUND for another caller's task, or one that kept
// nothing (or whose copy has expired).
func (s *Service) KeptRequest(ctx context.Context, rec *task.Record) ([]byte, error) {
	id := rec.ID
	if !auth.FromContext(ctx).CanSee(rec.Owner) {
		return nil, task.NotFound(id)
	}
	obj, err := s.deps.Artifacts.Open(ctx, task.InputKey(id))
	if errors.Is(err, artifact.ErrNotFound) {
		return nil, &task.Error{Code: task.ENOTFOUND, Message: fmt.Sprintf("task %s kept no copy of its request", id)}
	}
	if err != nil {
		return nil, task.Unavailable("the artifact store is unavailable", err)
	}
	defer obj.Close()
	b, err := io.ReadAll(io.LimitReader(obj, 64<<20))
	if err != nil {
		return nil, task.Unavailable("the artifact store is unavailable", err)
	}
	return b, nil
}

// storeTimeout bounds the Redis work of one API request, so that a client
// gets a 503 it can retry within two seconds instead of a hung request when
// Redis is down or unreachable.
const storeTimeout = 1500 * time.Millisecond

// submit writes the record first and then enqueues, in two round trips, so a
// worker never runs a task whose record does not exist. If the enqueue fails
// the record is removed (its id was never given out), and a worker that still
// gets the task, because the enqueue reached Redis after all, skips it.
func (s *Service) submit(ctx context.Context, typ task.Type, input, summary any) (*task.Record, error) {
	return s.submitWith(ctx, typ, input, summary, nil, nil)
}

// submitWith is submit with a step that stores the task's input (an upload)
// under its id before anything else, and the step that undoes it.
func (s *Service) submitWith(ctx context.Context, typ task.Type, input, summary any, keep func(id string) error, undo func(id string)) (*task.Record, error) {
	payload, err := json.Marshal(input)
	if err != nil {
		return nil, fmt.Errorf("service: encode %s input: %w", typ, err)
	}
	summaryJSON, err := json.Marshal(summary)
	if err != nil {
		return nil, fmt.Errorf("service: encode %s summary: %w", typ, err)
	}
	if err := s.checkModel(ctx, typ, input); err != nil {
		return nil, err
	}
	caller := auth.FromContext(ctx)
	rec := &task.Record{
		ID:        uuid.NewString(),
		Type:      typ,
		Status:    task.StatusPending,
		Owner:     caller.Owner(),
		Input:     summaryJSON,
		CreatedAt: s.deps.Now().UTC(),
	}
	var opts task.Options
	if o, ok := input.(interface{ SubmitOptions() task.Options }); ok {
		opts = o.SubmitOptions()
		if err := s.applyOptions(rec, opts, caller); err != nil {
			return nil, err
		}
	}
	pre, preset := presetOf(ctx)
	if preset {
		rec.ID, rec.PipelineID, rec.PipelineStep, rec.RetryOf = pre.id, pre.pipeline, pre.step, pre.retryOf
		if pre.webhook != nil && rec.Webhook == nil {
			rec.WebhookURL, rec.Webhook = pre.webhookURL, pre.webhook
		}
	}
	rec.Payload = s.keptPayload(payload, opts)
	if keep != nil {
		if err := keep(rec.ID); err != nil {
			undo(rec.ID)
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	limits := store.Limits{MaxUnfinished: s.unfinishedLimit(caller), DailyTokens: caller.DailyTokens, DailyCostUSD: caller.DailyCostUSD,
		ReserveTokens: estimateOf(input),
		// A task of a key's burst may wait in the key's line (see
		// store.Admission) when it can be queued from its record later:
		// not a high one, a scheduled one, or a step SIGANTENG queues.
		MayWait: rec.Priority != task.PriorityHigh && rec.ScheduledAt == nil && !preset && len(rec.Payload) > 0,
		Weight:  caller.Weight()}
	if err := s.deps.Records.Create(ctx, rec, limits); err != nil {
		if errors.Is(err, store.ErrExists) && preset {
			return s.existing(ctx, rec, payload)
		}
		if undo != nil {
			undo(rec.ID)
		}
		if lerr := limitError(err, limits, rec.CreatedAt); lerr != nil {
			return nil, lerr
		}
		return nil, task.Unavailable("the task store is unavailable; nothing was queued", err)
	}
	if rec.Waiting != nil {
		return rec, nil // in its key's line: an admitter queues it
	}
	var at time.Time
	if rec.ScheduledAt != nil {
		at = *rec.ScheduledAt
	}
	if err := s.deps.Queue.Enqueue(ctx, typ, rec.Priority, rec.ID, rec.Owner, auth.FromContext(ctx).Weight(), at, payload); err != nil {
		cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if derr := s.deps.Records.Delete(cleanup, rec.ID); derr != nil {
			s.deps.Log.Warn("could not remove the record of a task that was not queued; it stays PENDING, unknown to any client",
				"task_id", rec.ID, "err", derr)
		}
		if undo != nil {
			undo(rec.ID)
		}
		return nil, task.Unavailable("the queue is unavailable; nothing was queued", err)
	}
	return rec, nil
}

// schedule sets when a task given run_at or delay starts, within
// MaxScheduleAhead; one whose cancel_after comes first would never run.
func (s *Service) schedule(rec *task.Record, o task.Options) error {
	var at time.Time
	field := "run_at"
	switch {
	case o.Delay != nil:
		at, field = rec.CreatedAt.Add(time.Duration(*o.Delay)*time.Second), "delay"
	case o.RunAt != nil && o.RunAt.After(rec.CreatedAt):
		at = o.RunAt.UTC()
	default:
		return nil // now
	}
	if ahead := s.cfg.MaxScheduleAhead; ahead > 0 && at.Sub(rec.CreatedAt) > ahead {
		return task.Invalid(field, fmt.Sprintf("a task may be scheduled at most %s ahead (MAX_SCHEDULE_AHEAD)", ahead))
	}
	if rec.CancelAt != nil && !rec.CancelAt.After(at) {
		return task.Invalid("cancel_after", "cancel_after ends the task before its scheduled start; it counts from the submit")
	}
	rec.ScheduledAt = &at
	return nil
}

// deadline sets when the whole task must have ended: after its submit,
// and after its scheduled start.
func deadline(rec *task.Record, o task.Options) error {
	var at time.Time
	field := "deadline"
	switch {
	case o.DeadlineAfter != nil:
		at, field = rec.CreatedAt.Add(time.Duration(*o.DeadlineAfter)*time.Second), "deadline_after"
	case o.Deadline != nil:
		at = o.Deadline.UTC()
	default:
		return nil
	}
	switch {
	case !at.After(rec.CreatedAt):
		return task.Invalid(field, "the deadline has passed already")
	case rec.ScheduledAt != nil && !at.After(*rec.ScheduledAt):
		return task.Invalid(field, "the deadline comes before the task's scheduled start")
	}
	rec.DeadlineAt = &at
	return nil
}

// applyOptions checks what every submit may carry and writes it on rec.
func (s *Service) applyOptions(rec *task.Record, o task.Options, caller auth.Caller) error {
	if err := o.Validate(); err != nil {
		return err
	}
	if o.CancelAfter != nil {
		at := rec.CreatedAt.Add(time.Duration(*o.CancelAfter) * time.Second)
		rec.CancelAt = &at
	}
	if err := s.schedule(rec, o); err != nil {
		return err
	}
	rec.Metadata = o.Metadata
	if err := deadline(rec, o); err != nil {
		return err
	}
	if o.Priority == task.PriorityHigh && !caller.MayUseHighPriority() {
		return task.Invalid("priority", "this API key may not submit priority high work; an operator gives the right with keys create --high-priority")
	}
	if o.Priority != task.PriorityNormal {
		rec.Priority = o.Priority
	}
	if o.Webhook != "" {
		if !s.cfg.WebhooksEnabled {
			return task.Invalid("webhook", "webhooks are off on this server: the operator has not set WEBHOOK_SECRET, which signs them")
		}
		rec.WebhookURL = o.Webhook
		if s.deps.Sealer != nil {
			rec.WebhookURL = s.deps.Sealer.Seal(o.Webhook) // only workers open it, to deliver
		}
		rec.Webhook = &task.WebhookInfo{URL: task.ShownWebhookURL(o.Webhook), Events: o.Events()}
	}
	return nil
}

// limitError is the 429 for a submit refused by one of limits, naming it;
// nil for any other error.
func limitError(err error, limits store.Limits, now time.Time) error {
	untilTomorrow := now.UTC().Truncate(24 * time.Hour).Add(24 * time.Hour).Sub(now)
	switch {
	case errors.Is(err, store.ErrTooManyUnfinished):
		return &task.Error{Code: task.ELIMITED, RetryAfter: 5 * time.Second,
			Message: fmt.Sprintf("this API key has %d unfinished tasks, its limit; submit more as they end", limits.MaxUnfinished)}
	case errors.Is(err, store.ErrBudgetReserved):
		return &task.Error{Code: task.ELIMITED, RetryAfter: 5 * time.Second,
			Message: fmt.Sprintf("what is left of this API key's daily budget of %d tokens is held by its calls still running; try again as they end", limits.DailyTokens)}
	case errors.Is(err, store.ErrTokenBudget):
		return &task.Error{Code: task.ELIMITED, RetryAfter: untilTomorrow,
			Message: fmt.Sprintf("this API key has used its daily budget of %d tokens; it renews at 00:00 UTC", limits.DailyTokens)}
	case errors.Is(err, store.ErrCostBudget):
		return &task.Error{Code: task.ELIMITED, RetryAfter: untilTomorrow,
			Message: fmt.Sprintf("this API key has used its daily budget of %g US dollars; it renews at 00:00 UTC", limits.DailyCostUSD)}
	}
	return nil
}

// unfinishedLimit is how many unfinished tasks caller may have; callers
// without a key (an open API) have no limit.
func (s *Service) unfinishedLimit(caller auth.Caller) int {
	switch {
	case caller.KeyID == "":
		return 0
	case caller.MaxUnfinished > 0:
		return caller.MaxUnfinished
	}
	return s.cfg.MaxUnfinishedPerKey
}

// checkText applies MAX_OUTPUT_TOKENS to in and refuses what the LLM (every
// deployment of its model, with a routing file) cannot honour, naming the
// field and the provider.
func (s *Service) checkText(in *task.GenerateTextInput) error {
	if err := s.capTokens(&in.MaxTokens); err != nil {
		return err
	}
	return provider.CheckText(s.deps.Providers.LLM, textRequest(*in))
}

// capTokens applies MAX_OUTPUT_TOKENS to a request's max_tokens.
func (s *Service) capTokens(n **int) error {
	limit := s.cfg.MaxOutputTokens
	switch {
	case limit == 0:
	case *n == nil:
		*n = &limit
	case **n > limit:
		return task.Invalid("max_tokens", fmt.Sprintf("max_tokens must be at most %d on this server (MAX_OUTPUT_TOKENS)", limit))
	}
	return nil
}

// Get returns a task's record. Another caller's task is, to this caller,
// unknown: the same 404, so ids cannot be probed.
func (s *Service) Get(ctx context.Context, id string) (*task.Record, error) {
	rec, err := s.GetLinked(ctx, id)
	if err != nil || rec.ResultKey == "" {
		return rec, err
	}
	if rec.Result, err = s.resultOf(ctx, rec); err != nil {
		return nil, err
	}
	rec.ResultURL = ""
	return rec, nil
}

// GetLinked is Get that leaves a result kept in the artifact store (one
// larger than LARGE_RESULT_BYTES) out, naming where it is read instead:
// one Redis read, whatever the result's size.
func (s *Service) GetLinked(ctx context.Context, id string) (*task.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	rec, err := s.deps.Records.Get(ctx, id)
	if err != nil && task.CodeOf(err) != task.ENOTFOUND {
		return nil, task.Unavailable("the task store is unavailable", err)
	}
	if err == nil && !auth.FromContext(ctx).CanSee(rec.Owner) {
		return nil, task.NotFound(id)
	}
	return rec, err
}

// Cancel revokes a task: one not yet started never runs, a running one has
// its provider call cancelled; neither is retried. Cancelling a task that
// has ended changes nothing. Either way the answer is the record.
func (s *Service) Cancel(ctx context.Context, id string) (*task.Record, error) {
	rec, err := s.Get(ctx, id)
	if err != nil { // another caller's task is unknown
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	err = s.deps.Records.Revoked(ctx, id, "cancelled by the client", s.deps.Now().UTC())
	switch {
	case err == nil && hasUpload(rec.Type):
		s.dropInput(ctx, id, rec.Owner) // nothing will read an upload of a revoked task
	case err == nil:
	case errors.Is(err, store.ErrFinished):
	case task.CodeOf(err) == task.ENOTFOUND:
		return nil, err
	default:
		return nil, task.Unavailable("the task store is unavailable", err)
	}
	return s.Get(ctx, id)
}

// GenerateText runs generate_text now, bounded by the sync timeout.
func (s *Service) GenerateText(ctx context.Context, in task.GenerateTextInput) (*task.TextResult, error) {
	return s.runText(ctx, in, nil)
}

// StreamText runs generate_text now, handing onText the text as the
// provider produces it (all at once from a provider that cannot stream).
// Errors before the first piece are as GenerateText's; after it, the
// caller has begun its answer and reports the error in its own stream.
func (s *Service) StreamText(ctx context.Context, in task.GenerateTextInput, onText func(string)) (*task.TextResult, error) {
	return s.runText(ctx, in, onText)
}

func (s *Service) runText(ctx context.Context, in task.GenerateTextInput, onText func(string)) (*task.TextResult, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	if err := s.checkText(&in); err != nil {
		return nil, err
	}
	// Inline images are checked as a queued task's are (size, sniffed
	// type), though they go to the provider as they came.
	if _, err := s.inlineImages(in.Messages); err != nil {
		return nil, err
	}
	return syncCall(s, ctx, task.TypeGenerateText, in, func(ctx context.Context) (*task.TextResult, error) {
		return s.produceText(ctx, in, onText)
	})
}

// generateTextKind runs queued generate_text, with its stored images put
// back inline, and streams its text to progress when the task asked.
var generateTextKind = kind{typ: task.TypeGenerateText,
	run: func(s *Service, ctx context.Context, id string, payload []byte, progress Progress) (Outcome, error) {
		stored := false
		out, err := execute(ctx, payload, task.TypeGenerateText, s.deps.Providers.LLM, func(q queuedText) (any, error) {
			stored = q.StoredImages > 0
			in, err := s.loadImages(ctx, id, q)
			if err != nil {
				return nil, err
			}
			if !in.Stream || progress == nil {
				return s.generateText(ctx, in)
			}
			return s.produceText(ctx, in, progress.Text)
		})
		out.Discard = stored
		return out, err
	}}

// produceText generates in's text, handing it to onText (when not nil) as
// the provider produces it, or all at once from a provider that cannot
// stream.
func (s *Service) produceText(ctx context.Context, in task.GenerateTextInput, onText func(string)) (*task.TextResult, error) {
	if onText == nil {
		return s.generateText(ctx, in)
	}
	if streamer, ok := s.deps.Providers.LLM.(provider.TextStreamer); ok {
		return s.streamText(ctx, streamer, in, onText)
	}
	out, err := s.generateText(ctx, in)
	if err == nil {
		onText(out.Text)
	}
	return out, err
}

func (s *Service) generateText(ctx context.Context, in task.GenerateTextInput) (*task.TextResult, error) {
	llm := s.deps.Providers.LLM
	req := textRequest(in)
	out, err := llm.GenerateText(provider.WithResponseLimit(ctx, provider.TextResponseLimit(req.MaxTokens, false)), req)
	if err != nil {
		return nil, err
	}
	return textResult(llm, out), nil
}

// streamText is generateText with the text handed to onText as it comes.
func (s *Service) streamText(ctx context.Context, llm provider.TextStreamer, in task.GenerateTextInput, onText func(string)) (*task.TextResult, error) {
	req := textRequest(in)
	out, err := llm.StreamText(provider.WithResponseLimit(ctx, provider.TextResponseLimit(req.MaxTokens, true)), req, onText)
	if err != nil {
		return nil, err
	}
	return textResult(s.deps.Providers.LLM, out), nil
}

func textRequest(in task.GenerateTextInput) provider.TextRequest {
	req := provider.TextRequest{Prompt: in.Prompt, System: in.System, Messages: in.Messages, Model: in.Model, Temperature: in.Temperature,
		Tools: in.Tools, ToolChoice: in.ToolChoice, ResponseFormat: in.ResponseFormat, Stop: in.Stop, Seed: in.Seed, TopP: in.TopP,
		PresencePenalty: in.PresencePenalty, FrequencyPenalty: in.FrequencyPenalty, User: in.User}
	if in.MaxTokens != nil {
		req.MaxTokens = *in.MaxTokens
	}
	return req
}

func textResult(p interface{ Name() string }, out provider.TextResponse) *task.TextResult {
	return &task.TextResult{
		Route:        out.Route,
		Text:         out.Text,
		Model:        out.Model,
		Provider:     servedBy(out.Route, p),
		FinishReason: out.FinishReason,
		ToolCalls:    out.ToolCalls,
		Usage: task.Usage{
			PromptTokens:     out.Usage.PromptTokens,
			CompletionTokens: out.Usage.CompletionTokens,
			TotalTokens:      out.Usage.TotalTokens,
		},
	}
}

// Delete removes a task's record, first ending it (REVOKED) if it was
// unfinished, so that a running attempt stops; ENOTFOUND for another
// caller's task.
func (s *Service) Delete(ctx context.Context, id string) error {
	rec, err := s.Cancel(ctx, id)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if err := s.deps.Records.Delete(ctx, id); err != nil {
		return task.Unavailable("the task store is unavailable", err)
	}
	s.dropInput(ctx, id, rec.Owner) // an upload, or a kept request
	s.dropImages(ctx, id, rec.Owner, storedImagesOf(rec))
	if rec.ResultKey != "" {
		if err := s.deps.Artifacts.Delete(ctx, rec.ResultKey); err != nil {
			s.deps.Log.Warn("a deleted task's large result was not removed; the artifact sweep will", "task_id", id, "err", err)
		}
	}
	return nil
}

// textToSpeechKind streams a queued task's speech into the artifact store.
var textToSpeechKind = runs(task.TypeTextToSpeech, func(p Providers) named { return p.TTS },
	func(s *Service, ctx context.Context, id string, in task.TextToSpeechInput, _ Progress) (any, error) {
		return s.textToSpeech(ctx, id, in)
	})

// SubmitTextToSpeech validates in, records a PENDING task and enqueues it.
func (s *Service) SubmitTextToSpeech(ctx context.Context, in task.TextToSpeechInput) (*task.Record, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	if err := s.checkStored(ctx); err != nil { // the speech will be stored
		return nil, err
	}
	return s.submit(ctx, task.TypeTextToSpeech, in, in.Summary())
}

// Audio is speech produced by a synchronous call; the caller closes Body.
type Audio struct {
	Body        io.ReadCloser
	ContentType string
}

// TextToSpeech starts speech now. The provider has answered when it returns,
// so errors come before any audio; reading Body is bounded by ctx.
func (s *Service) TextToSpeech(ctx context.Context, in task.TextToSpeechInput) (*Audio, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	held, err := s.checkSync(ctx, task.TypeTextToSpeech, in)
	if err != nil {
		return nil, err
	}
	tctx, cancel := s.syncContext(ctx)
	audio, err := s.deps.Providers.TTS.Synthesize(tctx, speechRequest(in))
	if err != nil {
		s.settleSync(tctx, held, true, nil, nil, in)
		cancel()
		return nil, s.syncError(tctx, err)
	}
	s.settleSync(tctx, held, false, audio.Route, nil, in)
	return &Audio{Body: &cancelOnClose{ReadCloser: audio.Body, cancel: cancel}, ContentType: audio.ContentType}, nil
}

func speechRequest(in task.TextToSpeechInput) provider.SpeechRequest {
	req := provider.SpeechRequest{Text: in.Text, Voice: in.Voice, Format: in.Format, Model: in.Model}
	if in.Speed != nil {
		req.Speed = *in.Speed
	}
	return req
}

// cancelOnClose ends a synchronous call's context once its body is read.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	defer c.cancel()
	return c.ReadCloser.Close()
}

// OpenArtifact returns a finished task's artifact for download: ENOTFOUND
// for an unknown task or one without an artifact, ECONFLICT for one not yet
// finished.
func (s *Service) OpenArtifact(ctx context.Context, id string) (task.Artifact, artifact.Object, error) {
	rec, err := s.Get(ctx, id)
	if err != nil {
		return task.Artifact{}, nil, err
	}
	if !rec.Status.Terminal() {
		return task.Artifact{}, nil, &task.Error{Code: task.ECONFLICT,
			Message: fmt.Sprintf("task %s is %s; its artifact exists once it is SUCCESS", id, rec.Status)}
	}
	art, ok := task.ArtifactOf(rec)
	if !ok {
		return task.Artifact{}, nil, &task.Error{Code: task.ENOTFOUND, Message: fmt.Sprintf("task %s has no artifact", id)}
	}
	obj, err := s.deps.Artifacts.Open(ctx, id)
	if errors.Is(err, artifact.ErrNotFound) {
		return task.Artifact{}, nil, &task.Error{Code: task.ENOTFOUND, Message: fmt.Sprintf("the artifact of task %s has expired", id)}
	}
	if err != nil {
		return task.Artifact{}, nil, task.Unavailable("the artifact store is unavailable", err)
	}
	return art, obj, nil
}

// Outcome is what a queued task produced.
type Outcome struct {
	Provider   string
	Deployment string // with a routing file: the deployment that served it
	Result     json.RawMessage
	// ResultKey names the artifact that holds a result larger than
	// LARGE_RESULT_BYTES, instead of Result.
	ResultKey string
	Usage     *task.Metered // on success
	// Calls are the routed calls the attempt made, its failed ones too;
	// their Attempt is the caller's to set.
	Calls []task.Call
	// Discard says the task keeps inputs (images sent inline) that the
	// caller discards, with DiscardInput, once the result is recorded.
	Discard bool
}

// Progress receives what a running task produces before it ends.
type Progress interface {
	// Text is the next piece of a streamed generate_text.
	Text(piece string)
}

// input is what every task input can do.
type input interface{ Validate() error }

// metering is implemented by results, and by inputs whose cost the input
// tells (speech is priced by the characters spoken).
type metering interface{ Metering() task.Metered }

// routed is implemented by results that carry what served them.
type routed interface{ RouteOf() *task.Route }

// routeOf is result's route; nil when no router served it.
func routeOf(result any) *task.Route {
	if r, ok := result.(routed); ok {
		return r.RouteOf()
	}
	return nil
}

// execute decodes and validates a payload, runs it, and encodes the result
// with what it consumed, priced at the serving deployment's prices, and the
// routed calls it made (a failure's too).
func execute[I input](ctx context.Context, payload []byte, typ task.Type, p interface{ Name() string }, run func(I) (any, error)) (Outcome, error) {
	var in I
	if err := json.Unmarshal(payload, &in); err != nil {
		return Outcome{}, &task.Error{Code: task.EINVALID, Message: fmt.Sprintf("unreadable %s payload", typ), Err: err}
	}
	if err := in.Validate(); err != nil {
		return Outcome{}, err
	}
	result, err := run(in)
	if err != nil {
		return Outcome{Provider: p.Name(), Calls: provider.CallsOf(err)}, err
	}
	b, err := json.Marshal(result)
	if err != nil {
		return Outcome{}, fmt.Errorf("service: encode %s result: %w", typ, err)
	}
	route := routeOf(result)
	out := Outcome{Provider: servedBy(route, p), Result: b}
	if route != nil {
		out.Deployment, out.Calls = route.Deployment, route.Calls
	}
	used := meter(route, result, in)
	out.Usage = &used
	return out, nil
}

// meter is what a call consumed, from its result or else its input, priced
// at the serving deployment's prices (route, when a router served it).
func meter(route *task.Route, result, input any) task.Metered {
	var used task.Metered
	if m, ok := result.(metering); ok {
		used = m.Metering()
	} else if m, ok := input.(metering); ok {
		used = m.Metering()
	}
	if route != nil {
		if cost, ok := route.Price.Cost(used); ok {
			usd := task.USD(cost)
			used.CostUSD = &usd
		}
	}
	return used
}

// servedBy names the provider that served a call: the deployment's when a
// router chose one (route), else p's own name.
func servedBy(route *task.Route, p interface{ Name() string }) string {
	if route != nil {
		return route.Provider
	}
	return p.Name()
}

// checkModel refuses, with a 422 naming the valid ones, a model the routing
// file does not name, or one the caller's key may not use: to that key, it
// does not exist.
func (s *Service) checkModel(ctx context.Context, typ task.Type, input any) error {
	named, ok := input.(interface{ ModelName() string })
	if s.deps.Models == nil || !ok {
		return nil
	}
	model, routed, err := s.deps.Models.Resolve(string(typ), named.ModelName())
	switch {
	case err != nil:
		return task.Invalid("model", err.Error())
	case !routed:
		return nil
	}
	if allowed := auth.FromContext(ctx).Models; len(allowed) > 0 && !slices.Contains(allowed, model) {
		return task.Invalid("model", fmt.Sprintf("this API key may not use model %q; it may use: %s", model, strings.Join(allowed, ", ")))
	}
	return nil
}

// syncContext bounds a synchronous call by SYNC_TIMEOUT, and names its
// caller's key, whose share of a saturated provider it waits in.
func (s *Service) syncContext(ctx context.Context) (context.Context, context.CancelFunc) {
	caller := auth.FromContext(ctx)
	return context.WithTimeout(provider.WithFlowWeight(provider.WithFlowKey(ctx, caller.Owner()), caller.Weight()), s.cfg.SyncTimeout)
}

// textToSpeech streams the provider's audio into the artifact store.
func (s *Service) textToSpeech(ctx context.Context, id string, in task.TextToSpeechInput) (*task.AudioResult, error) {
	tts := s.deps.Providers.TTS
	audio, err := tts.Synthesize(ctx, speechRequest(in))
	if err != nil {
		return nil, err
	}
	defer audio.Body.Close()
	served := servedBy(audio.Route, tts)
	size, err := s.deps.Artifacts.Put(ctx, id, audio.Body)
	if err != nil {
		if errors.Is(err, provider.ErrResponseTooLarge) {
			return nil, provider.TooLarge(served)
		}
		if ctx.Err() != nil {
			return nil, provider.ErrorFromTransport(ctx, served, ctx.Err())
		}
		// A broken stream from the provider, or a full disk: worth a retry.
		return nil, &provider.Error{Provider: served, Kind: provider.KindUnavailable,
			Message: "the audio could not be stored: " + err.Error()}
	}
	s.chargeStored(ctx, id, id, size)
	return &task.AudioResult{
		Artifact: task.Artifact{URL: task.ArtifactURL(id), ContentType: audio.ContentType, Size: size},
		Provider: served, Model: audio.Model, Voice: audio.Voice, Format: audio.Format, Route: audio.Route,
	}, nil
}

// syncError maps a failure of a synchronous call to the error the client sees.
func (s *Service) syncError(ctx context.Context, err error) error {
	var perr *provider.Error
	var wait *provider.WaitError
	switch {
	case errors.As(err, &wait) || errors.As(err, &perr):
		v := Classify(err, "")
		code, ok := syncCodes[v.Failure.Code]
		if !ok {
			code = task.EPROVIDER
		}
		e := &task.Error{Code: code, Message: v.Failure.Message, Err: err}
		if e.Code == task.EUNAVAILABLE || e.Code == task.ELIMITED {
			e.RetryAfter = v.RetryAfter
			if limit := s.cfg.RetryMaxDelay; limit > 0 {
				e.RetryAfter = min(e.RetryAfter, limit)
			}
		}
		return e
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		return &task.Error{Code: task.ETIMEOUT, Message: "the provider did not answer within SYNC_TIMEOUT; use POST /background/... for long work", Err: err}
	case ctx.Err() != nil:
		return &task.Error{Code: task.EUNAVAILABLE, Message: "the request was cancelled", Err: err}
	}
	return err
}

// keptPayload is what a task's record keeps of its queued input, so that
// it can be retried after it fails: the input without its webhook URL
// (kept sealed apart), and nothing past LARGE_RESULT_BYTES (such a task is
// not retried; its record says so). The store drops it on success.
func (s *Service) keptPayload(payload []byte, o task.Options) json.RawMessage {
	limit := s.cfg.LargeResultBytes
	if limit <= 0 {
		limit = 256 << 10
	}
	if len(payload) > limit {
		return nil
	}
	if o.Webhook == "" {
		return payload
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(payload, &m) != nil {
		return nil
	}
	delete(m, "webhook")
	delete(m, "webhook_events")
	out, err := json.Marshal(m)
	if err != nil {
		return nil
	}
	return out
}

// existing answers a submit under a preset id whose task exists already
// (an earlier try of the same pipeline step or retry created it): the task
// is queued again in case that try stopped before queuing it (the queue
// keeps one message per id), unless it has ended.
func (s *Service) existing(ctx context.Context, rec *task.Record, payload []byte) (*task.Record, error) {
	cur, err := s.deps.Records.Get(ctx, rec.ID)
	if err != nil {
		return nil, task.Unavailable("the task store is unavailable", err)
	}
	if cur.Status.Terminal() {
		return cur, nil
	}
	if err := s.enqueueAgain(ctx, cur, auth.FromContext(ctx).Weight(), payload); err != nil {
		return nil, task.Unavailable("the queue is unavailable", err)
	}
	return cur, nil
}

// enqueueAgain queues a recorded task, at its scheduled time if it has one;
// the queue keeps one message per id, so a task queued already is not
// queued twice.
func (s *Service) enqueueAgain(ctx context.Context, rec *task.Record, weight int, payload []byte) error {
	var at time.Time
	if rec.ScheduledAt != nil {
		at = *rec.ScheduledAt
	}
	return s.deps.Queue.Enqueue(ctx, rec.Type, rec.Priority, rec.ID, rec.Owner, weight, at, payload)
}
