// Package batch runs the Batch API's batches: it validates a batch's input
// file, submits its lines as ordinary tasks a window at a time (so a batch
// of 50,000 lines holds at most a window of them in Redis and none in
// memory), writes each finished line to the output or error file exactly
// once, and ends the batch completed, failed, cancelled or expired. Its
// runner is a queued step that goes on where the last one stopped, so a
// killed worker leaves a batch that finishes.
package batch

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/siganteng/siganteng/internal/artifact"
	"github.com/siganteng/siganteng/internal/auth"
	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
)

// Codec translates a batch's lines: a line's body as a task's input, and a
// task's end as the line's answer. The OpenAI-compatible front implements
// it, so a line means what the same request means on /v1.
type Codec interface {
	// Input reads a line's body for endpoint: a task.GenerateTextInput or
	// a task.EmbedInput; task.EINVALID errors name the field.
	Input(endpoint string, body json.RawMessage) (any, error)
	// Answer is a successful task's result as endpoint's response body.
	Answer(endpoint string, rec *task.Record) (json.RawMessage, error)
	// Failure is a failed task's (or refused line's) status and error body.
	Failure(err error) (int, json.RawMessage)
}

// Store is what the runner keeps in Redis (see store.Store).
type Store interface {
	GetBatch(ctx context.Context, id string) (*task.Batch, task.BatchProgress, error)
	SaveBatch(ctx context.Context, b task.Batch) error
	InFlight(ctx context.Context, batchID string) (map[string]string, error)
	Admit(ctx context.Context, batchID string, entries map[string]string, p task.BatchProgress) error
	CommitChunk(ctx context.Context, batchID string, c store.Chunk) (bool, error)
	GetMany(ctx context.Context, ids []string) ([]*task.Record, error)
	Statuses(ctx context.Context, ids []string) ([]task.Status, error)
	// DeleteMany removes records of tasks that have ended.
	DeleteMany(ctx context.Context, ids []string) error
	GetFile(ctx context.Context, id string) (*task.File, error)
	CreateFile(ctx context.Context, f task.File) error
}

// Tasks submits and ends the lines' tasks (the service).
type Tasks interface {
	SubmitGenerateText(ctx context.Context, in task.GenerateTextInput) (*task.Record, error)
	SubmitEmbed(ctx context.Context, in task.EmbedInput) (*task.Record, error)
	// Cancel revokes a task; Delete revokes and removes one.
	Cancel(ctx context.Context, id string) (*task.Record, error)
	Delete(ctx context.Context, id string) error
}

// Artifacts holds input files, chunks and output files.
type Artifacts interface {
	Put(ctx context.Context, key string, r io.Reader) (int64, error)
	Open(ctx context.Context, key string) (artifact.Object, error)
	Delete(ctx context.Context, key string) error
}

// Announcer queues a webhook event to a sealed URL (webhook.Announcer).
type Announcer interface {
	Announce(ctx context.Context, id, about, event, sealedURL string, body []byte) error
}

// Steps queues the runner's next step.
type Steps interface {
	EnqueueBatchStep(ctx context.Context, batchID string, step int, delay time.Duration) error
}

// Config sizes the runner.
type Config struct {
	// Window is how many of a batch's lines may be in flight at once.
	Window int
	// MaxLines bounds a batch's input file.
	MaxLines int
	// StepTime is how long one step runs before it queues the next.
	StepTime time.Duration
	// MaxLineBytes bounds one line of an input file.
	MaxLineBytes int
}

// chunkEvery is how long a runner waits for lines to end before it writes
// the few that have as a chunk.
const chunkEvery = 250 * time.Millisecond

// lastChunk is when the runner last wrote a chunk of batch id.
func (r *Runner) lastChunk(id string) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.chunkAt[id]
}

func (r *Runner) chunked(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.chunkAt) > 10000 {
		clear(r.chunkAt)
	}
	r.chunkAt[id] = time.Now()
}

// Runner runs batches, one step at a time.
type Runner struct {
	mu        sync.Mutex
	chunkAt   map[string]time.Time
	cfg       Config
	store     Store
	tasks     Tasks
	artifacts Artifacts
	steps     Steps
	codec     Codec
	announcer Announcer
	log       *slog.Logger
	now       func() time.Time
}

// New returns a runner. now may be nil for time.Now.
func New(cfg Config, st Store, tasks Tasks, artifacts Artifacts, steps Steps, codec Codec, log *slog.Logger, now func() time.Time) *Runner {
	if cfg.Window <= 0 {
		cfg.Window = 256
	}
	if cfg.MaxLines <= 0 {
		cfg.MaxLines = 50000
	}
	if cfg.StepTime <= 0 {
		cfg.StepTime = time.Minute
	}
	if cfg.MaxLineBytes <= 0 {
		cfg.MaxLineBytes = 16 << 20
	}
	if now == nil {
		now = time.Now
	}
	return &Runner{chunkAt: map[string]time.Time{}, cfg: cfg, store: st, tasks: tasks, artifacts: artifacts, steps: steps, codec: codec, log: log, now: now}
}

// WithWebhooks makes the runner post each batch's end to the batch's
// webhook, if it has one.
func (r *Runner) WithWebhooks(a Announcer) *Runner {
	r.announcer = a
	return r
}

// StepPayload is a queued step.
type StepPayload struct {
	BatchID string `json:"batch_id"`
	Step    int    `json:"step"`
}

// Step runs one step of a batch: for up to StepTime it validates, admits,
// collects and finally ends the batch, then queues the next step unless
// the batch has ended. An error makes the queue run the step again.
func (r *Runner) Step(ctx context.Context, payload []byte) error {
	var p StepPayload
	if err := json.Unmarshal(payload, &p); err != nil {
		r.log.Error("batch step with a payload that is not one; dropped", "err", err)
		return nil
	}
	// The step's length is a bound on this run, measured on the wall
	// clock; what the batch is due by is measured on r.now.
	began := time.Now()
	idle := 10 * time.Millisecond
	for {
		b, prog, err := r.store.GetBatch(ctx, p.BatchID)
		if task.CodeOf(err) == task.ENOTFOUND {
			return nil
		}
		if err != nil {
			return err
		}
		if b.Status.Ended() {
			return nil
		}
		moved, err := r.advance(ctx, b, prog)
		if err != nil {
			return fmt.Errorf("batch %s: %w", b.ID, err)
		}
		if moved {
			idle = 10 * time.Millisecond
		} else {
			idle = min(idle*2, 100*time.Millisecond)
		}
		if time.Since(began) >= r.cfg.StepTime {
			return r.steps.EnqueueBatchStep(ctx, p.BatchID, p.Step+1, 0)
		}
		if !moved {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(idle):
			}
		}
	}
}

// advance does what the batch needs next, once; moved tells whether
// anything changed.
func (r *Runner) advance(ctx context.Context, b *task.Batch, p task.BatchProgress) (bool, error) {
	now := r.now().UTC().Truncate(time.Second)
	cancelled := b.Status == task.BatchCancelling
	expired := !now.Before(b.ExpiresAt)
	if b.Status == task.BatchValidating && !cancelled && !expired {
		return true, r.validate(ctx, b)
	}
	if b.Status == task.BatchFinalizing {
		return true, r.finish(ctx, b, p)
	}
	inflight, err := r.store.InFlight(ctx, b.ID)
	if err != nil {
		return false, err
	}
	written, left, err := r.collect(ctx, b, p, inflight, cancelled || expired)
	if err != nil {
		return false, err
	}
	if cancelled || expired || p.Admitted {
		if left > 0 {
			return written > 0, nil
		}
		switch {
		case cancelled:
			b.Status, b.CancellingAt = task.BatchCancelled, orNow(b.CancellingAt, now)
		case expired && !p.Admitted:
			b.Status = task.BatchExpired
		default:
			b.Status = task.BatchCompleted
		}
		return true, r.finalize(ctx, b, now)
	}
	admitted := 0
	for room := r.cfg.Window - left; room > 0 && !p.Admitted; {
		n, next, err := r.admit(ctx, b, p, room)
		if errors.Is(err, artifact.ErrNotFound) {
			return true, r.fail(ctx, b, []task.BatchError{{Code: "invalid_file", Message: "the input file was deleted while the batch ran"}})
		}
		if err != nil || n == 0 {
			return written > 0 || admitted > 0, err
		}
		admitted, room, p = admitted+n, room-n, next
	}
	return written > 0 || admitted > 0, nil
}

func orNow(t *time.Time, now time.Time) *time.Time {
	if t != nil {
		return t
	}
	return &now
}

// line is one line of an input file, as OpenAI's batch format has it.
type line struct {
	CustomID string          `json:"custom_id"`
	Method   string          `json:"method"`
	URL      string          `json:"url"`
	Body     json.RawMessage `json:"body"`
}

// entry is an admitted line as kept in flight: its number (from 0), its
// custom_id, and for a line refused at submit, its status and error body.
type entry struct {
	Line     int             `json:"l"`
	CustomID string          `json:"c"`
	Status   int             `json:"s,omitempty"`
	Error    json.RawMessage `json:"e,omitempty"`
}

// reader reads an input file's lines from a byte offset.
type reader struct {
	obj    artifact.Object
	br     *bufio.Reader
	offset int64
	max    int
}

func (r *Runner) open(ctx context.Context, b *task.Batch, offset int64) (*reader, error) {
	obj, err := r.artifacts.Open(ctx, b.InputFileID)
	if err != nil {
		return nil, err
	}
	if offset > 0 {
		if _, err := obj.Seek(offset, io.SeekStart); err != nil {
			obj.Close()
			return nil, fmt.Errorf("seek to line offset %d: %w", offset, err)
		}
	}
	return &reader{obj: obj, br: bufio.NewReaderSize(obj, 64<<10), offset: offset, max: r.cfg.MaxLineBytes}, nil
}

// next returns the next line without its end, or io.EOF; blank lines are
// skipped and counted in the offset.
func (rd *reader) next() ([]byte, error) {
	for {
		var buf []byte
		for {
			part, err := rd.br.ReadSlice('\n')
			buf = append(buf, part...)
			if len(buf) > rd.max {
				return nil, fmt.Errorf("a line is longer than %d bytes", rd.max)
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, err
			}
			if len(buf) == 0 && errors.Is(err, io.EOF) {
				return nil, io.EOF
			}
			break
		}
		rd.offset += int64(len(buf))
		if text := bytes.TrimSpace(buf); len(text) > 0 {
			return text, nil
		}
	}
}

func (rd *reader) close() { rd.obj.Close() }

// maxErrors is how many validation errors a failed batch lists.
const maxErrors = 100

// validate reads the whole input file once, streaming: every line must be
// JSON with a custom_id unique in the file, method POST, the batch's url
// and a body the endpoint takes. The batch then runs, or fails naming the
// lines.
func (r *Runner) validate(ctx context.Context, b *task.Batch) error {
	rd, err := r.open(ctx, b, 0)
	if errors.Is(err, artifact.ErrNotFound) {
		return r.fail(ctx, b, []task.BatchError{{Code: "invalid_file", Message: "the input file's bytes are gone"}})
	}
	if err != nil {
		return err
	}
	defer rd.close()
	var errs []task.BatchError
	add := func(n int, code, msg, param string) {
		if len(errs) < maxErrors {
			e := task.BatchError{Code: code, Message: msg, Line: &n}
			if param != "" {
				e.Param = &param
			}
			errs = append(errs, e)
		}
	}
	seen := map[string]struct{}{}
	n := 0
	for {
		text, err := rd.next()
		if errors.Is(err, io.EOF) {
			break
		}
		n++
		if err != nil {
			add(n, "invalid_json_line", err.Error(), "")
			break
		}
		if n > r.cfg.MaxLines {
			add(n, "too_many_requests", fmt.Sprintf("a batch holds at most %d lines", r.cfg.MaxLines), "")
			break
		}
		var l line
		if err := json.Unmarshal(text, &l); err != nil {
			add(n, "invalid_json_line", "this line is not a JSON object", "")
			continue
		}
		switch {
		case l.CustomID == "":
			add(n, "missing_required_parameter", "custom_id is required", "custom_id")
		case l.Method != "POST":
			add(n, "invalid_value", "method must be POST", "method")
		case l.URL != b.Endpoint:
			add(n, "mismatched_endpoint", fmt.Sprintf("url %q is not the batch's endpoint %s", l.URL, b.Endpoint), "url")
		case len(l.Body) == 0 || l.Body[0] != '{':
			add(n, "invalid_request", "body must be a JSON object", "body")
		default:
			if _, dup := seen[l.CustomID]; dup {
				add(n, "duplicate_custom_id", fmt.Sprintf("custom_id %q is used on an earlier line", l.CustomID), "custom_id")
				continue
			}
			seen[l.CustomID] = struct{}{}
			if _, err := r.codec.Input(b.Endpoint, l.Body); err != nil {
				var te *task.Error
				param := "body"
				if errors.As(err, &te) && te.Field != "" {
					param = "body." + te.Field
				}
				add(n, "invalid_request", errMessage(err), param)
			}
		}
	}
	if n == 0 {
		errs = append(errs, task.BatchError{Code: "empty_file", Message: "the input file has no lines"})
	}
	if len(errs) > 0 {
		return r.fail(ctx, b, errs)
	}
	now := r.now().UTC().Truncate(time.Second)
	b.Status, b.Total, b.InProgressAt = task.BatchInProgress, n, &now
	return r.store.SaveBatch(ctx, *b)
}

func errMessage(err error) string {
	var te *task.Error
	if errors.As(err, &te) {
		return te.Message
	}
	return err.Error()
}

func (r *Runner) fail(ctx context.Context, b *task.Batch, errs []task.BatchError) error {
	now := r.now().UTC().Truncate(time.Second)
	b.Status, b.Errors, b.FailedAt = task.BatchFailed, errs, &now
	r.log.Info("batch failed validation", "batch_id", b.ID, "errors", len(errs))
	if err := r.announce(ctx, b, now); err != nil {
		return err
	}
	return r.store.SaveBatch(ctx, *b)
}

// callerOf is the batch's key as it was at creation: every line is
// submitted as that key's, under its rights, limits and budgets.
func callerOf(ctx context.Context, b *task.Batch) context.Context {
	var c auth.Caller
	_ = json.Unmarshal(b.Caller, &c)
	return auth.WithCaller(ctx, c)
}

// admitGroup is how many lines are submitted together.
const admitGroup = 128

// admit submits up to room more lines, a group at a time, and records
// them in flight with the batch's new progress in one atomic step. A line
// the service refuses (a body it does not take) is in flight already
// answered; a refusal that may pass later (the key's limits, a store that
// is down) stops admission there, and what was submitted past it is
// revoked, to be submitted again.
func (r *Runner) admit(ctx context.Context, b *task.Batch, p task.BatchProgress, room int) (int, task.BatchProgress, error) {
	rd, err := r.open(ctx, b, p.Offset)
	if err != nil {
		return 0, p, err
	}
	defer rd.close()
	type read struct {
		entry
		end int64
		in  any
	}
	var group []read
	eof := false
	for len(group) < min(room, admitGroup) {
		text, err := rd.next()
		if errors.Is(err, io.EOF) {
			eof = true
			break
		}
		if err != nil {
			return 0, p, err
		}
		var l line
		if err := json.Unmarshal(text, &l); err != nil {
			return 0, p, fmt.Errorf("line %d: %w", p.Line+len(group)+1, err) // validated: cannot happen
		}
		in, err := r.codec.Input(b.Endpoint, l.Body)
		g := read{entry: entry{Line: p.Line + len(group), CustomID: l.CustomID}, end: rd.offset, in: in}
		if err != nil {
			g.Status, g.Error = r.codec.Failure(err)
			g.in = nil
		}
		group = append(group, g)
	}
	ctx = callerOf(ctx, b)
	recs := make([]*task.Record, len(group))
	errs := make([]error, len(group))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i, g := range group {
		if g.in == nil {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			recs[i], errs[i] = r.submit(ctx, g.in)
		})
	}
	wg.Wait()
	entries := map[string]string{}
	next := p
	stop := len(group)
	for i, g := range group {
		if err := errs[i]; err != nil && retryable(err) {
			stop = i
			break
		}
		e := g.entry
		id := "refused:" + strconv.Itoa(e.Line)
		switch {
		case g.in == nil:
		case errs[i] != nil:
			e.Status, e.Error = r.codec.Failure(errs[i])
		default:
			id = recs[i].ID
		}
		raw, _ := json.Marshal(e)
		entries[id] = string(raw)
		next.Line, next.Offset = e.Line+1, g.end
	}
	for i := stop; i < len(group); i++ {
		if recs[i] != nil { // submitted past a refusal: again later
			_ = r.tasks.Delete(ctx, recs[i].ID)
		}
	}
	next.Admitted = eof && stop == len(group)
	if stop < len(group) {
		r.log.Info("batch admission paused", "batch_id", b.ID, "line", group[stop].Line+1, "err", errs[stop])
	}
	if err := r.store.Admit(context.WithoutCancel(ctx), b.ID, entries, next); err != nil {
		return 0, p, err
	}
	return len(entries), next, nil
}

// retryable reports whether a refused submit may pass later.
func retryable(err error) bool {
	switch task.CodeOf(err) {
	case task.EINVALID, task.ETOOLARGE, task.EUNSUPPORTED, task.EREJECTED:
		return false
	}
	return true
}

// batchPriority is the priority of every line: the low queue, behind the
// key's own interactive work and everyone else's, and with a share of its
// own under flow control (see the worker's flow key).
const batchPriority = task.PriorityLow

func (r *Runner) submit(ctx context.Context, in any) (*task.Record, error) {
	switch in := in.(type) {
	case task.GenerateTextInput:
		in.Options.Priority = batchPriority
		return r.tasks.SubmitGenerateText(ctx, in)
	case task.EmbedInput:
		in.Options.Priority = batchPriority
		return r.tasks.SubmitEmbed(ctx, in)
	}
	return nil, &task.Error{Code: task.EINTERNAL, Message: fmt.Sprintf("a batch line of type %T", in)}
}
