// Package notify tells processes when tasks end, through one Redis pub/sub
// channel that the record store publishes on atomically with each ending.
// One subscription per process fans out to every local listener, so waiting
// on a task costs no Redis connection of its own.
package notify

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Channel carries the id of every task that ends.
const Channel = "siganteng:ended"

// EventsChannel carries the id of a task each time an event is added to its
// event stream (see store.Events): status changes, progress, text.
const EventsChannel = "siganteng:events"

// Hub delivers endings to listeners in this process.
type Hub struct {
	rdb redis.UniversalClient
	log *slog.Logger

	mu        sync.Mutex
	listeners map[string]map[chan struct{}]struct{} // by channel and task id
	ready     chan struct{}
}

// New returns a hub; Run must be started for it to deliver anything.
func New(rdb redis.UniversalClient, log *slog.Logger) *Hub {
	return &Hub{rdb: rdb, log: log, listeners: map[string]map[chan struct{}]struct{}{}, ready: make(chan struct{})}
}

// Run subscribes and delivers until ctx ends, resubscribing after failures.
func (h *Hub) Run(ctx context.Context) {
	for ctx.Err() == nil {
		sub := h.rdb.Subscribe(ctx, Channel, EventsChannel)
		if _, err := sub.Receive(ctx); err != nil {
			_ = sub.Close()
			if ctx.Err() == nil {
				h.log.Warn("task notifications unavailable; retrying", "err", err)
				time.Sleep(time.Second)
			}
			continue
		}
		h.once()
		// The channel closes only when the subscription does, not with ctx.
		stop := context.AfterFunc(ctx, func() { _ = sub.Close() })
		for msg := range sub.Channel() {
			h.deliver(listenKey(msg.Channel, msg.Payload))
		}
		stop()
		_ = sub.Close()
	}
}

func (h *Hub) once() {
	select {
	case <-h.ready:
	default:
		close(h.ready)
	}
}

// Ready is closed once the first subscription is in place.
func (h *Hub) Ready() <-chan struct{} { return h.ready }

func listenKey(channel, id string) string { return channel + "\x00" + id }

func (h *Hub) deliver(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.listeners[key] {
		select {
		case ch <- struct{}{}:
		default: // already told
		}
	}
}

// Listen returns a channel that receives when task id ends, and the function
// that stops listening.
func (h *Hub) Listen(id string) (<-chan struct{}, func()) {
	return h.listen(listenKey(Channel, id))
}

// ListenEvents returns a channel that receives when task id has new events;
// several events may be announced by one receive.
func (h *Hub) ListenEvents(id string) (<-chan struct{}, func()) {
	return h.listen(listenKey(EventsChannel, id))
}

func (h *Hub) listen(id string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	if h.listeners[id] == nil {
		h.listeners[id] = map[chan struct{}]struct{}{}
	}
	h.listeners[id][ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.listeners[id], ch)
		if len(h.listeners[id]) == 0 {
			delete(h.listeners, id)
		}
	}
}
