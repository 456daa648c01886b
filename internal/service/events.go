package service

import (
	"context"
	"encoding/json"
	"time"

	"github.com/siganteng/siganteng/internal/auth"
	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
)

// Event is one server-sent event of a task.
type Event struct {
	ID   string // the stream entry id: a client resumes after it with Last-Event-ID
	Kind string // store.EventStatus, EventProgress or EventDelta
	Data json.RawMessage
}

// eventBatch bounds the events read in one round trip.
const eventBatch = 500

// HoldStream takes one of the caller's waiting connections for an event
// stream, before the stream answers: ELIMITED when its key has
// MaxWaitingPerKey open already. release gives it back.
func (s *Service) HoldStream(ctx context.Context) (release func(), err error) {
	caller := auth.FromContext(ctx)
	return s.takeHold(ctx, holdWaiting, caller, s.waitLimit(caller), 0) // renewed while the stream is open
}

// FollowEvents sends task id's events after the event after ("" from the
// start), oldest first, and then each new one as it comes, until the
// terminal event has been sent (it returns nil), ctx ends, or send fails.
// The terminal status event carries the final record. When nothing happens
// for keepalive, idle is called, to keep proxies from closing the stream.
//
// It reads Redis once per wake-up: new events are announced on the events
// channel, so nothing polls.
func (s *Service) FollowEvents(ctx context.Context, id, after string, keepalive time.Duration, send func(Event) error, idle func() error) error {
	return s.follow(ctx, id, after, keepalive, send, idle, func(ctx context.Context, e store.Event) Event { return s.finalEvent(ctx, id, e) })
}

// follow is FollowEvents of any stream, final making its terminal event.
func (s *Service) follow(ctx context.Context, id, after string, keepalive time.Duration, send func(Event) error, idle func() error,
	final func(ctx context.Context, e store.Event) Event) error {
	wake, stop := s.deps.Endings.ListenEvents(id)
	defer stop()
	ticker := time.NewTicker(keepalive)
	defer ticker.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, storeTimeout)
		events, err := s.deps.Records.Events(rctx, id, after, eventBatch)
		cancel()
		if err != nil {
			return task.Unavailable("the task store is unavailable", err)
		}
		for _, e := range events {
			after = e.ID
			if e.Terminal() {
				return send(final(ctx, e))
			}
			if err := send(Event{ID: e.ID, Kind: e.Kind, Data: e.Data}); err != nil {
				return err
			}
		}
		if len(events) == eventBatch {
			continue // more are waiting
		}
		if len(events) == 0 && after == "" {
			// A record from before event streams, or one whose stream was
			// lost: its record tells what there is to tell.
			if rec, err := s.Get(ctx, id); err == nil && rec.Status.Terminal() {
				return send(Event{Kind: store.EventStatus, Data: mustJSON(rec)})
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-ticker.C:
			if err := idle(); err != nil {
				return err
			}
		}
	}
}

// finalEvent is the terminal event with the final record as its data; if
// the record has just expired, the event as stored.
func (s *Service) finalEvent(ctx context.Context, id string, e store.Event) Event {
	out := Event{ID: e.ID, Kind: e.Kind, Data: e.Data}
	if rec, err := s.Get(ctx, id); err == nil {
		out.Data = mustJSON(rec)
	}
	return out
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own plain structs are passed
	}
	return b
}

// ListQuery selects tasks to list.
type ListQuery = store.ListQuery

// List returns a page of tasks, newest first.
func (s *Service) List(ctx context.Context, q ListQuery) (task.Page, error) {
	caller := auth.FromContext(ctx)
	q.Owner, q.All = caller.Owner(), caller.Admin
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	page, err := s.deps.Records.List(ctx, q)
	if err != nil && task.CodeOf(err) != task.EINVALID {
		return task.Page{}, task.Unavailable("the task store is unavailable", err)
	}
	return page, err
}
