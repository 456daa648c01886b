package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/siganteng/siganteng/internal/loadtest"
)

const benchUsage = `Usage:
  siganteng bench provider [--addr 127.0.0.1:9999] [--delay 0s] [--error-rate 0]
                           [--rpm 0] [--tpm 0] [--concurrent 0] [--quiet-limits | --retry-after-only]
      an instant OpenAI-compatible provider: start SIGANTENG against it with
      OPENAI_BASE_URL=http://127.0.0.1:9999/v1 OPENAI_API_KEY=bench; with
      limits it enforces them as OpenAI does (429, Retry-After,
      retry-after-ms, x-ratelimit-* on every answer, or only on 429s with
      --quiet-limits, or a 429 with Retry-After alone with
      --retry-after-only); GET /stats counts answered and refused calls
  siganteng bench run [--url http://127.0.0.1:8000] [--key KEY] [--tasks 10000] [--clients 32] [--poll 2ms] [--timeout 2m]
                      [--probe-key KEY] [--provider http://127.0.0.1:9999] [--model M] [--probe-model M]
      submits the tasks as fast as the API takes them, then polls each until
      it ends; prints submit and end-to-end rates, latencies, errors and the
      server's memory; --probe-key has a second key submit one task at a
      time meanwhile and reports its latencies (naming --probe-model, to
      time another deployment behind a backlog); --provider reports the
      bench provider's 429s
  siganteng bench latency [--url …] [--key KEY] [--tasks 300] [--poll 2ms]
      one task at a time on an idle system: submit-to-end latency
  siganteng bench status [--url …] [--key KEY] [--clients 32] [--duration 10s]
      status reads of one finished task as fast as the API answers
  siganteng bench batch [--url …] [--key KEY] [--lines 20000] [--timeout 30m]
                        [--redis redis://…] [--provider http://127.0.0.1:9999] [--model M]
      one batch of chat lines through /v1/files and /v1/batches, polled to
      its end: lines per second, the server's peak memory, and with --redis
      the most Redis memory it used
`

// bench runs the load tool's subcommands.
func bench(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("bench: want provider, run, latency, status or batch\n\n%s", benchUsage)
	}
	fs := flag.NewFlagSet("bench "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	switch args[0] {
	case "provider":
		addr := fs.String("addr", "127.0.0.1:9999", "address to listen on")
		delay := fs.Duration("delay", 0, "wait before each answer")
		errorRate := fs.Float64("error-rate", 0, "share of calls failed with 500 or 429 (0 to 1)")
		var limits loadtest.Limits
		fs.IntVar(&limits.RPM, "rpm", 0, "requests per minute allowed (0: none)")
		fs.IntVar(&limits.TPM, "tpm", 0, "tokens per minute allowed (0: none)")
		fs.IntVar(&limits.Concurrent, "concurrent", 0, "calls at once allowed (0: none)")
		fs.BoolVar(&limits.Quiet, "quiet-limits", false, "send x-ratelimit-* headers only with a 429")
		fs.BoolVar(&limits.RetryAfterOnly, "retry-after-only", false, "say nothing of the limits but a 429's Retry-After, in whole seconds")
		if err := fs.Parse(args[1:]); err != nil {
			return fmt.Errorf("bench provider: %w\n\n%s", err, benchUsage)
		}
		ln, err := net.Listen("tcp", *addr)
		if err != nil {
			return fmt.Errorf("bench provider: %w", err)
		}
		if limits.RPM < 0 || limits.TPM < 0 || limits.Concurrent < 0 {
			return fmt.Errorf("bench provider: --rpm, --tpm and --concurrent must be 0 or more")
		}
		srv := &http.Server{Handler: loadtest.Provider{Delay: *delay, ErrorRate: *errorRate, Limits: limits}.Handler(), ReadHeaderTimeout: 10 * time.Second}
		fmt.Fprintf(stdout, "instant provider on http://%s/v1 (delay %s, error rate %.2f, limits rpm %d tpm %d concurrent %d)\n",
			ln.Addr(), *delay, *errorRate, limits.RPM, limits.TPM, limits.Concurrent)
		go func() {
			<-ctx.Done()
			_ = srv.Close()
		}()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	case "batch":
		cfg := loadtest.BatchConfig{}
		fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:8000", "the API")
		fs.StringVar(&cfg.Key, "key", "", "an API key (an admin key also lets the report read the server's memory)")
		fs.IntVar(&cfg.Lines, "lines", 20000, "lines in the batch")
		fs.DurationVar(&cfg.Timeout, "timeout", 30*time.Minute, "how long to wait for the batch to end")
		fs.StringVar(&cfg.RedisURL, "redis", "", "the server's Redis, to sample its memory")
		fs.StringVar(&cfg.ProviderURL, "provider", "", "a bench provider's address, to report its 429s")
		fs.StringVar(&cfg.Model, "model", "", "the model the lines name; empty: the default")
		if err := fs.Parse(args[1:]); err != nil {
			return fmt.Errorf("bench batch: %w\n\n%s", err, benchUsage)
		}
		if cfg.Lines < 1 {
			return fmt.Errorf("bench batch: --lines must be at least 1")
		}
		rep, err := loadtest.Batch(ctx, cfg)
		if err != nil {
			return fmt.Errorf("bench batch: %w", err)
		}
		rep.Print(stdout)
		if rep.Status != "completed" || rep.Failed > 0 {
			return fmt.Errorf("bench batch: the batch ended %s with %d failed lines", rep.Status, rep.Failed)
		}
		return nil
	case "run", "latency", "status":
		cfg := loadtest.Config{}
		fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:8000", "the API")
		fs.StringVar(&cfg.Key, "key", "", "an API key (an admin key also lets the report read the server's memory)")
		defaultTasks := 10000
		if args[0] == "latency" {
			defaultTasks = 300
		}
		fs.IntVar(&cfg.Tasks, "tasks", defaultTasks, "tasks to submit")
		fs.IntVar(&cfg.Clients, "clients", 32, "concurrent clients (run only)")
		fs.DurationVar(&cfg.Poll, "poll", 2*time.Millisecond, "status polling interval")
		fs.DurationVar(&cfg.Timeout, "timeout", 2*time.Minute, "how long to wait for the tasks to end")
		fs.StringVar(&cfg.ProbeKey, "probe-key", "", "a second API key submitting one task at a time during the run (run only)")
		fs.StringVar(&cfg.Model, "model", "", "the model the tasks name (a ROUTES_FILE name); empty: the default")
		fs.StringVar(&cfg.ProbeModel, "probe-model", "", "the model the probe key's tasks name; empty: --model")
		fs.StringVar(&cfg.ProviderURL, "provider", "", "a bench provider's address, to report its 429s (run only)")
		duration := fs.Duration("duration", 10*time.Second, "how long to read (status only)")
		if err := fs.Parse(args[1:]); err != nil {
			return fmt.Errorf("bench %s: %w\n\n%s", args[0], err, benchUsage)
		}
		if cfg.Tasks < 1 || cfg.Clients < 1 {
			return fmt.Errorf("bench %s: --tasks and --clients must be at least 1", args[0])
		}
		if args[0] == "status" {
			rep, err := loadtest.Status(ctx, cfg, *duration)
			if err != nil {
				return fmt.Errorf("bench status: %w", err)
			}
			rep.Print(stdout)
			if rep.Errors > 0 {
				return fmt.Errorf("bench: %d status reads failed", rep.Errors)
			}
			return nil
		}
		measure := loadtest.Run
		if args[0] == "latency" {
			measure = loadtest.Latency
		}
		rep, err := measure(ctx, cfg)
		if err != nil {
			return err
		}
		rep.Print(stdout)
		if rep.Unfinished > 0 {
			return fmt.Errorf("bench: %d tasks did not end within %s", rep.Unfinished, cfg.Timeout)
		}
		return nil
	}
	return fmt.Errorf("bench: unknown subcommand %q\n\n%s", args[0], benchUsage)
}
