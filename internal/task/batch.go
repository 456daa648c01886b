package task

import (
	"encoding/json"
	"time"
)

// File is a file of the Files API: bytes a key uploaded (or a batch
// wrote) that live in the artifact store under the file's id, and this
// record of them. A file belongs to its owner's key; to anyone else it does
// not exist.
type File struct {
	ID        string     `json:"id"`
	Owner     string     `json:"-"`
	Bytes     int64      `json:"bytes"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	Filename  string     `json:"filename"`
	Purpose   string     `json:"purpose"`
}

// The purposes a file may have, as OpenAI names them. Batches read
// "batch" files and write "batch_output" ones.
const (
	PurposeBatch       = "batch"
	PurposeBatchOutput = "batch_output"
)

// FilePurposes are the purposes an upload may name.
var FilePurposes = []string{PurposeBatch, "assistants", "fine-tune", "vision", "user_data"}

// BatchStatus is where a batch is in its life, in OpenAI's words.
type BatchStatus string

// The batch statuses.
const (
	BatchValidating BatchStatus = "validating"
	BatchFailed     BatchStatus = "failed"
	BatchInProgress BatchStatus = "in_progress"
	BatchFinalizing BatchStatus = "finalizing"
	BatchCompleted  BatchStatus = "completed"
	BatchExpired    BatchStatus = "expired"
	BatchCancelling BatchStatus = "cancelling"
	BatchCancelled  BatchStatus = "cancelled"
)

// Ended reports whether s is a final status.
func (s BatchStatus) Ended() bool {
	return s == BatchFailed || s == BatchCompleted || s == BatchExpired || s == BatchCancelled
}

// BatchEndpoints are the endpoints a batch may run, each with the kind of
// work its lines become.
var BatchEndpoints = map[string]Type{
	"/v1/chat/completions": TypeGenerateText,
	"/v1/responses":        TypeGenerateText,
	"/v1/embeddings":       TypeEmbed,
}

// Batch is one run of the Batch API: every line of its input file is a task
// of the endpoint's kind, admitted a window at a time, and its answers are
// written to an output file (successes) and an error file (failures).
type Batch struct {
	ID               string            `json:"id"`
	Owner            string            `json:"-"`
	InputFileID      string            `json:"input_file_id"`
	Endpoint         string            `json:"endpoint"`
	CompletionWindow string            `json:"completion_window"`
	Metadata         map[string]string `json:"metadata,omitempty"`
	Status           BatchStatus       `json:"status"`
	// Ending is the status a finalizing batch ends with.
	Ending BatchStatus `json:"-"`
	// WebhookURL, sealed, receives the batch's end as an OpenAI webhook
	// event (batch.completed and the like); "" for none.
	WebhookURL string `json:"-"`
	// OutputExpiresAfter is how long its output and error files are kept.
	OutputExpiresAfter time.Duration `json:"-"`
	// Caller is the key's rights and limits as they were at creation, with
	// which every line is submitted (JSON of auth.Caller: no secret).
	Caller json.RawMessage `json:"-"`

	CreatedAt    time.Time  `json:"created_at"`
	ExpiresAt    time.Time  `json:"expires_at"`
	InProgressAt *time.Time `json:"in_progress_at,omitempty"`
	FinalizingAt *time.Time `json:"finalizing_at,omitempty"`
	CompletedAt  *time.Time `json:"completed_at,omitempty"`
	FailedAt     *time.Time `json:"failed_at,omitempty"`
	ExpiredAt    *time.Time `json:"expired_at,omitempty"`
	CancellingAt *time.Time `json:"cancelling_at,omitempty"`
	CancelledAt  *time.Time `json:"cancelled_at,omitempty"`

	Total     int `json:"total"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`

	OutputFileID string       `json:"output_file_id,omitempty"`
	ErrorFileID  string       `json:"error_file_id,omitempty"`
	Errors       []BatchError `json:"errors,omitempty"`

	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
}

// BatchError is one reason a batch failed validation, naming the line
// (1-based) where there is one.
type BatchError struct {
	Code    string  `json:"code"`
	Message string  `json:"message"`
	Param   *string `json:"param"`
	Line    *int    `json:"line"`
}

// BatchProgress is how far a batch's runner has come through its input:
// the next line to admit and its byte offset, and the output chunks
// written. It is the runner's, never shown.
type BatchProgress struct {
	Line   int
	Offset int64
	Chunks int
	// Admitted is true once every line has been admitted.
	Admitted bool
}
