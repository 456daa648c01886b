// Package service is the orchestrator between the API and the workers: it
// validates requests, writes task records, enqueues work, runs synchronous
// calls, and executes queued tasks. It knows providers only by interface.
package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/task"
)

// Records is the task record store as the service uses it.
type Records interface {
	// Create writes a new record.
	Create(ctx context.Context, rec *task.Record) error
	// Get returns a record, or a task.ENOTFOUND error.
	Get(ctx context.Context, id string) (*task.Record, error)
	// Delete removes a record.
	Delete(ctx context.Context, id string) error
}

// Enqueuer puts work on the queue.
type Enqueuer interface {
	Enqueue(ctx context.Context, typ task.Type, id string, payload []byte) error
}

// Providers are the adapters for each capability.
type Providers struct {
	LLM provider.LLM
}

// Config holds the service's settings.
type Config struct {
	SyncTimeout time.Duration // bound on synchronous calls
}

// Service implements the task workflow.
type Service struct {
	records   Records
	queue     Enqueuer
	providers Providers
	cfg       Config
	log       *slog.Logger
	now       func() time.Time
}

// New returns a service. now may be nil for time.Now.
func New(records Records, queue Enqueuer, providers Providers, cfg Config, log *slog.Logger, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{records: records, queue: queue, providers: providers, cfg: cfg, log: log, now: now}
}

// SubmitGenerateText validates in, records a PENDING task and enqueues it.
func (s *Service) SubmitGenerateText(ctx context.Context, in task.GenerateTextInput) (*task.Record, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	return s.submit(ctx, task.TypeGenerateText, in, in.Summary())
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
	payload, err := json.Marshal(input)
	if err != nil {
		return nil, fmt.Errorf("service: encode %s input: %w", typ, err)
	}
	summaryJSON, err := json.Marshal(summary)
	if err != nil {
		return nil, fmt.Errorf("service: encode %s summary: %w", typ, err)
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	rec := &task.Record{
		ID:        uuid.NewString(),
		Type:      typ,
		Status:    task.StatusPending,
		Input:     summaryJSON,
		CreatedAt: s.now().UTC(),
	}
	if err := s.records.Create(ctx, rec); err != nil {
		return nil, task.Unavailable("the task store is unavailable; nothing was queued", err)
	}
	if err := s.queue.Enqueue(ctx, typ, rec.ID, payload); err != nil {
		cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if derr := s.records.Delete(cleanup, rec.ID); derr != nil {
			s.log.Warn("could not remove the record of a task that was not queued; it stays PENDING, unknown to any client",
				"task_id", rec.ID, "err", derr)
		}
		return nil, task.Unavailable("the queue is unavailable; nothing was queued", err)
	}
	return rec, nil
}

// Get returns a task's record.
func (s *Service) Get(ctx context.Context, id string) (*task.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	rec, err := s.records.Get(ctx, id)
	if err != nil && task.CodeOf(err) != task.ENOTFOUND {
		return nil, task.Unavailable("the task store is unavailable", err)
	}
	return rec, err
}

// GenerateText runs generate_text now, bounded by the sync timeout.
func (s *Service) GenerateText(ctx context.Context, in task.GenerateTextInput) (*task.TextResult, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SyncTimeout)
	defer cancel()
	out, err := s.generateText(ctx, in)
	if err != nil {
		return nil, syncError(ctx, err)
	}
	return out, nil
}

func (s *Service) generateText(ctx context.Context, in task.GenerateTextInput) (*task.TextResult, error) {
	llm := s.providers.LLM
	req := provider.TextRequest{Prompt: in.Prompt, System: in.System, Model: in.Model, Temperature: in.Temperature}
	if in.MaxTokens != nil {
		req.MaxTokens = *in.MaxTokens
	}
	out, err := llm.GenerateText(ctx, req)
	if err != nil {
		return nil, err
	}
	return &task.TextResult{
		Text:         out.Text,
		Model:        out.Model,
		Provider:     llm.Name(),
		FinishReason: out.FinishReason,
		Usage: task.Usage{
			PromptTokens:     out.Usage.PromptTokens,
			CompletionTokens: out.Usage.CompletionTokens,
			TotalTokens:      out.Usage.TotalTokens,
		},
	}, nil
}

// Outcome is what a queued task produced.
type Outcome struct {
	Provider string
	Result   json.RawMessage
}

// Execute runs one queued task. Its errors are provider errors, a
// task.EINVALID error for a payload that can never run, or ctx's error.
func (s *Service) Execute(ctx context.Context, typ task.Type, payload []byte) (Outcome, error) {
	switch typ {
	case task.TypeGenerateText:
		var in task.GenerateTextInput
		if err := json.Unmarshal(payload, &in); err != nil {
			return Outcome{}, &task.Error{Code: task.EINVALID, Message: "unreadable generate_text payload", Err: err}
		}
		if err := in.Validate(); err != nil {
			return Outcome{}, err
		}
		out, err := s.generateText(ctx, in)
		if err != nil {
			return Outcome{Provider: s.providers.LLM.Name()}, err
		}
		return encodeOutcome(out.Provider, out)
	}
	return Outcome{}, &task.Error{Code: task.EINVALID, Message: fmt.Sprintf("unknown task type %q", typ)}
}

func encodeOutcome(providerName string, result any) (Outcome, error) {
	b, err := json.Marshal(result)
	if err != nil {
		return Outcome{}, fmt.Errorf("service: encode result: %w", err)
	}
	return Outcome{Provider: providerName, Result: b}, nil
}

// syncError maps a failure of a synchronous call to the error the client sees.
func syncError(ctx context.Context, err error) error {
	var perr *provider.Error
	switch {
	case errors.As(err, &perr):
		return providerError(perr)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		return &task.Error{Code: task.ETIMEOUT, Message: "the provider did not answer within SYNC_TIMEOUT; use POST /background/... for long work", Err: err}
	case ctx.Err() != nil:
		return &task.Error{Code: task.EUNAVAILABLE, Message: "the request was cancelled", Err: err}
	}
	return err
}

func providerError(perr *provider.Error) *task.Error {
	msg := perr.Error()
	switch perr.Kind {
	case provider.KindTimeout:
		return &task.Error{Code: task.ETIMEOUT, Message: msg, Err: perr}
	case provider.KindRateLimited, provider.KindUnavailable, provider.KindBadResponse:
		return &task.Error{Code: task.EUNAVAILABLE, Message: msg, RetryAfter: perr.RetryAfter, Err: perr}
	case provider.KindRejected:
		return &task.Error{Code: task.EREJECTED, Message: msg, Err: perr}
	}
	return &task.Error{Code: task.EPROVIDER, Message: msg, Err: perr}
}
