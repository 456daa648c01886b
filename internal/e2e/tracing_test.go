package e2e_test

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracev1 "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/siganteng/siganteng/internal/provider/providertest"
	"github.com/siganteng/siganteng/internal/redistest"
)

// otlpReceiver is a collector's OTLP/HTTP endpoint that keeps the spans.
type otlpReceiver struct {
	srv   *httptest.Server
	mu    sync.Mutex
	spans []*tracev1.Span
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	r := &otlpReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var export collectortrace.ExportTraceServiceRequest
		if req.URL.Path != "/v1/traces" || proto.Unmarshal(body, &export) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range export.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				r.spans = append(r.spans, ss.Spans...)
			}
		}
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func TestOneTraceFromRequestToProvider(t *testing.T) {
	t.Parallel()
	rcv := newOTLPReceiver(t)
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	env := openAIEnv(t, fake, redistest.URL(t))
	env["OTEL_EXPORTER_OTLP_ENDPOINT"] = rcv.srv.URL
	s := start(t, "serve", env)
	require.Contains(t, s.logs.String(), "tracing to OTLP")
	rec, _ := submit(t, s.url, `{"prompt":"trace me"}`)
	await(t, s.url, rec.TaskID, 10*time.Second)
	s.stop() // flushes the batch of spans
	select {
	case err := <-s.done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("server did not stop")
	}
	s.done <- nil // start's cleanup waits for this too

	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	byName := map[string]*tracev1.Span{}
	for _, sp := range rcv.spans {
		if _, seen := byName[sp.Name]; !seen {
			byName[sp.Name] = sp
		}
	}
	api, task := byName["POST /background/generate_text"], byName["task generate_text"]
	require.NotNil(t, api, "the API request's span, named by its route: %v", names(rcv.spans))
	require.NotNil(t, task, "the worker's span: %v", names(rcv.spans))
	require.Equal(t, hex.EncodeToString(api.TraceId), hex.EncodeToString(task.TraceId), "the trace crossed the queue")
	var call *tracev1.Span
	for _, sp := range rcv.spans {
		if sp.Kind == tracev1.Span_SPAN_KIND_CLIENT && string(sp.ParentSpanId) == string(task.SpanId) {
			call = sp
		}
	}
	require.NotNil(t, call, "the provider call is a child of the task's span: %v", names(rcv.spans))
	require.Equal(t, hex.EncodeToString(task.TraceId), hex.EncodeToString(call.TraceId))
}

func names(spans []*tracev1.Span) []string {
	var out []string
	for _, sp := range spans {
		out = append(out, sp.Name)
	}
	return out
}
