package e2e_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkPipelineStepOverhead measures what a pipeline adds between two
// steps, on an idle system with the shipped WORKER_POLL_INTERVAL and an
// instant provider: from one step's task ending (completed_at) to the next
// step's task starting (started_at), across pipelines of 16 steps each
// taking the one before's text. One op is one pipeline.
func BenchmarkPipelineStepOverhead(b *testing.B) {
	s := idleServer(b)
	steps := []string{`{"name":"s0","kind":"generate_text","input":{"prompt":"go"}}`}
	for i := 1; i < 16; i++ {
		steps = append(steps, `{"kind":"generate_text","input":{"prompt":"{{steps.`+prev(i)+`.text}}"}}`)
	}
	body := `{"steps":[` + strings.Join(steps, ",") + `]}`

	var gaps []time.Duration
	b.ResetTimer()
	for range b.N {
		p := startPipeline(b, s.url, body)
		final := awaitPipeline(b, s.url, p.ID, 30*time.Second)
		if final.Status != "SUCCESS" {
			b.Fatalf("pipeline ended %s: %+v", final.Status, final.Error)
		}
		b.StopTimer()
		var ended time.Time
		for k, st := range final.Steps {
			var rec struct {
				StartedAt   time.Time `json:"started_at"`
				CompletedAt time.Time `json:"completed_at"`
			}
			getJSON(b, s.url+"/background/tasks/"+st.TaskID, &rec)
			if k > 0 {
				gaps = append(gaps, rec.StartedAt.Sub(ended))
			}
			ended = rec.CompletedAt
		}
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(gaps)
	b.ReportMetric(ms(gaps[len(gaps)/2]), "step-gap-p50-ms")
	b.ReportMetric(ms(gaps[len(gaps)*99/100]), "step-gap-p99-ms")
}

func prev(i int) string {
	if i == 1 {
		return "s0"
	}
	return strconv.Itoa(i - 1)
}
