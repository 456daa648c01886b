package batch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/siganteng/siganteng/internal/artifact"
	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
)

// outputLine is one line of an output or error file, as OpenAI writes it.
type outputLine struct {
	ID       string       `json:"id"`
	CustomID string       `json:"custom_id"`
	Response *lineAnswer  `json:"response"`
	Error    *lineFailure `json:"error"`
}

type lineAnswer struct {
	StatusCode int             `json:"status_code"`
	RequestID  string          `json:"request_id"`
	Body       json.RawMessage `json:"body"`
}

type lineFailure struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// chunkKey names a run of written lines in the artifact store: the
// output's or the errors' part number seq of a batch.
func chunkKey(batchID, part string, seq int) string {
	return fmt.Sprintf("batch-%s-%s-%d", strings.TrimPrefix(batchID, "batch_"), part, seq)
}

// collect writes the lines whose tasks have ended (all of them, revoking
// those not yet started, when the batch stops) as the next chunk, and
// takes them out of flight in one atomic step that counts a chunk once:
// a runner that dies before the step writes the same chunk again. It
// returns how many it wrote and how many are still in flight.
func (r *Runner) collect(ctx context.Context, b *task.Batch, p task.BatchProgress, inflight map[string]string, stopping bool) (int, int, error) {
	if len(inflight) == 0 {
		return 0, 0, nil
	}
	all := make([]string, 0, len(inflight))
	for id := range inflight {
		if !strings.HasPrefix(id, "refused:") {
			all = append(all, id)
		}
	}
	// The statuses first (small), then the whole records of those that
	// ended, and only once enough have: a chunk a line at a time would
	// cost a file and a commit each.
	statuses, err := r.store.Statuses(ctx, all)
	if err != nil {
		return 0, 0, err
	}
	var ids []string
	for i, st := range statuses {
		if st.Terminal() || st == "" || stopping && st == task.StatusPending {
			ids = append(ids, all[i])
		}
	}
	ready := len(ids) + len(inflight) - len(all) // refused lines are ready too
	if ready == 0 || !stopping && !p.Admitted && ready < min(r.cfg.Window/4+1, len(inflight)) && time.Since(r.lastChunk(b.ID)) < chunkEvery {
		return 0, len(inflight), nil
	}
	recs, err := r.store.GetMany(ctx, ids)
	if err != nil {
		return 0, 0, err
	}
	byID := make(map[string]*task.Record, len(ids))
	for i, id := range ids {
		byID[id] = recs[i]
	}
	stopCode := "batch_cancelled"
	if b.Status != task.BatchCancelling {
		stopCode = "batch_expired"
	}
	var out, errs bytes.Buffer
	chunk := store.Chunk{Seq: p.Chunks}
	var done []string
	var revoke []string
	for id, raw := range inflight {
		if _, ok := byID[id]; !ok && !strings.HasPrefix(id, "refused:") {
			continue // still running
		}
		var e entry
		if err := json.Unmarshal([]byte(raw), &e); err != nil {
			return 0, 0, fmt.Errorf("in-flight entry %s: %w", id, err)
		}
		l := outputLine{ID: "batch_req_" + strings.ReplaceAll(strings.TrimPrefix(id, "refused:"), "-", ""), CustomID: e.CustomID}
		rec := byID[id]
		switch {
		case e.Status != 0: // refused at submit
			l.Response = &lineAnswer{StatusCode: e.Status, Body: e.Error}
		case rec == nil:
			l.Error = &lineFailure{Code: "lost", Message: "the line's task record is gone (it outlived RESULT_TTL)"}
		case rec.Status == task.StatusSuccess:
			if err := r.inline(ctx, rec); err != nil {
				return 0, 0, err
			}
			body, err := r.codec.Answer(b.Endpoint, rec)
			if err != nil {
				return 0, 0, err
			}
			l.Response = &lineAnswer{StatusCode: http.StatusOK, RequestID: rec.ID, Body: body}
			if rec.Usage != nil {
				chunk.InputTokens += rec.Usage.InputTokens
				chunk.OutputTokens += rec.Usage.OutputTokens
			}
		case rec.Status == task.StatusFailure:
			status, body := failureOf(rec.Error)
			l.Response = &lineAnswer{StatusCode: status, RequestID: rec.ID, Body: body}
		case rec.Status == task.StatusRevoked && stopping:
			l.Error = &lineFailure{Code: stopCode, Message: "the batch stopped before this line ran"}
		case rec.Status == task.StatusRevoked:
			l.Error = &lineFailure{Code: "revoked", Message: "the line's task was cancelled"}
		default:
			if stopping && rec.Status == task.StatusPending {
				revoke = append(revoke, id)
			}
			continue
		}
		raw, _ := json.Marshal(l)
		if l.Response != nil && l.Response.StatusCode == http.StatusOK {
			out.Write(raw)
			out.WriteByte('\n')
			chunk.Completed++
		} else {
			errs.Write(raw)
			errs.WriteByte('\n')
			chunk.Failed++
		}
		done = append(done, id)
	}
	ctx = callerOf(ctx, b)
	for _, id := range revoke { // collected as revoked on the next pass
		if _, err := r.tasks.Cancel(ctx, id); err != nil && task.CodeOf(err) != task.ENOTFOUND {
			r.log.Warn("a batch line's task was not revoked", "batch_id", b.ID, "task_id", id, "err", err)
		}
	}
	if len(done) == 0 {
		return 0, len(inflight), nil
	}
	r.chunked(b.ID)
	for part, buf := range map[string]*bytes.Buffer{"out": &out, "err": &errs} {
		if buf.Len() == 0 {
			continue
		}
		if _, err := r.artifacts.Put(ctx, chunkKey(b.ID, part, chunk.Seq), bytes.NewReader(buf.Bytes())); err != nil {
			return 0, 0, err
		}
	}
	chunk.Entries = done
	committed, err := r.store.CommitChunk(context.WithoutCancel(ctx), b.ID, chunk)
	if err != nil {
		return 0, 0, err
	}
	if !committed {
		return 0, len(inflight), nil // another step got here first
	}
	// Written: the lines' records are no longer needed (their tasks have
	// ended, and the worker dropped what they stored), so a batch of any
	// size keeps only its window in Redis.
	n := len(done)
	ended := slices.DeleteFunc(done, func(id string) bool { return strings.HasPrefix(id, "refused:") })
	if err := r.store.DeleteMany(ctx, ended); err != nil {
		r.log.Warn("written batch lines' records were not deleted; they expire by RESULT_TTL", "batch_id", b.ID, "err", err)
	}
	return n, len(inflight) - n, nil
}

// inline reads a result kept in the artifact store (one larger than
// LARGE_RESULT_BYTES) into its record.
func (r *Runner) inline(ctx context.Context, rec *task.Record) error {
	if rec.ResultKey == "" {
		return nil
	}
	obj, err := r.artifacts.Open(ctx, rec.ResultKey)
	if err != nil {
		return err
	}
	defer obj.Close()
	rec.Result, err = io.ReadAll(obj)
	return err
}

// failureOf is a failed line's status and OpenAI-shaped error body.
func failureOf(f *task.Failure) (int, json.RawMessage) {
	if f == nil {
		f = &task.Failure{Code: task.FailureInternal, Message: "the line failed"}
	}
	status, typ := http.StatusBadGateway, "server_error"
	switch f.Code {
	case task.FailureProviderRejected, task.FailureInvalidInput:
		status, typ = http.StatusBadRequest, "invalid_request_error"
	case task.FailureProviderRateLimited, task.FailureFlowLimited:
		status, typ = http.StatusTooManyRequests, "rate_limit_error"
	case task.FailureTimeout:
		status = http.StatusGatewayTimeout
	case task.FailureInternal, task.FailureLost:
		status = http.StatusInternalServerError
	}
	msg := f.Message
	if f.Provider != "" {
		msg = f.Provider + ": " + msg
	}
	body, _ := json.Marshal(map[string]any{"error": map[string]any{"message": msg, "type": typ, "param": nil, "code": string(f.Code)}})
	return status, body
}

// fileID names a batch's output or error file, the same on every try.
func fileID(batchID, part string) string {
	sum := sha256.Sum256([]byte(batchID + "/" + part))
	return "file-" + hex.EncodeToString(sum[:16])
}

// finalize ends a batch: it writes, for a batch that expired, its lines
// never admitted as batch_expired errors, then joins the chunks into the
// output and error files (through finish, which a runner that dies here
// runs again).
func (r *Runner) finalize(ctx context.Context, b *task.Batch, now time.Time) error {
	if b.Status == task.BatchExpired {
		_, p, err := r.store.GetBatch(ctx, b.ID) // the chunks collect just wrote count
		if err != nil {
			return err
		}
		if err := r.expireRest(ctx, b, p); err != nil {
			return err
		}
		b.ExpiredAt = &now
	}
	b.Ending, b.Status, b.FinalizingAt = b.Status, task.BatchFinalizing, &now
	if err := r.store.SaveBatch(ctx, *b); err != nil {
		return err
	}
	b2, p2, err := r.store.GetBatch(ctx, b.ID)
	if err != nil {
		return err
	}
	return r.finish(ctx, b2, p2)
}

// expireRest writes the lines an expired batch never admitted to its
// error file, as one more chunk.
func (r *Runner) expireRest(ctx context.Context, b *task.Batch, p task.BatchProgress) error {
	if p.Admitted {
		return nil
	}
	rd, err := r.open(ctx, b, p.Offset)
	if errors.Is(err, artifact.ErrNotFound) {
		return nil // the input file was deleted: nothing more to tell of
	}
	if err != nil {
		return err
	}
	defer rd.close()
	pr, pw := io.Pipe()
	n := 0
	go func() {
		for {
			text, err := rd.next()
			if errors.Is(err, io.EOF) {
				pw.Close()
				return
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			var l line
			_ = json.Unmarshal(text, &l)
			raw, _ := json.Marshal(outputLine{ID: fmt.Sprintf("batch_req_%s_%d", strings.TrimPrefix(b.ID, "batch_"), p.Line+n),
				CustomID: l.CustomID, Error: &lineFailure{Code: "batch_expired", Message: "the batch was not done within its 24h window"}})
			n++
			if _, err := pw.Write(append(raw, '\n')); err != nil {
				return
			}
		}
	}()
	if _, err := r.artifacts.Put(ctx, chunkKey(b.ID, "err", p.Chunks), pr); err != nil {
		return err
	}
	_, err = r.store.CommitChunk(ctx, b.ID, store.Chunk{Seq: p.Chunks, Failed: n})
	if err != nil {
		return err
	}
	return r.store.Admit(ctx, b.ID, nil, task.BatchProgress{Line: p.Line + n, Offset: rd.offset, Admitted: true})
}

// finish joins a finalizing batch's chunks into its output and error
// files, records them, deletes the chunks and ends the batch with the
// status finalize chose.
func (r *Runner) finish(ctx context.Context, b *task.Batch, p task.BatchProgress) error {
	final := b.Ending
	if final == "" {
		final = task.BatchCompleted
	}
	now := r.now().UTC().Truncate(time.Second)
	expires := now.Add(b.OutputExpiresAfter)
	for _, part := range []struct {
		name, suffix string
		id           *string
		count        int
	}{{"out", "output", &b.OutputFileID, b.Completed}, {"err", "error", &b.ErrorFileID, b.Failed}} {
		if part.count == 0 {
			continue
		}
		id := fileID(b.ID, part.name)
		size, err := r.artifacts.Put(ctx, id, &chunks{ctx: ctx, r: r, batchID: b.ID, part: part.name, n: p.Chunks})
		if err != nil {
			return err
		}
		f := task.File{ID: id, Owner: b.Owner, Bytes: size, CreatedAt: now, ExpiresAt: &expires,
			Filename: b.ID + "_" + part.suffix + ".jsonl", Purpose: task.PurposeBatchOutput}
		if err := r.store.CreateFile(ctx, f); err != nil {
			return err
		}
		*part.id = id
	}
	b.Status, b.Ending = final, ""
	switch final {
	case task.BatchCompleted:
		b.CompletedAt = &now
	case task.BatchCancelled:
		b.CancelledAt = &now
	}
	// Announced before the end is saved: a runner that dies in between
	// announces it again under the same delivery id.
	if err := r.announce(ctx, b, now); err != nil {
		return err
	}
	if err := r.store.SaveBatch(ctx, *b); err != nil {
		return err
	}
	for seq := range p.Chunks {
		for _, part := range []string{"out", "err"} {
			if err := r.artifacts.Delete(ctx, chunkKey(b.ID, part, seq)); err != nil {
				r.log.Warn("a batch chunk was not deleted", "batch_id", b.ID, "err", err)
			}
		}
	}
	r.log.Info("batch ended", "batch_id", b.ID, "status", final, "completed", b.Completed, "failed", b.Failed)
	return nil
}

// event is OpenAI's webhook event for a batch's end.
type event struct {
	ID        string `json:"id"`
	Object    string `json:"object"`
	Type      string `json:"type"`
	CreatedAt int64  `json:"created_at"`
	Data      struct {
		ID string `json:"id"`
	} `json:"data"`
}

// announce queues the batch.<status> event to the batch's webhook.
func (r *Runner) announce(ctx context.Context, b *task.Batch, at time.Time) error {
	if b.WebhookURL == "" || r.announcer == nil {
		return nil
	}
	sum := sha256.Sum256([]byte(b.ID + "/" + string(b.Status)))
	e := event{ID: "evt_" + hex.EncodeToString(sum[:16]), Object: "event",
		Type: "batch." + string(b.Status), CreatedAt: at.Unix()}
	e.Data.ID = b.ID
	body, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return r.announcer.Announce(ctx, "msg_"+b.ID+"_"+string(b.Status), b.ID, e.Type, b.WebhookURL, body)
}

// chunks reads a batch's chunks of one part in order, one open at a time.
type chunks struct {
	ctx     context.Context
	r       *Runner
	batchID string
	part    string
	n, next int
	cur     artifact.Object
}

func (c *chunks) Read(p []byte) (int, error) {
	for {
		if c.cur == nil {
			if c.next >= c.n {
				return 0, io.EOF
			}
			obj, err := c.r.artifacts.Open(c.ctx, chunkKey(c.batchID, c.part, c.next))
			c.next++
			if errors.Is(err, artifact.ErrNotFound) {
				continue // no lines of this part in that chunk
			}
			if err != nil {
				return 0, err
			}
			c.cur = obj
		}
		n, err := c.cur.Read(p)
		if errors.Is(err, io.EOF) {
			c.cur.Close()
			c.cur = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}
