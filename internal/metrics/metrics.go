// Package metrics is SIGANTENG's Prometheus instrumentation: HTTP requests,
// tasks from submit to end, provider calls, the queues, and the Go runtime.
// Every method is safe on a nil *Metrics, which records nothing, so the
// layers that report need no wiring in tests.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the collectors of one process.
type Metrics struct {
	registry         *prometheus.Registry
	httpRequests     *prometheus.CounterVec
	httpDuration     *prometheus.HistogramVec
	submitted        *prometheus.CounterVec
	ended            *prometheus.CounterVec
	queueWait        *prometheus.HistogramVec
	providerCalls    *prometheus.CounterVec
	providerDuration *prometheus.HistogramVec
	flow             flowMetrics
}

// Buckets for task and provider times: AI calls take from milliseconds
// (embeddings) to minutes (long generations).
var slowBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// New returns metrics registered, with the Go runtime's and the process's,
// on a registry of their own.
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "siganteng_http_requests_total", Help: "HTTP requests by route, method and status.",
		}, []string{"route", "method", "status"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "siganteng_http_request_duration_seconds", Help: "HTTP request latency by route and method.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route", "method"}),
		submitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "siganteng_tasks_submitted_total", Help: "Tasks accepted with 202, by type.",
		}, []string{"type"}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "siganteng_tasks_ended_total", Help: "Tasks ended by a worker, by type, provider and final status (SUCCESS, FAILURE, REVOKED).",
		}, []string{"type", "provider", "status"}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "siganteng_task_queue_wait_seconds", Help: "Time from submit to the first attempt's start, by type.", Buckets: slowBuckets,
		}, []string{"type"}),
		providerCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "siganteng_provider_calls_total", Help: "Attempts' provider calls by provider, task type, outcome and the provider's HTTP status (0: none).",
		}, []string{"provider", "type", "outcome", "status_code"}),
		providerDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "siganteng_task_run_seconds", Help: "Time an attempt ran (the provider call and storing its result), by provider, type and outcome.", Buckets: slowBuckets,
		}, []string{"provider", "type", "outcome"}),
	}
	m.flow = newFlowMetrics()
	m.registry.MustRegister(m.httpRequests, m.httpDuration, m.submitted, m.ended, m.queueWait, m.providerCalls, m.providerDuration,
		m.flow.waits, m.flow.refused,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in Prometheus's text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// HTTPRequest records one request. route is the operation's path pattern,
// never the raw path, so that ids do not make a series each.
func (m *Metrics) HTTPRequest(route, method string, status int, d time.Duration) {
	if m == nil {
		return
	}
	m.httpRequests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.httpDuration.WithLabelValues(route, method).Observe(d.Seconds())
}

// Submitted records a task accepted.
func (m *Metrics) Submitted(typ string) {
	if m == nil {
		return
	}
	m.submitted.WithLabelValues(typ).Inc()
}

// Started records a task's first start, waited after its submit.
func (m *Metrics) Started(typ string, waited time.Duration) {
	if m == nil {
		return
	}
	m.queueWait.WithLabelValues(typ).Observe(waited.Seconds())
}

// Attempt records one attempt's provider call: outcome is "success" or the
// failure's code, status the provider's HTTP status when it answered.
func (m *Metrics) Attempt(provider, typ, outcome string, status int, d time.Duration) {
	if m == nil {
		return
	}
	m.providerCalls.WithLabelValues(provider, typ, outcome, strconv.Itoa(status)).Inc()
	m.providerDuration.WithLabelValues(provider, typ, outcome).Observe(d.Seconds())
}

// Ended records a task's end in a worker.
func (m *Metrics) Ended(typ, provider, status string) {
	if m == nil {
		return
	}
	m.ended.WithLabelValues(typ, provider, status).Inc()
}

// WatchQueues exports the size of each queue by state, and the age of its
// oldest pending task, read from asynq when Prometheus scrapes.
func (m *Metrics) WatchQueues(inspector *asynq.Inspector, queues []string) {
	if m == nil {
		return
	}
	m.registry.MustRegister(&queueCollector{inspector: inspector, queues: queues})
}

var (
	queueSize = prometheus.NewDesc("siganteng_queue_tasks", "Tasks in each asynq queue, by state.", []string{"queue", "state"}, nil)
	queueAge  = prometheus.NewDesc("siganteng_queue_latency_seconds", "Age of the oldest pending task in each queue.", []string{"queue"}, nil)
)

type queueCollector struct {
	inspector *asynq.Inspector
	queues    []string
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueSize
	ch <- queueAge
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, q := range c.queues {
		if ctx.Err() != nil {
			return
		}
		info, err := c.inspector.GetQueueInfo(q)
		if err != nil {
			continue // a queue no task has used yet does not exist in asynq
		}
		for state, n := range map[string]int{"pending": info.Pending, "active": info.Active, "scheduled": info.Scheduled,
			"retry": info.Retry, "archived": info.Archived, "completed": info.Completed} {
			ch <- prometheus.MustNewConstMetric(queueSize, prometheus.GaugeValue, float64(n), q, state)
		}
		ch <- prometheus.MustNewConstMetric(queueAge, prometheus.GaugeValue, info.Latency.Seconds(), q)
	}
}

// BreakerState is what the metrics need of one deployment's breaker.
type BreakerState struct {
	Open     bool
	Failures int
}

// WatchBreakers exports each routed deployment's circuit breaker, read
// through states when Prometheus scrapes.
func (m *Metrics) WatchBreakers(states func(ctx context.Context) map[string]BreakerState) {
	if m == nil {
		return
	}
	m.registry.MustRegister(&breakerCollector{states: states})
}

var (
	breakerOpen     = prometheus.NewDesc("siganteng_deployment_breaker_open", "1 while a routed deployment's circuit breaker is open (it is skipped).", []string{"deployment"}, nil)
	breakerFailures = prometheus.NewDesc("siganteng_deployment_failures", "Transient failures in a row of a routed deployment.", []string{"deployment"}, nil)
)

type breakerCollector struct {
	states func(ctx context.Context) map[string]BreakerState
}

func (c *breakerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- breakerOpen
	ch <- breakerFailures
}

func (c *breakerCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for id, s := range c.states(ctx) {
		open := 0.0
		if s.Open {
			open = 1
		}
		ch <- prometheus.MustNewConstMetric(breakerOpen, prometheus.GaugeValue, open, id)
		ch <- prometheus.MustNewConstMetric(breakerFailures, prometheus.GaugeValue, float64(s.Failures), id)
	}
}

// WatchLines exports how many tasks wait in each API key's line to be let
// into the worker queues (see store.Admission), read through lines when
// Prometheus scrapes.
func (m *Metrics) WatchLines(lines func(ctx context.Context) (map[string]int64, error)) {
	if m == nil {
		return
	}
	m.registry.MustRegister(&lineCollector{lines: lines})
}

var keyLine = prometheus.NewDesc("siganteng_key_line_tasks",
	"Tasks of each API key waiting in its line to be let into the worker queues (the key has its window of tasks queued or running).", []string{"key"}, nil)

type lineCollector struct {
	lines func(ctx context.Context) (map[string]int64, error)
}

func (c *lineCollector) Describe(ch chan<- *prometheus.Desc) { ch <- keyLine }

func (c *lineCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	lines, err := c.lines(ctx)
	if err != nil {
		return // Redis is down: the scrape shows the rest
	}
	for key, n := range lines {
		ch <- prometheus.MustNewConstMetric(keyLine, prometheus.GaugeValue, float64(n), key)
	}
}
