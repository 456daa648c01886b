// Package tracing is SIGANTENG's optional OpenTelemetry tracing: a span for
// each API request, carried in the queued task's headers into the worker,
// whose span holds the provider's HTTP calls. It is on when the standard
// OTEL_EXPORTER_OTLP_ENDPOINT (or _TRACES_ENDPOINT) names a collector, and
// exports over OTLP/HTTP; off, it costs nothing.
package tracing

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Tracing is the tracer provider of one process, or a no-op one.
type Tracing struct {
	provider trace.TracerProvider
	shutdown func(context.Context) error
	enabled  bool
}

// Setup reads the OTEL_* variables through getenv. Without an endpoint,
// the result traces nothing.
func Setup(ctx context.Context, getenv func(string) string, version string) (*Tracing, error) {
	endpoint := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if endpoint == "" {
		if base := getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); base != "" {
			endpoint = strings.TrimRight(base, "/") + "/v1/traces" // as the OTLP/HTTP specification says
		}
	}
	if endpoint == "" {
		return &Tracing{provider: noop.NewTracerProvider(), shutdown: func(context.Context) error { return nil }}, nil
	}
	exporter, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint))
	if err != nil {
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT: %w", err)
	}
	name := getenv("OTEL_SERVICE_NAME")
	if name == "" {
		name = "siganteng"
	}
	res := resource.NewSchemaless(semconv.ServiceName(name), semconv.ServiceVersion(version))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	return &Tracing{provider: tp, shutdown: tp.Shutdown, enabled: true}, nil
}

// Enabled reports whether spans are exported.
func (t *Tracing) Enabled() bool { return t.enabled }

// Shutdown exports what is left.
func (t *Tracing) Shutdown(ctx context.Context) error { return t.shutdown(ctx) }

// Tracer returns a tracer for name.
func (t *Tracing) Tracer(name string) trace.Tracer { return t.provider.Tracer(name) }

// Handler traces each request to h.
func (t *Tracing) Handler(h http.Handler) http.Handler {
	if !t.enabled {
		return h
	}
	return otelhttp.NewHandler(h, "http", otelhttp.WithTracerProvider(t.provider), otelhttp.WithPropagators(propagator),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + r.URL.Path }))
}

// Transport traces each call made through rt (the providers' calls).
func (t *Tracing) Transport(rt http.RoundTripper) http.RoundTripper {
	if !t.enabled {
		return rt
	}
	return otelhttp.NewTransport(rt, otelhttp.WithTracerProvider(t.provider), otelhttp.WithPropagators(propagator))
}

// propagator carries W3C trace context: in HTTP headers, and in the queued
// task's headers.
var propagator = propagation.TraceContext{}

// Inject writes ctx's span context into a task's headers.
func Inject(ctx context.Context, headers map[string]string) {
	propagator.Inject(ctx, propagation.MapCarrier(headers))
}

// Extract returns ctx carrying the span context of a task's headers.
func Extract(ctx context.Context, headers map[string]string) context.Context {
	return propagator.Extract(ctx, propagation.MapCarrier(headers))
}
