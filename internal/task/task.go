// Package task is the domain of SIGANTENG: task types, statuses, the task
// record clients read, the inputs and results of each kind of work, and the
// error codes every layer shares.
package task

import (
	"encoding/json"
	"math"
	"strconv"
	"time"
)

// Type names a kind of work. It is also the asynq task type and queue name.
type Type string

// TypeGenerateText is text generation by an LLM.
const TypeGenerateText Type = "generate_text"

// Types are the kinds of work this build runs.
var Types = []Type{TypeGenerateText, TypeDescribeImage, TypeEmbed, TypeTextToSpeech, TypeSpeechToText}

// Status is where a task is in its life. The words are Celery's, so clients
// of the original Python service keep working.
type Status string

// The statuses a task moves through. PENDING, STARTED and RETRY are
// unfinished; SUCCESS, FAILURE and REVOKED are terminal.
const (
	StatusPending Status = "PENDING"
	StatusStarted Status = "STARTED"
	StatusRetry   Status = "RETRY"
	StatusSuccess Status = "SUCCESS"
	StatusFailure Status = "FAILURE"
	StatusRevoked Status = "REVOKED"
)

// Terminal reports whether no further transition can happen.
func (s Status) Terminal() bool {
	return s == StatusSuccess || s == StatusFailure || s == StatusRevoked
}

// Record is what a client sees of a task: the single source of truth for its
// status, independent of the queue's own bookkeeping.
type Record struct {
	ID       string       `json:"task_id" doc:"Unguessable task id (UUIDv4)."`
	Type     Type         `json:"type" doc:"Kind of work." example:"generate_text"`
	Status   Status       `json:"status" enum:"PENDING,STARTED,RETRY,SUCCESS,FAILURE,REVOKED" doc:"Celery's status words."`
	Attempts int          `json:"attempts" doc:"Attempts started so far."`
	Provider string       `json:"provider,omitempty" doc:"Provider that served the last attempt."`
	Owner    string       `json:"owner,omitempty" doc:"Id of the API key that submitted it; absent when the API is open."`
	Priority Priority     `json:"priority,omitempty" doc:"The priority asked for on submit; absent means normal."`
	Progress *Progress    `json:"progress,omitempty" doc:"How far the running attempt has come, where the work reports it (streamed text does)."`
	Webhook  *WebhookInfo `json:"webhook,omitempty" doc:"Where the task's events are posted (the URL's query is not shown)."`
	// WebhookURL is the whole webhook URL, for deliveries only: its query
	// may hold the receiver's token, so it is never shown.
	WebhookURL    string            `json:"-"`
	Input         json.RawMessage   `json:"input,omitempty" doc:"Summary of the input (never the full prompt)."`
	CreatedAt     time.Time         `json:"created_at"`
	StartedAt     *time.Time        `json:"started_at,omitempty"`
	CompletedAt   *time.Time        `json:"completed_at,omitempty"`
	NextAttemptAt *time.Time        `json:"next_attempt_at,omitempty" doc:"When a RETRY task runs again."`
	CancelAt      *time.Time        `json:"cancel_at,omitempty" doc:"From cancel_after: a task not started by then ends REVOKED."`
	ScheduledAt   *time.Time        `json:"scheduled_at,omitempty" doc:"From run_at or delay: when the task starts; it is PENDING until then."`
	Metadata      map[string]string `json:"metadata,omitempty" doc:"The labels given on submit."`
	DeadlineAt    *time.Time        `json:"deadline_at,omitempty" doc:"From deadline or deadline_after: past it the task ends REVOKED (deadline_exceeded), running or not."`
	ExpiresAt     *time.Time        `json:"expires_at,omitempty" doc:"When a finished record is deleted (RESULT_TTL after it ended)."`
	Result        json.RawMessage   `json:"result,omitempty" doc:"The result on SUCCESS; its shape depends on type."`
	// ResultKey names a result kept in the artifact store because it was
	// larger than LARGE_RESULT_BYTES; "" for one in the record.
	ResultKey    string   `json:"-"`
	ResultURL    string   `json:"result_url,omitempty" doc:"Where a result larger than LARGE_RESULT_BYTES is read (this record, inlined), when it is not inlined: in listings, webhooks, and with ?result=link."`
	Error        *Failure `json:"error,omitempty" doc:"Why the task failed (FAILURE) or why the last attempt failed (RETRY)."`
	Deployment   string   `json:"deployment,omitempty" doc:"With a routing file: the deployment (model name/number) that served the task."`
	Usage        *Metered `json:"usage,omitempty" doc:"What the task consumed, in the provider's units, on SUCCESS."`
	Calls        []Call   `json:"calls,omitempty" doc:"With a routing file: every provider call made for the task, in order, with its outcome."`
	Waiting      *Waiting `json:"waiting,omitempty" doc:"Set while a PENDING task waits for its deployment's budget (flow control): why, and since when."`
	PipelineID   string   `json:"pipeline_id,omitempty" doc:"The pipeline the task is a step of."`
	PipelineStep string   `json:"pipeline_step,omitempty" doc:"The name of that step."`
	RetryOf      string   `json:"retry_of,omitempty" doc:"The task this one runs again (POST /background/tasks/{task_id}/retry)."`
	RetriedBy    string   `json:"retried_by,omitempty" doc:"The task that runs this one again, once it has been retried."`
	// Payload is the queued input, kept on the record of a task that has
	// not succeeded so that it can be retried; never shown.
	Payload json.RawMessage `json:"-"`
	// Admission is AdmissionWaiting while the task waits in its key's line
	// to be queued, AdmissionAdmitted once let out of it, and "" for a task
	// queued at its submit; never shown.
	Admission string `json:"-"`
}

// The states of a record's Admission (the store's scripts write them).
const (
	AdmissionWaiting  = "waiting"
	AdmissionAdmitted = "admitted"
)

// Waiting says why a task waits: for budget before its provider call (its
// deployment's requests, tokens or concurrent calls are spent for now, or
// the provider asked for a pause with a 429), or in its API key's line,
// because the key has its share of the worker queues taken already by its
// earlier tasks. A wait is flow control, not a failure: it uses up no retry.
type Waiting struct {
	Reason     string    `json:"reason" enum:"requests,tokens,concurrency,provider,key_share" doc:"What is spent: the deployment's requests per minute, tokens per minute, concurrent calls, a pause the provider asked for (429), or the key's share of the worker queues (it goes in as the key's earlier tasks end)."`
	Deployment string    `json:"deployment,omitempty" example:"openai" doc:"Absent for key_share."`
	Since      time.Time `json:"since,omitzero" doc:"When the task began to wait."`
	Until      time.Time `json:"until,omitzero" doc:"When it tries again; a reserved slot is exact. Absent for key_share."`
}

// WaitKeyShare is the Waiting reason of a task in its key's line.
const WaitKeyShare = "key_share"

// Metered is what a task consumed, in the provider's own units, and what
// that is estimated to cost where the routing file gives prices.
type Metered struct {
	InputTokens  int64   `json:"input_tokens,omitempty"`
	OutputTokens int64   `json:"output_tokens,omitempty"`
	Characters   int64   `json:"characters,omitempty" doc:"Characters of text spoken (text_to_speech)."`
	AudioSeconds float64 `json:"audio_seconds,omitempty" doc:"Seconds of audio heard (speech_to_text), where the provider says."`
	CostUSD      *USD    `json:"cost_usd,omitempty" doc:"Estimated from the routing file's prices; absent without prices."`
}

// USD is an amount of US dollars, counted in whole nano-dollars (as usage
// counters keep it) and written as the exact decimal: 0.000005, not the
// 4.9999999999999996e-06 a float64 sum would print.
type USD float64

// MarshalJSON writes the amount rounded to the nano-dollar, in plain
// decimal notation.
func (u USD) MarshalJSON() ([]byte, error) {
	nano := math.Round(float64(u) * 1e9)
	return strconv.AppendFloat(nil, nano/1e9, 'f', -1, 64), nil
}

// Call is one provider call made for a task through a routed model.
type Call struct {
	Attempt    int       `json:"attempt"`
	Deployment string    `json:"deployment" example:"chat/1"`
	Provider   string    `json:"provider" example:"openai"`
	Model      string    `json:"model,omitempty"`
	Outcome    string    `json:"outcome" doc:"success, or the failure code" example:"provider_unavailable"`
	StatusCode int       `json:"status_code,omitempty" doc:"The provider's HTTP status, when it answered."`
	Message    string    `json:"message,omitempty"`
	At         time.Time `json:"at"`
}

// Failure is the error a client sees on a task record. Message never holds
// a secret: provider errors are cleaned before they get here.
type Failure struct {
	Code     FailureCode `json:"code" example:"provider_rate_limited"`
	Message  string      `json:"message"`
	Provider string      `json:"provider,omitempty"`
}

// FailureCode classifies why an attempt failed.
type FailureCode string

// The failure codes a record can carry.
const (
	FailureProviderRejected    FailureCode = "provider_rejected"     // the provider refused the request (400, 404, 422)
	FailureProviderAuth        FailureCode = "provider_auth"         // the provider refused our credentials (401, 403)
	FailureProviderRateLimited FailureCode = "provider_rate_limited" // 429
	FailureProviderUnavailable FailureCode = "provider_unavailable"  // 5xx, refused connection, network error
	FailureTimeout             FailureCode = "timeout"               // TASK_TIMEOUT or the provider's own timeout
	FailureNotConfigured       FailureCode = "provider_not_configured"
	FailureResponseTooLarge    FailureCode = "provider_response_too_large" // the answer passed its size limit
	FailureInvalidInput        FailureCode = "invalid_input"
	FailureInternal            FailureCode = "internal"
	FailureLost                FailureCode = "lost"    // the worker died with no retries left, or the queue lost the task
	FailureRevoked             FailureCode = "revoked" // cancelled by the client
	// FailureDeadline: the task's deadline passed before it ended.
	FailureDeadline FailureCode = "deadline_exceeded"
	// FailureFlowLimited: the task waited FLOW_MAX_WAIT for its
	// deployment's budget and got none.
	FailureFlowLimited FailureCode = "deployment_rate_limited"
)

// Usage counts tokens in the provider's own units.
type Usage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
}
