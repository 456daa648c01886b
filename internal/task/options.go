package task

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Priority orders queued work: high goes ahead of the per-type queues, low
// runs when they leave room (see QUEUE_WEIGHTS).
type Priority string

// The priorities a submit may ask for; empty means normal.
const (
	PriorityHigh   Priority = "high"
	PriorityNormal Priority = "normal"
	PriorityLow    Priority = "low"
)

// The webhook events a submit may ask for.
const (
	WebhookStart     = "start"     // the first attempt began
	WebhookProgress  = "progress"  // the work reported progress (at most every few seconds)
	WebhookCompleted = "completed" // the task ended: SUCCESS, FAILURE or REVOKED
)

// WebhookEvents lists every webhook event, in the order they happen.
var WebhookEvents = []string{WebhookStart, WebhookProgress, WebhookCompleted}

// MaxWebhookURL bounds a webhook URL's length.
const MaxWebhookURL = 2048

// Options are what every submit may carry besides the work itself.
type Options struct {
	CancelAfter   *int              `json:"cancel_after,omitempty" minimum:"1" maximum:"604800" doc:"Seconds from now: a task not started by then ends REVOKED and never runs. The Cancel-After header says the same."`
	Priority      Priority          `json:"priority,omitempty" enum:"high,normal,low" doc:"high runs ahead of normal work of every type; low runs when the queues leave room. Default normal."`
	Webhook       string            `json:"webhook,omitempty" maxLength:"2048" format:"uri" doc:"An https (or http) URL that receives the task record as a signed POST (Standard Webhooks) on the events in webhook_events. Retried with growing delays for about a day; a 410 answer stops it."`
	WebhookEvents []string          `json:"webhook_events,omitempty" maxItems:"3" uniqueItems:"true" enum:"start,progress,completed" doc:"Which events are sent to webhook; default [\"completed\"]."`
	RunAt         *time.Time        `json:"run_at,omitempty" doc:"When to start the task (RFC 3339): it stays PENDING, with scheduled_at on its record, until then, and can be cancelled meanwhile. At most MAX_SCHEDULE_AHEAD (30 days) ahead; a time already past starts it now."`
	Delay         *int              `json:"delay,omitempty" minimum:"1" doc:"Seconds from now to start the task; instead of run_at."`
	Deadline      *time.Time        `json:"deadline,omitempty" doc:"When the whole task must have ended (RFC 3339): past it, it ends REVOKED with the code deadline_exceeded, whether it waits, runs (its provider call is cut) or sits between retries."`
	DeadlineAfter *int              `json:"deadline_after,omitempty" minimum:"1" doc:"Seconds from now: the deadline, instead of deadline."`
	Metadata      map[string]string `json:"metadata,omitempty" maxProperties:"16" doc:"Up to 16 labels (keys up to 64 characters, values up to 512), returned on the record; GET /background/tasks?metadata[KEY]=VALUE lists the tasks that carry one."`
}

// Metadata bounds, as OpenAI's.
const (
	MaxMetadataPairs = 16
	MaxMetadataKey   = 64
	MaxMetadataValue = 512
)

// CheckMetadata checks labels against the bounds, naming field.
func CheckMetadata(field string, m map[string]string) error {
	if len(m) > MaxMetadataPairs {
		return Invalid(field, fmt.Sprintf("%s holds at most %d pairs", field, MaxMetadataPairs))
	}
	for k, v := range m {
		switch {
		case k == "" || len(k) > MaxMetadataKey:
			return Invalid(field, fmt.Sprintf("%s keys are 1 to %d characters", field, MaxMetadataKey))
		case strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0):
			return Invalid(field, fmt.Sprintf("%s keys hold no '=' and no NUL", field))
		case len(v) > MaxMetadataValue:
			return Invalid(field, fmt.Sprintf("%s values are at most %d characters", field, MaxMetadataValue))
		}
	}
	return nil
}

// SubmitOptions returns the options; every input embeds Options, so this is
// how the service reads them without knowing the input's type.
func (o Options) SubmitOptions() Options { return o }

// OptionsRef is the options to change in place (the HTTP layer applies
// headers to them), whatever the input's type.
func (o *Options) OptionsRef() *Options { return o }

// Validate checks the options, naming the field at fault.
func (o Options) Validate() error {
	if o.CancelAfter != nil && (*o.CancelAfter < 1 || *o.CancelAfter > 604800) {
		return Invalid("cancel_after", "cancel_after must be between 1 and 604800 seconds")
	}
	if err := CheckMetadata("metadata", o.Metadata); err != nil {
		return err
	}
	switch {
	case o.Deadline != nil && o.DeadlineAfter != nil:
		return Invalid("deadline_after", "give deadline or deadline_after, not both")
	case o.DeadlineAfter != nil && *o.DeadlineAfter < 1:
		return Invalid("deadline_after", "deadline_after must be at least 1 second")
	case o.RunAt != nil && o.Delay != nil:
		return Invalid("delay", "give run_at or delay, not both")
	case o.Delay != nil && *o.Delay < 1:
		return Invalid("delay", "delay must be at least 1 second")
	}
	switch o.Priority {
	case "", PriorityHigh, PriorityNormal, PriorityLow:
	default:
		return Invalid("priority", fmt.Sprintf("priority must be high, normal or low, not %q", o.Priority))
	}
	for _, e := range o.WebhookEvents {
		if !slices.Contains(WebhookEvents, e) {
			return Invalid("webhook_events", fmt.Sprintf("unknown webhook event %q; the events are %s", e, strings.Join(WebhookEvents, ", ")))
		}
	}
	if o.Webhook == "" {
		if len(o.WebhookEvents) > 0 {
			return Invalid("webhook", "webhook_events needs a webhook URL")
		}
		return nil
	}
	return CheckWebhookURL(o.Webhook)
}

// CheckWebhookURL checks what can be checked of a webhook URL before it is
// called; the address it resolves to is checked at every delivery.
func CheckWebhookURL(raw string) error {
	if len(raw) > MaxWebhookURL {
		return Invalid("webhook", "webhook is longer than 2048 characters")
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return Invalid("webhook", "webhook is not a URL")
	case u.Scheme != "https" && u.Scheme != "http":
		return Invalid("webhook", "webhook must be an https or http URL")
	case u.Host == "":
		return Invalid("webhook", "webhook has no host")
	case u.User != nil:
		return Invalid("webhook", "webhook must not carry credentials; put a token in the path or query, or check the signature")
	case u.Fragment != "":
		return Invalid("webhook", "webhook must not have a #fragment")
	}
	return nil
}

// Events returns the webhook events asked for: completed by default.
func (o Options) Events() []string {
	if o.Webhook == "" {
		return nil
	}
	if len(o.WebhookEvents) == 0 {
		return []string{WebhookCompleted}
	}
	return o.WebhookEvents
}

// Progress is how far a running task has come, as its work reports it.
type Progress struct {
	Done  int64   `json:"done" doc:"Units done so far."`
	Total int64   `json:"total,omitempty" doc:"Units in all, when known."`
	Unit  string  `json:"unit" doc:"What is counted: characters for streamed text." example:"characters"`
	Ratio float64 `json:"ratio,omitempty" doc:"done/total, when total is known."`
}

// WebhookInfo is what a record shows of its webhook: the URL without its
// query (which may hold the receiver's token) and the events.
type WebhookInfo struct {
	URL    string   `json:"url"`
	Events []string `json:"events"`
}

// ShownWebhookURL is raw with only its scheme and host, so that a token in
// its query or its path (Slack's and Discord's webhook URLs carry theirs in
// the path) does not reach records, lists, webhook bodies or logs. A path,
// when there was one, shows as "/…".
func ShownWebhookURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return ""
	}
	shown := u.Scheme + "://" + u.Host
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		shown += "/…"
	}
	return shown
}
