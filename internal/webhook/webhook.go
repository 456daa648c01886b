// Package webhook posts task events to the URLs clients gave on submit, as
// Standard Webhooks (https://www.standardwebhooks.com): signed, retried for
// about a day, and queued like any other work so that they survive restarts.
//
// The record store puts each event a webhook asked for in an outbox in the
// same atomic step as the change itself; a Dispatcher in every worker moves
// outbox entries onto the webhooks queue, and a Deliverer posts them.
package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/siganteng/siganteng/internal/fetch"
	"github.com/siganteng/siganteng/internal/queue"
	"github.com/siganteng/siganteng/internal/sealed"
	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
)

// TaskType is the asynq task type of a delivery.
const TaskType = queue.TypeWebhook

// Schedule is the delay before each retry of a delivery that failed: the
// one Standard Webhooks' reference service uses, about 28 hours in all.
var Schedule = []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}

// Timeout bounds one delivery attempt.
const Timeout = 15 * time.Second

// Delivery is the payload of a queued delivery: a reference to its
// contents (Parcels), so that the queue holds neither the receiver's URL
// nor the record. The body is fixed when the delivery is queued, so every
// retry posts the same bytes under the same id. URL and Body inline are
// read from deliveries queued before contents moved out of the payload.
type Delivery struct {
	ID     string          `json:"webhook_id"`
	TaskID string          `json:"task_id"`
	Event  string          `json:"event"`
	URL    string          `json:"url,omitempty"`
	Body   json.RawMessage `json:"body,omitempty"`
}

// Parcels keeps the contents of queued deliveries.
type Parcels interface {
	PutDelivery(ctx context.Context, id, sealedURL string, body []byte, ttl time.Duration) error
	GetDelivery(ctx context.Context, id string) (sealedURL string, body []byte, err error)
	DeleteDelivery(ctx context.Context, id string) error
}

// ParcelTTL is how long a delivery's contents are kept: past its last
// retry on Schedule, with a margin.
var ParcelTTL = func() time.Duration {
	total := 6 * time.Hour
	for _, d := range Schedule {
		total += d + Timeout
	}
	return total
}()

// URLPurpose names the key webhook URLs are sealed with (see package
// sealed): API and workers derive it from WEBHOOK_SECRET.
const URLPurpose = "webhook url"

// Outbox is what the Dispatcher needs of the record store.
type Outbox interface {
	Parcels
	NextWebhook(ctx context.Context, wait time.Duration) (store.WebhookDue, bool, error)
	WebhookQueued(ctx context.Context, due store.WebhookDue) error
	ReturnWebhook(ctx context.Context, due store.WebhookDue) error
	RequeueWebhooks(ctx context.Context) (int, error)
	Get(ctx context.Context, id string) (*task.Record, error)
}

// Enqueuer puts a delivery on the webhooks queue; a delivery already queued
// under the same id is not an error.
type Enqueuer interface {
	EnqueueWebhook(ctx context.Context, id string, payload []byte, maxRetry int, timeout time.Duration) error
}

// Dispatcher moves deliveries from the outbox onto the queue.
type Dispatcher struct {
	outbox Outbox
	queue  Enqueuer
	log    *slog.Logger
	// Wait is how long one blocking read of the outbox waits; an idle
	// dispatcher costs one Redis call per Wait. Whole seconds: go-redis
	// rounds blocking timeouts down to them.
	Wait time.Duration
}

// NewDispatcher returns a dispatcher.
func NewDispatcher(outbox Outbox, queue Enqueuer, log *slog.Logger) *Dispatcher {
	return &Dispatcher{outbox: outbox, queue: queue, log: log, Wait: 2 * time.Second}
}

// Run dispatches until ctx ends. It first puts back deliveries a stopped
// worker left between outbox and queue.
func (d *Dispatcher) Run(ctx context.Context) {
	if n, err := d.outbox.RequeueWebhooks(ctx); err != nil {
		d.log.Warn("could not look for webhook deliveries left in flight", "err", err)
	} else if n > 0 {
		d.log.Info("webhook deliveries left in flight put back", "count", n)
	}
	for ctx.Err() == nil {
		if err := d.Step(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("webhook dispatch failed; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// Step moves at most one delivery, waiting up to Wait for one. A delivery
// it cannot queue goes back to the outbox.
func (d *Dispatcher) Step(ctx context.Context) error {
	due, ok, err := d.outbox.NextWebhook(ctx, d.Wait)
	if err != nil || !ok {
		return err
	}
	if err := d.forward(ctx, due); err != nil {
		if rerr := d.outbox.ReturnWebhook(context.WithoutCancel(ctx), due); rerr != nil {
			d.log.Warn("webhook delivery left in flight until a worker restarts", "task_id", due.TaskID, "err", rerr)
		}
		return err
	}
	return nil
}

// forward queues one delivery and forgets it from the outbox.
func (d *Dispatcher) forward(ctx context.Context, due store.WebhookDue) error {
	rec, err := d.outbox.Get(ctx, due.TaskID)
	switch {
	case task.CodeOf(err) == task.ENOTFOUND:
		d.log.Warn("webhook dropped: the task's record has expired", "task_id", due.TaskID, "event", due.Event)
		return d.outbox.WebhookQueued(ctx, due)
	case err != nil:
		return err
	case rec.WebhookURL == "":
		return d.outbox.WebhookQueued(ctx, due)
	}
	body, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("webhook: encode record %s: %w", rec.ID, err)
	}
	delivery := Delivery{ID: "msg_" + due.TaskID + "_" + due.EventID, TaskID: due.TaskID, Event: due.Event}
	if err := send(ctx, d.outbox, d.queue, delivery, rec.WebhookURL, body); err != nil {
		return err
	}
	return d.outbox.WebhookQueued(ctx, due)
}

// send keeps a delivery's contents and queues it; sending the same
// delivery again queues nothing more.
func send(ctx context.Context, parcels Parcels, queue Enqueuer, delivery Delivery, sealedURL string, body []byte) error {
	if err := parcels.PutDelivery(ctx, delivery.ID, sealedURL, body, ParcelTTL); err != nil {
		return err
	}
	payload, err := json.Marshal(delivery)
	if err != nil {
		return fmt.Errorf("webhook: encode delivery: %w", err)
	}
	return queue.EnqueueWebhook(ctx, delivery.ID, payload, len(Schedule), Timeout)
}

// Announcer sends events that are not a task's (a batch's end) to a
// sealed webhook URL, queued and delivered like a task's.
type Announcer struct {
	Parcels Parcels
	Queue   Enqueuer
}

// Announce queues one event, posted with body to sealedURL under the
// delivery id id (the same id twice is one delivery). about names what
// the event is of, for logs.
func (a Announcer) Announce(ctx context.Context, id, about, event, sealedURL string, body []byte) error {
	return send(ctx, a.Parcels, a.Queue, Delivery{ID: id, TaskID: about, Event: event}, sealedURL, body)
}

// Poster sends one POST; fetch.Client, with its guard against internal
// addresses, is the one used outside tests.
type Poster interface {
	Post(ctx context.Context, url string, header http.Header, body []byte) (int, error)
}

// Deliverer posts deliveries, signed with the server's secret.
type Deliverer struct {
	signer *standardwebhooks.Webhook
	box    *sealed.Box
	poster Poster
	// parcels holds the deliveries' contents; nil reads them from the
	// payload only.
	parcels Parcels
	log     *slog.Logger
	now     func() time.Time
}

// NewDeliverer returns a deliverer signing with secret (whsec_ and base64),
// which also opens the sealed URLs, reading deliveries' contents from
// parcels (nil: from the payload only).
func NewDeliverer(secret string, poster Poster, parcels Parcels, log *slog.Logger) (*Deliverer, error) {
	signer, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return nil, errors.New("webhook: WEBHOOK_SECRET is not whsec_ followed by base64")
	}
	box, err := sealed.New(secret, URLPurpose)
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	return &Deliverer{signer: signer, box: box, poster: poster, parcels: parcels, log: log, now: time.Now}, nil
}

// contents finds a delivery's URL and body.
func (d *Deliverer) contents(ctx context.Context, del *Delivery) error {
	if del.URL == "" && d.parcels != nil {
		url, body, err := d.parcels.GetDelivery(ctx, del.ID)
		if errors.Is(err, store.ErrDeliveryGone) {
			return fmt.Errorf("webhook: the delivery's contents expired: %w", asynq.SkipRetry)
		}
		if err != nil {
			return err
		}
		del.URL, del.Body = url, body
	}
	url, err := d.box.Open(del.URL)
	if err != nil {
		return fmt.Errorf("webhook: %w: %w", err, asynq.SkipRetry)
	}
	del.URL = url
	return nil
}

// done forgets a delivery's contents once it will not be tried again.
func (d *Deliverer) done(ctx context.Context, id string) {
	if d.parcels != nil {
		if err := d.parcels.DeleteDelivery(context.WithoutCancel(ctx), id); err != nil {
			d.log.Warn("webhook delivery contents not deleted; they expire", "webhook_id", id, "err", err)
		}
	}
}

// Deliver posts one delivery. A 2xx answer delivers it; 410 Gone means the
// receiver wants no more and stops it at once, as does a URL the guard
// refuses; any other answer or a network error is retried on Schedule.
func (d *Deliverer) Deliver(ctx context.Context, payload []byte) error {
	var del Delivery
	if err := json.Unmarshal(payload, &del); err != nil {
		return fmt.Errorf("webhook: unreadable delivery: %w: %w", err, asynq.SkipRetry)
	}
	if err := d.contents(ctx, &del); err != nil {
		d.log.Warn("webhook not delivered", "task_id", del.TaskID, "webhook_id", del.ID, "err", err)
		return err
	}
	retried, _ := asynq.GetRetryCount(ctx)
	log := d.log.With("task_id", del.TaskID, "webhook_id", del.ID, "event", del.Event,
		"url", task.ShownWebhookURL(del.URL), "attempt", retried+1)
	at := d.now()
	sig, err := d.signer.Sign(del.ID, at, del.Body)
	if err != nil {
		return fmt.Errorf("webhook: sign: %w", err)
	}
	header := http.Header{}
	header.Set("Content-Type", "application/json")
	header.Set("User-Agent", "SIGANTENG-webhook/1")
	header.Set(standardwebhooks.HeaderWebhookID, del.ID)
	header.Set(standardwebhooks.HeaderWebhookTimestamp, fmt.Sprint(at.Unix()))
	header.Set(standardwebhooks.HeaderWebhookSignature, sig)
	status, err := d.poster.Post(ctx, del.URL, header, del.Body)
	switch {
	case errors.Is(err, fetch.ErrRefused):
		log.Warn("webhook refused: its URL reaches an address that is not public", "err", err)
		d.done(ctx, del.ID)
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	case err != nil:
		log.Warn("webhook not delivered; will retry", "err", err)
		return err
	case status >= 200 && status < 300:
		log.Info("webhook delivered", "status", status)
		d.done(ctx, del.ID)
		return nil
	case status == http.StatusGone:
		log.Info("webhook receiver answered 410 Gone; not retried")
		d.done(ctx, del.ID)
		return fmt.Errorf("webhook: %s answered 410: %w", task.ShownWebhookURL(del.URL), asynq.SkipRetry)
	}
	log.Warn("webhook not accepted; will retry", "status", status)
	return fmt.Errorf("webhook: %s answered %d", task.ShownWebhookURL(del.URL), status)
}

// RetryDelay is the delay before retry number retried+1 of a delivery.
func RetryDelay(schedule []time.Duration, retried int) time.Duration {
	if retried < len(schedule) {
		return schedule[retried]
	}
	return schedule[len(schedule)-1]
}
