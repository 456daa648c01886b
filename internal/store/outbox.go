package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// OutboxKey is a list of webhook deliveries to queue, pushed by the scripts
// in the same step as the change they announce.
const OutboxKey = "{siganteng}:webhooks:outbox"

// inFlightKey holds outbox entries taken but not yet queued, so that a
// worker that dies in between loses none: they are put back at start-up.
const inFlightKey = "{siganteng}:webhooks:inflight"

// WebhookDue is one delivery to queue.
type WebhookDue struct {
	TaskID  string
	Event   string // task.WebhookStart, WebhookProgress or WebhookCompleted
	EventID string // the stream entry of the event: stable, so deliveries can be told apart and deduplicated
	raw     string
}

// NextWebhook waits up to wait for a delivery to queue and moves it in
// flight; ok is false when none came. Call WebhookQueued once it is queued.
func (s *Store) NextWebhook(ctx context.Context, wait time.Duration) (due WebhookDue, ok bool, err error) {
	raw, err := s.rdb.BLMove(ctx, OutboxKey, inFlightKey, "LEFT", "RIGHT", wait).Result()
	if errors.Is(err, redis.Nil) {
		return WebhookDue{}, false, nil
	}
	if err != nil {
		return WebhookDue{}, false, fmt.Errorf("store: webhook outbox: %w", err)
	}
	parts := strings.Fields(raw)
	if len(parts) != 3 {
		_ = s.rdb.LRem(ctx, inFlightKey, 1, raw).Err()
		return WebhookDue{}, false, fmt.Errorf("store: webhook outbox: malformed entry %q dropped", raw)
	}
	return WebhookDue{TaskID: parts[0], Event: parts[1], EventID: parts[2], raw: raw}, true, nil
}

// WebhookQueued forgets a delivery taken by NextWebhook.
func (s *Store) WebhookQueued(ctx context.Context, due WebhookDue) error {
	if err := s.rdb.LRem(ctx, inFlightKey, 1, due.raw).Err(); err != nil {
		return fmt.Errorf("store: webhook outbox: %w", err)
	}
	return nil
}

// ReturnWebhook puts a delivery taken by NextWebhook back at the end of the
// outbox, for a dispatcher that could not queue it.
func (s *Store) ReturnWebhook(ctx context.Context, due WebhookDue) error {
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.LRem(ctx, inFlightKey, 1, due.raw)
		p.RPush(ctx, OutboxKey, due.raw)
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: webhook outbox: %w", err)
	}
	return nil
}

// RequeueWebhooks puts back deliveries left in flight by a worker that
// stopped between taking and queuing them, and returns how many. If another
// worker is queuing one of them right now it is queued twice under the same
// id, which the queue refuses.
func (s *Store) RequeueWebhooks(ctx context.Context) (int, error) {
	n := 0
	for {
		err := s.rdb.LMove(ctx, inFlightKey, OutboxKey, "LEFT", "LEFT").Err()
		if errors.Is(err, redis.Nil) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("store: webhook outbox: %w", err)
		}
		n++
	}
}

// DeliveryPrefix starts the key of one queued webhook delivery's contents:
// the sealed URL and the body. The queued message holds only a reference, so
// neither the receiver's token nor the record sits in the queue (or its
// dashboard); the key expires once the delivery can no longer be retried.
const DeliveryPrefix = "{siganteng}:webhooks:delivery:"

// ErrDeliveryGone is returned by GetDelivery for a delivery whose contents
// expired or were never written.
var ErrDeliveryGone = errors.New("store: webhook delivery gone")

// PutDelivery keeps a delivery's sealed URL and body for ttl.
func (s *Store) PutDelivery(ctx context.Context, id, sealedURL string, body []byte, ttl time.Duration) error {
	key := DeliveryPrefix + id
	pipe := s.rdb.TxPipeline()
	pipe.HSet(ctx, key, "url", sealedURL, "body", body)
	pipe.PExpire(ctx, key, ttl)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("store: put webhook delivery %s: %w", id, err)
	}
	return nil
}

// GetDelivery reads what PutDelivery kept, or ErrDeliveryGone.
func (s *Store) GetDelivery(ctx context.Context, id string) (sealedURL string, body []byte, err error) {
	h, err := s.rdb.HGetAll(ctx, DeliveryPrefix+id).Result()
	switch {
	case err != nil:
		return "", nil, fmt.Errorf("store: get webhook delivery %s: %w", id, err)
	case h["url"] == "":
		return "", nil, ErrDeliveryGone
	}
	return h["url"], []byte(h["body"]), nil
}

// DeleteDelivery forgets a delivery that is done with.
func (s *Store) DeleteDelivery(ctx context.Context, id string) error {
	if err := s.rdb.Del(ctx, DeliveryPrefix+id).Err(); err != nil {
		return fmt.Errorf("store: delete webhook delivery %s: %w", id, err)
	}
	return nil
}
