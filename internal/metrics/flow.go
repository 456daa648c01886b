package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// flowMetrics are flow control's: waits for budget and the provider's 429s.
type flowMetrics struct {
	waits   *prometheus.HistogramVec
	refused *prometheus.CounterVec
}

func newFlowMetrics() flowMetrics {
	return flowMetrics{
		waits: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "siganteng_flow_wait_seconds", Help: "Waits for a deployment's budget, in place or back in the queue, by deployment and what was spent (requests, tokens, concurrency, provider).",
			Buckets: slowBuckets,
		}, []string{"deployment", "reason"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "siganteng_provider_429_total", Help: "Answers 429 (rate limited) received from each deployment.",
		}, []string{"deployment"}),
	}
}

// Waited records one wait for budget; it implements flow.Observer.
func (m *Metrics) Waited(deployment, reason string, d time.Duration) {
	if m == nil {
		return
	}
	m.flow.waits.WithLabelValues(deployment, reason).Observe(d.Seconds())
}

// Refused records one 429 from a deployment; it implements flow.Observer.
func (m *Metrics) Refused(deployment string) {
	if m == nil {
		return
	}
	m.flow.refused.WithLabelValues(deployment).Inc()
}

// FlowState is what the metrics show of one deployment's limits.
type FlowState struct {
	Deployment             string
	RPM, TPM, Concurrent   int   // configured; 0 for none
	LearnedRPM, LearnedTPM int64 // said by the provider; 0 for nothing said
	PacedRPM               int64 // learned from 429s alone; 0 for none
	Paused                 bool
	Waiting                int64 // calls waiting in place in this process
}

// WatchFlow exports each deployment's limits, read through states when
// Prometheus scrapes.
func (m *Metrics) WatchFlow(states func() []FlowState) {
	if m == nil {
		return
	}
	m.registry.MustRegister(&flowCollector{states: states})
}

var (
	flowLimit   = prometheus.NewDesc("siganteng_deployment_limit", "A deployment's limit: kind is rpm, tpm or concurrent, source configured, learned (from the provider's headers) or paced (learned from 429s alone, raised while met and cut at each 429).", []string{"deployment", "kind", "source"}, nil)
	flowPaused  = prometheus.NewDesc("siganteng_deployment_paused", "1 while a deployment is paused at the provider's request (a 429's Retry-After, or a budget it says is spent).", []string{"deployment"}, nil)
	flowWaiting = prometheus.NewDesc("siganteng_deployment_waiting_calls", "Calls waiting in place for a deployment's budget in this process (tasks waiting in the queue are counted by the queue metrics).", []string{"deployment"}, nil)
)

type flowCollector struct{ states func() []FlowState }

func (c *flowCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- flowLimit
	ch <- flowPaused
	ch <- flowWaiting
}

func (c *flowCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.states() {
		for _, l := range []struct {
			kind, source string
			v            int64
		}{
			{"rpm", "configured", int64(s.RPM)}, {"tpm", "configured", int64(s.TPM)}, {"concurrent", "configured", int64(s.Concurrent)},
			{"rpm", "learned", s.LearnedRPM}, {"tpm", "learned", s.LearnedTPM}, {"rpm", "paced", s.PacedRPM},
		} {
			if l.v > 0 {
				ch <- prometheus.MustNewConstMetric(flowLimit, prometheus.GaugeValue, float64(l.v), s.Deployment, l.kind, l.source)
			}
		}
		paused := 0.0
		if s.Paused {
			paused = 1
		}
		ch <- prometheus.MustNewConstMetric(flowPaused, prometheus.GaugeValue, paused, s.Deployment)
		ch <- prometheus.MustNewConstMetric(flowWaiting, prometheus.GaugeValue, float64(s.Waiting), s.Deployment)
	}
}
