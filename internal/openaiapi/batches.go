package openaiapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/siganteng/siganteng/internal/service"
	"github.com/siganteng/siganteng/internal/task"
)

// fileObject is OpenAI's file object.
type fileObject struct {
	ID        string  `json:"id"`
	Object    string  `json:"object"`
	Bytes     int64   `json:"bytes"`
	CreatedAt int64   `json:"created_at"`
	ExpiresAt *int64  `json:"expires_at,omitempty"`
	Filename  string  `json:"filename"`
	Purpose   string  `json:"purpose"`
	Status    string  `json:"status"`
	Details   *string `json:"status_details,omitempty"`
}

func fileOf(f task.File) fileObject {
	o := fileObject{ID: f.ID, Object: "file", Bytes: f.Bytes, CreatedAt: f.CreatedAt.Unix(), Filename: f.Filename, Purpose: f.Purpose, Status: "processed"}
	if f.ExpiresAt != nil {
		at := f.ExpiresAt.Unix()
		o.ExpiresAt = &at
	}
	return o
}

// listOf is OpenAI's list object, with its cursor fields.
type listOf[T any] struct {
	Object  string  `json:"object"`
	Data    []T     `json:"data"`
	FirstID *string `json:"first_id"`
	LastID  *string `json:"last_id"`
	HasMore bool    `json:"has_more"`
}

func newList[T any](data []T, id func(T) string, more bool) listOf[T] {
	l := listOf[T]{Object: "list", Data: data, HasMore: more}
	if l.Data == nil {
		l.Data = []T{}
	}
	if len(data) > 0 {
		first, last := id(data[0]), id(data[len(data)-1])
		l.FirstID, l.LastID = &first, &last
	}
	return l
}

// spooledForm is a multipart form read whole: its small fields, and its
// file part spooled to a temporary file (bounded, never held in memory),
// so that fields sent after the file count too.
type spooledForm struct {
	fields   map[string]string
	file     *os.File
	filename string
}

func (f *spooledForm) close() {
	if f.file != nil {
		f.file.Close()
		os.Remove(f.file.Name())
	}
}

// readForm reads a multipart request whose file part is at most limit
// bytes (limitName names the setting in errors).
func (a *api) readForm(w http.ResponseWriter, r *http.Request, limit int64, limitName string) (*spooledForm, bool) {
	mediaType, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mediaType != "multipart/form-data" || params["boundary"] == "" {
		WriteError(w, http.StatusBadRequest, "the body must be multipart/form-data with the file in file", "file", "invalid_value")
		return nil, false
	}
	if limit > 0 {
		r.Body = http.MaxBytesReader(w, r.Body, limit+64<<10)
	}
	form := multipart.NewReader(r.Body, params["boundary"])
	out := &spooledForm{fields: map[string]string{}}
	tooLarge := &task.Error{Code: task.ETOOLARGE, Field: "file", Message: fmt.Sprintf("the form could not be read: it is malformed, or larger than %s", limitName)}
	for {
		part, err := form.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			out.close()
			a.fail(w, r, tooLarge)
			return nil, false
		}
		if part.FormName() == "file" && out.file == nil {
			out.filename = part.FileName()
			if out.file, err = os.CreateTemp("", "siganteng-upload-*"); err == nil {
				_, err = io.Copy(out.file, part)
			}
			if err == nil {
				_, err = out.file.Seek(0, io.SeekStart)
			}
			if err != nil {
				out.close()
				a.fail(w, r, tooLarge)
				return nil, false
			}
			continue
		}
		value, _ := io.ReadAll(io.LimitReader(part, 8<<10))
		out.fields[part.FormName()] = string(value)
	}
	if out.file == nil {
		a.fail(w, r, task.Invalid("file", "the form has no file part"))
		return nil, false
	}
	return out, true
}

func (a *api) createFile(w http.ResponseWriter, r *http.Request) {
	form, ok := a.readForm(w, r, a.deps.MaxFileBytes, "MAX_FILE_BYTES")
	if !ok {
		return
	}
	defer form.close()
	in := service.FileInput{Filename: form.filename, Purpose: form.fields["purpose"]}
	if anchor, ok := form.fields["expires_after[anchor]"]; ok && anchor != "created_at" {
		a.fail(w, r, task.Invalid("expires_after.anchor", "expires_after.anchor must be created_at"))
		return
	}
	if raw, ok := form.fields["expires_after[seconds]"]; ok {
		secs, err := strconv.Atoi(raw)
		if err != nil || secs < 3600 || secs > 2592000 {
			a.fail(w, r, task.Invalid("expires_after.seconds", "expires_after.seconds must be 3600 to 2592000"))
			return
		}
		in.ExpiresAfter = time.Duration(secs) * time.Second
	}
	f, err := a.deps.Tasks.CreateFile(r.Context(), in, form.file)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, fileOf(*f))
}

func (a *api) listFiles(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, ok := a.limitParam(w, r, 10000)
	if !ok {
		return
	}
	files, more, err := a.deps.Tasks.ListFiles(r.Context(), q.Get("purpose"), q.Get("after"), limit, q.Get("order"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := make([]fileObject, len(files))
	for i, f := range files {
		out[i] = fileOf(f)
	}
	writeJSON(w, http.StatusOK, newList(out, func(f fileObject) string { return f.ID }, more))
}

// limitParam reads the query's limit (20 when absent).
func (a *api) limitParam(w http.ResponseWriter, r *http.Request, most int) (int, bool) {
	raw := r.URL.Query().Get("limit")
	if raw == "" {
		return 20, true
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > most {
		a.fail(w, r, task.Invalid("limit", fmt.Sprintf("limit must be 1 to %d", most)))
		return 0, false
	}
	return n, true
}

func (a *api) getFile(w http.ResponseWriter, r *http.Request) {
	f, err := a.deps.Tasks.GetFile(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, fileOf(*f))
}

func (a *api) fileContent(w http.ResponseWriter, r *http.Request) {
	f, obj, err := a.deps.Tasks.OpenFile(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	defer obj.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(obj.Size(), 10))
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": f.Filename}))
	_, _ = io.Copy(w, obj)
}

func (a *api) deleteFile(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := a.deps.Tasks.DeleteFile(r.Context(), id); err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "object": "file", "deleted": true})
}

// batchObject is OpenAI's batch object.
type batchObject struct {
	ID               string            `json:"id"`
	Object           string            `json:"object"`
	Endpoint         string            `json:"endpoint"`
	Errors           *batchErrors      `json:"errors,omitempty"`
	InputFileID      string            `json:"input_file_id"`
	CompletionWindow string            `json:"completion_window"`
	Status           string            `json:"status"`
	OutputFileID     *string           `json:"output_file_id,omitempty"`
	ErrorFileID      *string           `json:"error_file_id,omitempty"`
	CreatedAt        int64             `json:"created_at"`
	InProgressAt     *int64            `json:"in_progress_at,omitempty"`
	ExpiresAt        *int64            `json:"expires_at"`
	FinalizingAt     *int64            `json:"finalizing_at,omitempty"`
	CompletedAt      *int64            `json:"completed_at,omitempty"`
	FailedAt         *int64            `json:"failed_at,omitempty"`
	ExpiredAt        *int64            `json:"expired_at,omitempty"`
	CancellingAt     *int64            `json:"cancelling_at,omitempty"`
	CancelledAt      *int64            `json:"cancelled_at,omitempty"`
	RequestCounts    batchCounts       `json:"request_counts"`
	Usage            batchUsage        `json:"usage"`
	Metadata         map[string]string `json:"metadata,omitempty"`
}

type batchErrors struct {
	Object string            `json:"object"`
	Data   []task.BatchError `json:"data"`
}

type batchCounts struct {
	Total     int `json:"total"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
}

type batchUsage struct {
	InputTokens        int64 `json:"input_tokens"`
	InputTokensDetails struct {
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"input_tokens_details"`
	OutputTokens        int64 `json:"output_tokens"`
	OutputTokensDetails struct {
		ReasoningTokens int64 `json:"reasoning_tokens"`
	} `json:"output_tokens_details"`
	TotalTokens int64 `json:"total_tokens"`
}

func unix(t *time.Time) *int64 {
	if t == nil {
		return nil
	}
	s := t.Unix()
	return &s
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func batchOf(b task.Batch) batchObject {
	expires := b.ExpiresAt.Unix()
	o := batchObject{ID: b.ID, Object: "batch", Endpoint: b.Endpoint, InputFileID: b.InputFileID, CompletionWindow: b.CompletionWindow,
		Status: string(b.Status), OutputFileID: optional(b.OutputFileID), ErrorFileID: optional(b.ErrorFileID),
		CreatedAt: b.CreatedAt.Unix(), InProgressAt: unix(b.InProgressAt), ExpiresAt: &expires, FinalizingAt: unix(b.FinalizingAt),
		CompletedAt: unix(b.CompletedAt), FailedAt: unix(b.FailedAt), ExpiredAt: unix(b.ExpiredAt), CancellingAt: unix(b.CancellingAt),
		CancelledAt: unix(b.CancelledAt), RequestCounts: batchCounts{Total: b.Total, Completed: b.Completed, Failed: b.Failed},
		Metadata: b.Metadata}
	if len(b.Errors) > 0 {
		o.Errors = &batchErrors{Object: "list", Data: b.Errors}
	}
	o.Usage.InputTokens, o.Usage.OutputTokens = b.InputTokens, b.OutputTokens
	o.Usage.TotalTokens = b.InputTokens + b.OutputTokens
	return o
}

type batchRequest struct {
	InputFileID        string            `json:"input_file_id"`
	Endpoint           string            `json:"endpoint"`
	CompletionWindow   string            `json:"completion_window"`
	Metadata           map[string]string `json:"metadata,omitempty"`
	OutputExpiresAfter *struct {
		Anchor  string `json:"anchor"`
		Seconds int64  `json:"seconds"`
	} `json:"output_expires_after"`
	// Webhook is SIGANTENG's own: where the batch's end is posted as an
	// OpenAI webhook event (OpenAI sets its endpoints per project).
	Webhook string `json:"webhook"`
}

func (a *api) createBatch(w http.ResponseWriter, r *http.Request) {
	var req batchRequest
	if !a.decode(w, r, &req) {
		return
	}
	if err := checkMetadata(req.Metadata); err != nil {
		a.fail(w, r, err)
		return
	}
	in := service.BatchInput{InputFileID: req.InputFileID, Endpoint: req.Endpoint, CompletionWindow: req.CompletionWindow, Metadata: req.Metadata,
		Webhook: req.Webhook}
	if e := req.OutputExpiresAfter; e != nil {
		if e.Anchor != "created_at" {
			a.fail(w, r, task.Invalid("output_expires_after.anchor", "output_expires_after.anchor must be created_at"))
			return
		}
		if e.Seconds < 3600 || e.Seconds > 2592000 {
			a.fail(w, r, task.Invalid("output_expires_after.seconds", "output_expires_after.seconds must be 3600 to 2592000"))
			return
		}
		in.OutputExpiresAfter = time.Duration(e.Seconds) * time.Second
	}
	b, err := a.deps.Tasks.CreateBatch(r.Context(), in)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, batchOf(*b))
}

func (a *api) getBatch(w http.ResponseWriter, r *http.Request) {
	b, err := a.deps.Tasks.GetBatch(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, batchOf(*b))
}

func (a *api) listBatches(w http.ResponseWriter, r *http.Request) {
	limit, ok := a.limitParam(w, r, 100)
	if !ok {
		return
	}
	list, more, err := a.deps.Tasks.ListBatches(r.Context(), r.URL.Query().Get("after"), limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := make([]batchObject, len(list))
	for i, b := range list {
		out[i] = batchOf(b)
	}
	writeJSON(w, http.StatusOK, newList(out, func(b batchObject) string { return b.ID }, more))
}

func (a *api) cancelBatch(w http.ResponseWriter, r *http.Request) {
	b, err := a.deps.Tasks.CancelBatch(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, batchOf(*b))
}

// Lines is the Batch API's codec (batch.Codec): a line's body means what
// the same request means on this front, and its answer is what this
// front would have answered.
type Lines struct{}

// Input reads a line's body for endpoint.
func (Lines) Input(endpoint string, body json.RawMessage) (any, error) {
	switch endpoint {
	case "/v1/chat/completions":
		var req chatRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, task.Invalid("body", "the body is not a chat completion request: "+err.Error())
		}
		if req.Stream {
			return nil, task.Invalid("stream", "a batch line cannot stream")
		}
		return req.input()
	case "/v1/responses":
		var req responseRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, task.Invalid("body", "the body is not a response request: "+err.Error())
		}
		if req.Stream || req.Background {
			return nil, task.Invalid("stream", "a batch line is neither streamed nor a background response")
		}
		return req.input()
	case "/v1/embeddings":
		var req embeddingsRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, task.Invalid("body", "the body is not an embeddings request: "+err.Error())
		}
		return req.input()
	}
	return nil, task.Invalid("url", fmt.Sprintf("a batch does not run %s", endpoint))
}

// Answer is a successful line's response body.
func (Lines) Answer(endpoint string, rec *task.Record) (json.RawMessage, error) {
	created := rec.CreatedAt.Unix()
	if rec.CompletedAt != nil {
		created = rec.CompletedAt.Unix()
	}
	switch endpoint {
	case "/v1/embeddings":
		var out task.EmbedResult
		if err := json.Unmarshal(rec.Result, &out); err != nil {
			return nil, fmt.Errorf("openaiapi: a line's embeddings: %w", err)
		}
		return json.Marshal(embeddingsOf(&out, "float"))
	case "/v1/responses":
		return json.Marshal(responseOf(rec, nil))
	}
	var out task.TextResult
	if err := json.Unmarshal(rec.Result, &out); err != nil {
		return nil, fmt.Errorf("openaiapi: a line's completion: %w", err)
	}
	return json.Marshal(completionOf("chatcmpl-"+rec.ID, created, &out))
}

// Failure is a refused line's status and OpenAI's error body.
func (Lines) Failure(err error) (int, json.RawMessage) {
	a := &api{deps: Deps{Log: slog.New(slog.DiscardHandler)}}
	status, message, param, code, _ := a.statusOf(context.Background(), err)
	body, _ := json.Marshal(errorOf(status, message, param, code))
	return status, body
}
