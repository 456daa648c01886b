package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/siganteng/siganteng/internal/notify"
	"github.com/siganteng/siganteng/internal/task"
)

// EventsPrefix starts the key of each task's event stream: a Redis stream
// that lives as long as the record, so that a client reconnecting with
// Last-Event-ID, or connecting after the end, gets the whole story.
const EventsPrefix = "{siganteng}:events:"

func eventsKey(id string) string { return EventsPrefix + id }

// The kinds of event a stream holds.
const (
	EventStatus   = "status"   // the status changed; data is a StatusEvent
	EventProgress = "progress" // the work reported progress; data is a ProgressEvent
	EventDelta    = "delta"    // text as the provider produces it; data is a DeltaEvent
)

// maxEvents bounds one task's stream. Text is written in batches a few
// times a second, so only a generation of hours would reach it; the record's
// result holds the whole text either way.
const maxEvents = 20000

var maxEventsText = strconv.Itoa(maxEvents)

// StatusEvent is the data of a status event.
type StatusEvent struct {
	TaskID  string        `json:"task_id"`
	Status  task.Status   `json:"status"`
	Attempt int           `json:"attempt,omitempty"`
	Error   *task.Failure `json:"error,omitempty"`
	Waiting *task.Waiting `json:"waiting,omitempty"`
}

// ProgressEvent is the data of a progress event.
type ProgressEvent struct {
	TaskID   string        `json:"task_id"`
	Attempt  int           `json:"attempt"`
	Progress task.Progress `json:"progress"`
}

// DeltaEvent is the data of a delta event: text that follows the text of
// the earlier deltas of the same attempt. A new attempt starts over.
type DeltaEvent struct {
	TaskID  string `json:"task_id"`
	Attempt int    `json:"attempt"`
	Text    string `json:"text"`
}

func statusEvent(id string, status task.Status, attempt int, failure *task.Failure) string {
	return mustJSON(StatusEvent{TaskID: id, Status: status, Attempt: attempt, Error: failure})
}

// Event is one entry of a task's stream.
type Event struct {
	ID   string          // the stream entry id, which orders events
	Kind string          // EventStatus, EventProgress or EventDelta
	Data json.RawMessage // one of the *Event types above, as JSON
}

// Terminal reports whether the event is a task's last: a status event with
// a terminal status.
func (e Event) Terminal() bool {
	if e.Kind != EventStatus {
		return false
	}
	var st StatusEvent
	return json.Unmarshal(e.Data, &st) == nil && st.Status.Terminal()
}

// ErrNotRunning is returned by Report when the attempt is no longer the
// task's running one: the task ended, or a newer attempt took over.
var ErrNotRunning = errors.New("store: the attempt is not running")

// reportScript adds text and progress of the running attempt, if it is
// still the running one.
//
// ARGV[2] the events channel, ARGV[3] attempt, ARGV[4] the delta event or
// "", ARGV[5] progress JSON or "", ARGV[6] the progress event or "",
// ARGV[7] "progress" when this progress may go to a webhook, else "".
//
// Returns 1 when written, 0 when the attempt is not running.
var reportScript = redis.NewScript(prelude + `
local h = redis.call('HMGET', KEYS[1], 'status', 'attempts')
if h[1] ~= 'STARTED' or h[2] ~= ARGV[3] then return 0 end
if ARGV[4] ~= '' then emit(ARGV[2], 'delta', ARGV[4], '') end
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[1], 'progress', ARGV[5])
  emit(ARGV[2], 'progress', ARGV[6], ARGV[7])
end
return 1
`)

// Report adds what a running attempt produced so far: text (may be empty)
// and progress (may be nil), in one round trip. webhook says whether this
// progress may be posted to the task's webhook.
func (s *Store) Report(ctx context.Context, id string, attempt int, text string, progress *task.Progress, webhook bool) error {
	var delta, prog, progEvent, hook string
	if text != "" {
		delta = mustJSON(DeltaEvent{TaskID: id, Attempt: attempt, Text: text})
	}
	if progress != nil {
		prog = mustJSON(progress)
		progEvent = mustJSON(ProgressEvent{TaskID: id, Attempt: attempt, Progress: *progress})
		if webhook {
			hook = task.WebhookProgress
		}
	}
	n, err := reportScript.Run(ctx, s.rdb, keys(id), id, notify.EventsChannel, attempt, delta, prog, progEvent, hook).Int()
	switch {
	case err != nil:
		return fmt.Errorf("store: report %s: %w", id, err)
	case n == 0:
		return ErrNotRunning
	}
	return nil
}

// Events returns up to count events of task id after the event with id
// after ("" or "0" from the start), oldest first.
func (s *Store) Events(ctx context.Context, id, after string, count int64) ([]Event, error) {
	start := "-"
	if after != "" && after != "0" {
		start = "(" + after
	}
	msgs, err := s.rdb.XRangeN(ctx, eventsKey(id), start, "+", count).Result()
	if err != nil {
		return nil, fmt.Errorf("store: events of %s: %w", id, err)
	}
	events := make([]Event, 0, len(msgs))
	for _, m := range msgs {
		kind, _ := m.Values["event"].(string)
		data, _ := m.Values["data"].(string)
		events = append(events, Event{ID: m.ID, Kind: kind, Data: json.RawMessage(data)})
	}
	return events, nil
}
