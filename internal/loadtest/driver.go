package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config is one run of the load driver.
type Config struct {
	URL     string        // the API's base URL
	Key     string        // an API key, when the API needs one
	Tasks   int           // how many tasks to submit
	Clients int           // concurrent clients
	Poll    time.Duration // how often a client reads a task's status
	Timeout time.Duration // how long to wait for every task to end
	// Model is the model the tasks name (a routing file's); "" for the
	// default.
	Model string
	// ProbeModel is the model the probe's tasks name; "" for Model.
	ProbeModel string
	// ProbeKey, when set, is a second API key that, while the run lasts,
	// submits one task at a time and measures each one's latency: what
	// another tenant sees behind the run's backlog.
	ProbeKey string
	// ProviderURL, when set, is a bench provider's base URL (without /v1):
	// its /stats before and after give how many of its calls were refused.
	ProviderURL string
}

// Report is what a run measured.
type Report struct {
	Tasks, Clients int
	SubmitSeconds  float64 // from the first submit to the last 202
	EndSeconds     float64 // from the first submit to the last task seen ended
	SubmitRate     float64 // accepted per second
	TaskRate       float64 // tasks seen ended per second, end to end
	P50, P95, P99  time.Duration
	Statuses       map[string]int // final statuses seen
	SubmitErrors   int            // submits not answered 202
	ReadErrors     int            // status reads that failed
	Unfinished     int            // tasks not seen ended within Timeout
	ServerRSSBytes float64        // process_resident_memory_bytes from /metrics after the run; 0 if unreadable
	StatusReads    int64
	StatusReadRate float64 // status reads per second while waiting
	// Probe is the second key's one-at-a-time tasks (ProbeKey).
	Probe                     []time.Duration
	ProbeP50, ProbeP95        time.Duration
	ProviderAnswered, Refused int64 // the bench provider's calls during the run (ProviderURL)
}

// Latency submits cfg.Tasks tasks one at a time, each after the last has
// ended, from one client polling every cfg.Poll: the latency of an idle
// system, as a user sees it.
func Latency(ctx context.Context, cfg Config) (Report, error) {
	client := &http.Client{Timeout: 30 * time.Second}
	rep := Report{Tasks: cfg.Tasks, Clients: 1, Statuses: map[string]int{}}
	latencies := make([]time.Duration, 0, cfg.Tasks)
	start := time.Now()
	for n := range cfg.Tasks {
		at := time.Now()
		id, err := submit(ctx, client, cfg, int64(n))
		if err != nil {
			rep.SubmitErrors++
			continue
		}
		for deadline := at.Add(cfg.Timeout); ; time.Sleep(cfg.Poll) {
			if time.Now().After(deadline) || ctx.Err() != nil {
				rep.Unfinished++
				break
			}
			status, err := readStatus(ctx, client, cfg, id)
			rep.StatusReads++
			if err != nil {
				rep.ReadErrors++
				continue
			}
			if status == "SUCCESS" || status == "FAILURE" || status == "REVOKED" {
				rep.Statuses[status]++
				latencies = append(latencies, time.Since(at))
				break
			}
		}
	}
	rep.EndSeconds = time.Since(start).Seconds()
	rep.SubmitSeconds = rep.EndSeconds
	rep.TaskRate = float64(len(latencies)) / rep.EndSeconds
	rep.SubmitRate = rep.TaskRate
	rep.StatusReadRate = float64(rep.StatusReads) / rep.EndSeconds
	slices.Sort(latencies)
	rep.P50, rep.P95, rep.P99 = percentile(latencies, 0.50), percentile(latencies, 0.95), percentile(latencies, 0.99)
	rep.ServerRSSBytes = serverRSS(ctx, client, cfg)
	return rep, nil
}

// Run submits cfg.Tasks generate_text tasks from cfg.Clients clients as fast
// as the API takes them, then has the same clients poll the tasks until
// each has ended, and reports rates and the submit-to-visible-end latencies
// (under a backlog these include the time waiting in the queue).
func Run(ctx context.Context, cfg Config) (Report, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Clients * 2}, Timeout: 30 * time.Second}
	type pending struct {
		id        string
		submitted time.Time
	}
	var (
		mu        sync.Mutex
		submitted []pending
		rep       = Report{Tasks: cfg.Tasks, Clients: cfg.Clients, Statuses: map[string]int{}}
		next      atomic.Int64
		reads     atomic.Int64
		firstErr  error
	)
	before := providerStats(ctx, cfg.ProviderURL)
	start := time.Now()
	probeDone := make(chan struct{})
	probed := make(chan []time.Duration, 1)
	go func() { probed <- probe(ctx, cfg, probeDone) }()
	var wg sync.WaitGroup
	for range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := next.Add(1); n <= int64(cfg.Tasks); n = next.Add(1) {
				at := time.Now()
				id, err := submit(ctx, client, cfg, n)
				var lim *limitedError
				for errors.As(err, &lim) && ctx.Err() == nil { // the key's pace, not a failure
					time.Sleep(lim.wait)
					id, err = submit(ctx, client, cfg, n)
				}
				mu.Lock()
				if err != nil {
					rep.SubmitErrors++
					if firstErr == nil {
						firstErr = err
					}
				} else {
					submitted = append(submitted, pending{id: id, submitted: at})
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	rep.SubmitSeconds = time.Since(start).Seconds()
	rep.SubmitRate = float64(len(submitted)) / rep.SubmitSeconds
	if len(submitted) == 0 && firstErr != nil {
		return rep, fmt.Errorf("no task was accepted: %w", firstErr)
	}

	// Every client polls its share of the tasks, round robin, until each
	// has ended.
	deadline := time.Now().Add(cfg.Timeout)
	latencies := make([]time.Duration, 0, len(submitted))
	waitStart := time.Now()
	var lastEnd atomic.Int64
	for c := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []pending
			for i := c; i < len(submitted); i += cfg.Clients {
				mine = append(mine, submitted[i])
			}
			// Oldest first, one at a time: tasks end roughly in the order
			// they were queued, so a client rarely reads a task twice, and
			// the reads do not crowd out the work being measured.
			for len(mine) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
				p := mine[0]
				status, err := readStatus(ctx, client, cfg, p.id)
				reads.Add(1)
				var lim *limitedError
				switch {
				case errors.As(err, &lim): // the key's pace, not a failure
					time.Sleep(lim.wait)
				case err != nil:
					mu.Lock()
					rep.ReadErrors++
					mu.Unlock()
					time.Sleep(cfg.Poll)
				case status == "SUCCESS" || status == "FAILURE" || status == "REVOKED":
					now := time.Now()
					mu.Lock()
					rep.Statuses[status]++
					latencies = append(latencies, now.Sub(p.submitted))
					mu.Unlock()
					for {
						prev := lastEnd.Load()
						if now.UnixNano() <= prev || lastEnd.CompareAndSwap(prev, now.UnixNano()) {
							break
						}
					}
					mine = mine[1:]
				default:
					time.Sleep(cfg.Poll)
				}
			}
			mu.Lock()
			rep.Unfinished += len(mine)
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(probeDone)
	rep.Probe = <-probed
	slices.Sort(rep.Probe)
	rep.ProbeP50, rep.ProbeP95 = percentile(rep.Probe, 0.50), percentile(rep.Probe, 0.95)
	if cfg.ProviderURL != "" {
		after := providerStats(ctx, cfg.ProviderURL)
		rep.ProviderAnswered, rep.Refused = after.Answered-before.Answered, after.Refused-before.Refused
	}
	rep.StatusReads = reads.Load()
	rep.StatusReadRate = float64(rep.StatusReads) / time.Since(waitStart).Seconds()
	if end := lastEnd.Load(); end > 0 {
		rep.EndSeconds = time.Unix(0, end).Sub(start).Seconds()
		rep.TaskRate = float64(len(latencies)) / rep.EndSeconds
	}
	slices.Sort(latencies)
	rep.P50, rep.P95, rep.P99 = percentile(latencies, 0.50), percentile(latencies, 0.95), percentile(latencies, 0.99)
	rep.ServerRSSBytes = serverRSS(ctx, client, cfg)
	return rep, nil
}

// probePoll is how often the probe reads its task's status.
const probePoll = 5 * time.Millisecond

// probe submits one task at a time with cfg.ProbeKey until done closes,
// and returns each one's submit-to-end latency.
func probe(ctx context.Context, cfg Config, done <-chan struct{}) []time.Duration {
	if cfg.ProbeKey == "" {
		return nil
	}
	cfg.Key = cfg.ProbeKey
	if cfg.ProbeModel != "" {
		cfg.Model = cfg.ProbeModel
	}
	client := &http.Client{Timeout: 30 * time.Second}
	var out []time.Duration
	for n := int64(1); ; n++ {
		select {
		case <-done:
			return out
		case <-ctx.Done():
			return out
		default:
		}
		at := time.Now()
		id, err := submit(ctx, client, cfg, -n)
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		for ctx.Err() == nil {
			status, err := readStatus(ctx, client, cfg, id)
			if err == nil && (status == "SUCCESS" || status == "FAILURE" || status == "REVOKED") {
				out = append(out, time.Since(at))
				break
			}
			time.Sleep(probePoll) // one client: fine-grained, so it adds little to what it measures
		}
	}
}

// benchStats is a bench provider's /stats.
type benchStats struct{ Answered, Refused int64 }

func providerStats(ctx context.Context, base string) benchStats {
	var s benchStats
	if base == "" {
		return s
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/stats", nil)
	if err != nil {
		return s
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return s
	}
	defer res.Body.Close()
	var body struct {
		Answered int64 `json:"answered"`
		Refused  int64 `json:"refused"`
	}
	if json.NewDecoder(res.Body).Decode(&body) == nil {
		s = benchStats{Answered: body.Answered, Refused: body.Refused}
	}
	return s
}

func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * q)
	return sorted[i]
}

func request(ctx context.Context, cfg Config, method, path, body string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(cfg.URL, "/")+path, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if cfg.Key != "" {
		req.Header.Set("Authorization", "Bearer "+cfg.Key)
	}
	return req, nil
}

func submit(ctx context.Context, client *http.Client, cfg Config, n int64) (string, error) {
	model := ""
	if cfg.Model != "" {
		model = fmt.Sprintf(`,"model":%q`, cfg.Model)
	}
	req, err := request(ctx, cfg, http.MethodPost, "/background/generate_text", fmt.Sprintf(`{"prompt":"bench task %d","max_tokens":8%s}`, n, model))
	if err != nil {
		return "", err
	}
	res, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	var rec struct {
		TaskID string `json:"task_id"`
	}
	if res.StatusCode != http.StatusAccepted {
		return "", answerError("submit", res)
	}
	if err := json.NewDecoder(res.Body).Decode(&rec); err != nil {
		return "", err
	}
	return rec.TaskID, nil
}

func readStatus(ctx context.Context, client *http.Client, cfg Config, id string) (string, error) {
	req, err := request(ctx, cfg, http.MethodGet, "/background/tasks/"+id, "")
	if err != nil {
		return "", err
	}
	res, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", answerError("status read", res)
	}
	var rec struct {
		Status string `json:"status"`
	}
	if err := json.NewDecoder(res.Body).Decode(&rec); err != nil {
		return "", err
	}
	return rec.Status, nil
}

// limitedError is an answer of 429: the API key's rate limit, which the
// client waits out (Retry-After) instead of counting a failure.
type limitedError struct{ wait time.Duration }

func (e *limitedError) Error() string { return fmt.Sprintf("rate limited; retry after %s", e.wait) }

// answerError describes an answer other than the one wanted, with the
// problem's detail, so that "answered 401" also says why.
func answerError(what string, res *http.Response) error {
	if res.StatusCode == http.StatusTooManyRequests {
		_, _ = io.Copy(io.Discard, res.Body)
		wait := time.Second
		if secs, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && secs > 0 {
			wait = time.Duration(secs) * time.Second
		}
		return &limitedError{wait: wait}
	}
	var problem struct {
		Detail string `json:"detail"`
	}
	_ = json.NewDecoder(io.LimitReader(res.Body, 64<<10)).Decode(&problem)
	if problem.Detail != "" {
		return fmt.Errorf("%s answered %d: %s", what, res.StatusCode, problem.Detail)
	}
	return fmt.Errorf("%s answered %d", what, res.StatusCode)
}

// serverRSS reads the API process's resident memory from its /metrics (an
// admin key or an open API is needed); 0 when it cannot.
func serverRSS(ctx context.Context, client *http.Client, cfg Config) float64 {
	req, err := request(ctx, cfg, http.MethodGet, "/metrics", "")
	if err != nil {
		return 0
	}
	res, err := client.Do(req)
	if err != nil {
		return 0
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "process_resident_memory_bytes "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// Print writes the report for people.
func (r Report) Print(w io.Writer) {
	fmt.Fprintf(w, "tasks %d from %d clients\n", r.Tasks, r.Clients)
	fmt.Fprintf(w, "submit:      %.0f accepted/s (%d in %.2fs), %d errors\n", r.SubmitRate, r.Tasks-r.SubmitErrors, r.SubmitSeconds, r.SubmitErrors)
	fmt.Fprintf(w, "end to end:  %.0f tasks/s (last end %.2fs after the first submit)\n", r.TaskRate, r.EndSeconds)
	fmt.Fprintf(w, "latency:     p50 %s  p95 %s  p99 %s (submit to a status read seeing the end)\n", r.P50.Round(time.Microsecond), r.P95.Round(time.Microsecond), r.P99.Round(time.Microsecond))
	fmt.Fprintf(w, "status reads: %d (%.0f/s while waiting), %d errors\n", r.StatusReads, r.StatusReadRate, r.ReadErrors)
	fmt.Fprintf(w, "final:       %v, %d not ended in time\n", r.Statuses, r.Unfinished)
	if len(r.Probe) > 0 {
		fmt.Fprintf(w, "probe key:   %d tasks one at a time, p50 %s  p95 %s\n", len(r.Probe), r.ProbeP50.Round(time.Millisecond), r.ProbeP95.Round(time.Millisecond))
	}
	if calls := r.ProviderAnswered + r.Refused; calls > 0 {
		fmt.Fprintf(w, "provider:    %d calls, %d refused with 429 (%.2f%%)\n", calls, r.Refused, 100*float64(r.Refused)/float64(calls))
	}
	if r.ServerRSSBytes > 0 {
		fmt.Fprintf(w, "server RSS:  %.1f MB after the run\n", r.ServerRSSBytes/1e6)
	} else {
		fmt.Fprintln(w, "server RSS:  unknown (/metrics needs an admin key, or METRICS_ADDR)")
	}
}

// StatusReport is what a status-read run measured.
type StatusReport struct {
	Clients        int
	Seconds        float64
	Reads, Errors  int64
	Limited        int64   // reads answered 429 (the key's rate limit), waited out, not errors
	Rate           float64 // reads answered 200 per second
	P50, P95, P99  time.Duration
	ServerRSSBytes float64
}

// Status submits one task, waits for it to end, then has cfg.Clients
// clients read its status as fast as the API answers for d: the status
// read rate on its own, without work competing for the cores.
func Status(ctx context.Context, cfg Config, d time.Duration) (StatusReport, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Clients * 2}, Timeout: 30 * time.Second}
	rep := StatusReport{Clients: cfg.Clients}
	id, err := submit(ctx, client, cfg, 0)
	if err != nil {
		return rep, err
	}
	for deadline := time.Now().Add(cfg.Timeout); ; time.Sleep(cfg.Poll) {
		status, err := readStatus(ctx, client, cfg, id)
		if err == nil && (status == "SUCCESS" || status == "FAILURE" || status == "REVOKED") {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return rep, fmt.Errorf("the task did not end within %s", cfg.Timeout)
		}
	}
	var (
		mu        sync.Mutex
		latencies []time.Duration
		wg        sync.WaitGroup
	)
	start := time.Now()
	stop := start.Add(d)
	for range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			var errs, limited int64
			for time.Now().Before(stop) && ctx.Err() == nil {
				at := time.Now()
				if _, err := readStatus(ctx, client, cfg, id); err != nil {
					var lim *limitedError
					if errors.As(err, &lim) {
						limited++
						time.Sleep(min(lim.wait, time.Until(stop)))
						continue
					}
					errs++
					continue
				}
				mine = append(mine, time.Since(at))
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			rep.Errors += errs
			rep.Limited += limited
			mu.Unlock()
		}()
	}
	wg.Wait()
	rep.Seconds = time.Since(start).Seconds()
	rep.Reads = int64(len(latencies))
	rep.Rate = float64(rep.Reads) / rep.Seconds
	slices.Sort(latencies)
	rep.P50, rep.P95, rep.P99 = percentile(latencies, 0.50), percentile(latencies, 0.95), percentile(latencies, 0.99)
	rep.ServerRSSBytes = serverRSS(ctx, client, cfg)
	return rep, nil
}

// Print writes the report for people.
func (r StatusReport) Print(w io.Writer) {
	fmt.Fprintf(w, "status reads of one finished task from %d clients for %.1fs\n", r.Clients, r.Seconds)
	fmt.Fprintf(w, "reads:       %.0f/s (%d answered 200), %d errors\n", r.Rate, r.Reads, r.Errors)
	if r.Limited > 0 {
		fmt.Fprintf(w, "rate limited: %d reads answered 429 and were retried after Retry-After: the key's limit "+
			"(RATE_LIMIT_RPS, or keys create --rps) paced the run, not the server\n", r.Limited)
	}
	fmt.Fprintf(w, "latency:     p50 %s  p95 %s  p99 %s\n", r.P50.Round(time.Microsecond), r.P95.Round(time.Microsecond), r.P99.Round(time.Microsecond))
	if r.ServerRSSBytes > 0 {
		fmt.Fprintf(w, "server RSS:  %.1f MB after the run\n", r.ServerRSSBytes/1e6)
	} else {
		fmt.Fprintln(w, "server RSS:  unknown (/metrics needs an admin key, or METRICS_ADDR)")
	}
}
