package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/redis/go-redis/v9"

	"github.com/siganteng/siganteng/internal/artifact"
	"github.com/siganteng/siganteng/internal/auth"
	"github.com/siganteng/siganteng/internal/batch"
	"github.com/siganteng/siganteng/internal/config"
	"github.com/siganteng/siganteng/internal/fetch"
	"github.com/siganteng/siganteng/internal/flow"
	"github.com/siganteng/siganteng/internal/httpapi"
	"github.com/siganteng/siganteng/internal/metrics"
	"github.com/siganteng/siganteng/internal/notify"
	"github.com/siganteng/siganteng/internal/openaiapi"
	"github.com/siganteng/siganteng/internal/providers"
	"github.com/siganteng/siganteng/internal/queue"
	"github.com/siganteng/siganteng/internal/routing"
	"github.com/siganteng/siganteng/internal/sealed"
	"github.com/siganteng/siganteng/internal/service"
	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
	"github.com/siganteng/siganteng/internal/tracing"
	"github.com/siganteng/siganteng/internal/webhook"
	"github.com/siganteng/siganteng/internal/worker"
)

// taskTypes are the kinds of work this build runs.
var taskTypes = task.Types

// setup is what start-up read besides the settings: the routing file (nil
// without one) and the provider of each kind of work.
type setup struct {
	routes *routing.File
	chosen map[task.Type]providers.Choice
}

func run(ctx context.Context, cmd string, cfg config.Config, su setup, getenv func(string) string, log *slog.Logger, tr *tracing.Tracing) error {
	if cfg.RedisURL == "" && cmd != "serve" {
		return fmt.Errorf("siganteng %s needs REDIS_URL: the embedded Redis lives inside one process, "+
			"so API and worker can share it only under 'siganteng serve'", cmd)
	}
	if cfg.ArtifactDir == "" && cfg.S3.Bucket == "" && cmd != "serve" {
		return fmt.Errorf("siganteng %s needs ARTIFACT_DIR (a folder the API and the workers share) or S3_BUCKET: "+
			"workers write audio there and the API reads it", cmd)
	}
	queues, err := queueWeights(cfg.QueueWeights)
	if err != nil {
		return err
	}
	c, err := newCore(ctx, cfg, su, getenv, log, tr)
	if err != nil {
		return err
	}
	defer c.close()

	p := newProcess(ctx)
	defer p.cancel()
	if cmd == "serve" || cmd == "worker" {
		if err := p.startWorker(cfg, queues, c, log, tr); err != nil {
			return p.abort(err)
		}
	}
	// /metrics and /monitoring: on their own address when METRICS_ADDR is
	// set, else on the API for admin keys.
	var opsOnAPI http.Handler
	if cfg.MetricsAddr != "" {
		if err := serveOperations(p.ctx, &p.wg, cfg, c.ops, log); err != nil {
			return p.abort(err)
		}
	} else {
		opsOnAPI = c.ops
	}
	if cmd == "serve" || cmd == "api" {
		if err := p.startAPI(ctx, cfg, c, opsOnAPI, log, tr); err != nil {
			return p.abort(err)
		}
	}
	return p.wait(cfg.ShutdownTimeout, log)
}

// core is what API and worker processes share: Redis, the records, the
// queue, the notifications, the service and the operations endpoints.
type core struct {
	rdb       redis.UniversalClient
	records   *store.Store
	queue     *queue.Client
	hub       *notify.Hub
	svc       *service.Service
	artifacts artifactStore
	metrics   *metrics.Metrics
	ops       http.Handler
	closers   []func()
}

// deferred registers f to run at close, after those registered later.
func (c *core) deferred(f func()) { c.closers = append(c.closers, f) }

// close releases what newCore opened, last opened first.
func (c *core) close() {
	for i := len(c.closers) - 1; i >= 0; i-- {
		c.closers[i]()
	}
}

// newCore opens Redis and the artifact store and builds the providers, the
// router, the store, the queue and the service. On an error, what it had
// opened is closed.
func newCore(ctx context.Context, cfg config.Config, su setup, getenv func(string) string, log *slog.Logger, tr *tracing.Tracing) (_ *core, err error) {
	artifacts, err := openArtifacts(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	rdb, connOpt, closeRedis, err := openRedis(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	c := &core{rdb: rdb}
	c.deferred(closeRedis)
	defer func() {
		if err != nil {
			c.close()
		}
	}()

	m := metrics.New()
	m.WatchQueues(asynq.NewInspectorFromRedisClient(rdb), queue.Names(taskTypes))
	ops, closeOps := operations(cfg, connOpt, m)
	c.deferred(closeOps)

	client := providerHTTPClient(cfg, tr)
	flows := flow.New(rdb, flow.Config{MaxWait: cfg.FlowMaxWait, Share: cfg.FlowShare, Lease: cfg.TaskTimeout + 10*time.Second, Observer: m, Log: log.With("component", "flow")})
	m.WatchFlow(flowStates(flows))
	providers := buildProviders(cfg, su.chosen, client, flows, log)
	go checkProviders(ctx, providers, log)
	env := envCatalog(cfg, su.chosen, providers)
	var router *routing.Router
	var models service.Models
	if routes := su.routes; routes != nil {
		breakers := func(f *routing.File) *routing.Breakers {
			return routing.NewBreakers(rdb, f.Breaker, routing.DeploymentIDs(f), nil)
		}
		if router, err = routing.New(routes, deploymentAdapter(cfg, client, flows), breakers); err != nil {
			return nil, err
		}
		providers, models = routedProviders(providers, router), router
		m.WatchBreakers(func(ctx context.Context) map[string]metrics.BreakerState {
			out := map[string]metrics.BreakerState{}
			now := time.Now()
			for id, s := range router.Breakers(ctx) {
				out[id] = metrics.BreakerState{Open: s.Open(now), Failures: s.Failures}
			}
			return out
		})
		log.Info("routing models from ROUTES_FILE", "models", len(routes.Models), "deployments", len(routing.DeploymentIDs(routes)))
		c.deferred(reloadRoutesOnHangup(cfg.RoutesFile, getenv, router, log))
	}

	records := store.New(rdb, cfg.ResultTTL)
	m.WatchLines(records.Lines)
	q := queue.New(rdb, queue.Options{MaxRetry: cfg.TaskMaxRetry, Timeout: cfg.TaskTimeout})
	c.deferred(func() { _ = q.Close() })
	// Workers hear of revocations, the API of endings (Prefer: wait).
	hub := notify.New(rdb, log.With("component", "notify"))
	hubCtx, stopHub := context.WithCancel(context.WithoutCancel(ctx))
	hubDone := make(chan struct{})
	go func() {
		defer close(hubDone)
		hub.Run(hubCtx)
	}()
	c.deferred(func() { stopHub(); <-hubDone })
	select { // a revocation must reach a task that starts now
	case <-hub.Ready():
	case <-time.After(5 * time.Second):
		log.Warn("task notifications not subscribed yet; they work once Redis answers")
	}
	fetcher := fetch.New(fetch.Config{
		MaxBytes: cfg.MaxUploadBytes, Timeout: 30 * time.Second, MaxRedirects: 5,
		Accept: task.ImageTypes, AllowPrivate: cfg.FetchAllowPrivate,
	})
	var sealer interface{ Seal(string) string } // webhook URLs are stored sealed
	if cfg.WebhookSecret != "" {
		box, err := sealed.New(cfg.WebhookSecret, webhook.URLPurpose)
		if err != nil {
			return nil, err
		}
		sealer = box
	}
	svc := service.New(service.Deps{Sealer: sealer, Records: records, Queue: q, Providers: providers, Artifacts: artifacts, Fetcher: fetcher, Fetches: fetch.NewPool(cfg.FetchConcurrency, cfg.FetchPerKey), Endings: hub, Keys: records,
		Batches: records, Steps: q, Pipelines: records, Retries: records, Holds: records, Announcer: webhook.Announcer{Parcels: records, Queue: q}, Models: models, Catalog: catalog(env, router, flows), Usage: records, Stored: records, Log: log},
		service.Config{SyncTimeout: cfg.SyncTimeout, MaxUploadBytes: cfg.MaxUploadBytes, MaxFileBytes: cfg.MaxFileBytes, MaxScheduleAhead: cfg.MaxScheduleAhead, LargeResultBytes: cfg.LargeResultBytes, WebhooksEnabled: cfg.WebhookSecret != "",
			MaxOutputTokens: cfg.MaxOutputTokens, MaxUnfinishedPerKey: cfg.MaxUnfinishedPerKey,
			MaxSyncPerKey: cfg.MaxSyncPerKey, MaxWaitingPerKey: cfg.MaxWaitingPerKey, RetryMaxDelay: cfg.RetryMaxDelay,
			MaxStoredBytesPerKey: cfg.MaxStoredBytesPerKey, ArtifactTTL: cfg.ResultTTL, PipelineRecheck: cfg.PipelineRecheck})

	c.records, c.queue, c.hub, c.svc, c.artifacts, c.metrics, c.ops = records, q, hub, svc, artifacts, m, ops
	return c, nil
}

// process runs the parts of one process until its context ends, and waits
// for each to stop.
type process struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	errc   chan error
}

func newProcess(ctx context.Context) *process {
	p := &process{errc: make(chan error, 2)}
	p.ctx, p.cancel = context.WithCancel(ctx)
	return p
}

// goRun runs f in the background until it returns.
func (p *process) goRun(f func()) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
}

// abort stops what had started and returns err.
func (p *process) abort(err error) error {
	p.cancel()
	p.wg.Wait()
	return err
}

// wait blocks until the process's context ends (a signal, or a part that
// failed), then for every part to stop; it returns a part's failure.
func (p *process) wait(grace time.Duration, log *slog.Logger) error {
	<-p.ctx.Done()
	log.Info("shutting down", "grace", grace)
	p.wg.Wait()
	select {
	case err := <-p.errc:
		return err
	default:
		return nil
	}
}

// startWorker runs the worker side: the asynq server, the webhook
// dispatcher, the artifact sweep, the admitter and the reconciler.
func (p *process) startWorker(cfg config.Config, queues map[string]int, c *core, log *slog.Logger, tr *tracing.Tracing) error {
	var deliverer worker.WebhookDeliverer
	if cfg.WebhookSecret != "" {
		d, err := webhook.NewDeliverer(cfg.WebhookSecret, fetch.New(fetch.Config{
			Timeout: webhook.Timeout, AllowPrivate: cfg.FetchAllowPrivate,
		}), c.records, log.With("component", "webhook"))
		if err != nil {
			return err
		}
		deliverer = d
		dispatcher := webhook.NewDispatcher(c.records, c.queue, log.With("component", "webhook"))
		p.goRun(func() { dispatcher.Run(p.ctx) })
	}
	w := worker.New(c.rdb, worker.Config{
		Concurrency:         cfg.WorkerConcurrency,
		Queues:              queues,
		PollInterval:        cfg.WorkerPollInterval,
		DelayedPollInterval: cfg.RetryPollInterval,
		ShutdownTimeout:     cfg.ShutdownTimeout,
		Backoff:             worker.Backoff{Base: cfg.RetryBaseDelay, Max: cfg.RetryMaxDelay},
		Webhooks:            deliverer,
		WebhookConcurrency:  cfg.WebhookConcurrency,
		Metrics:             c.metrics,
		Tracer:              tr.Tracer("siganteng/worker"),
		Inputs:              c.svc,
		Types:               taskTypes,
		MaxWait:             cfg.FlowMaxWait,
		Waits:               c.queue,
		Batches: batch.New(batch.Config{Window: cfg.BatchWindow, MaxLines: cfg.BatchMaxLines, MaxLineBytes: int(cfg.MaxBodyBytes + cfg.MaxUploadBytes*4/3 + 64<<10)},
			c.records, c.svc, c.artifacts, c.queue, openaiapi.Lines{}, log.With("component", "batch"), nil).
			WithWebhooks(webhook.Announcer{Parcels: c.records, Queue: c.queue}),
	}, c.svc, c.records, c.hub, log.With("component", "worker"), nil)
	if err := w.Start(); err != nil {
		return err
	}
	log.Info("worker started", "concurrency", cfg.WorkerConcurrency, "poll_interval", cfg.WorkerPollInterval)
	p.goRun(func() { sweepArtifacts(p.ctx, c.artifacts, cfg.ResultTTL, log) })
	p.goRun(func() { sweepFiles(p.ctx, c.svc, log) })
	pipelines := worker.NewPipelines(c.records, c.svc, cfg.RetryPollInterval, cfg.PipelineRecheck, log.With("component", "pipelines"), nil)
	p.goRun(func() { pipelines.Run(p.ctx) })
	deadlines := worker.NewDeadlines(c.records, cfg.RetryPollInterval, log.With("component", "deadlines"), nil)
	p.goRun(func() { deadlines.Run(p.ctx) })
	admitter := worker.NewAdmitter(c.records, c.queue, cfg.WorkerConcurrency, cfg.MaxQueuedPerKey, log.With("component", "admitter"), nil)
	p.goRun(func() { admitter.Run(p.ctx) })
	reconciler := worker.NewReconciler(c.rdb, c.records, log.With("component", "reconciler"))
	reconciler.Interval = cfg.ReconcileInterval
	reconciler.Inputs = c.svc
	reconciler.Requeue = c.svc
	p.goRun(func() { reconciler.Run(p.ctx) })
	p.goRun(func() {
		<-p.ctx.Done()
		w.Stop()
		log.Info("worker stopped")
	})
	return nil
}

// startAPI runs the API side: the HTTP server, with ops on it when they are
// not on METRICS_ADDR.
func (p *process) startAPI(ctx context.Context, cfg config.Config, c *core, ops http.Handler, log *slog.Logger, tr *tracing.Tracing) error {
	keys := auth.NewStore(c.rdb)
	policy, err := authPolicy(ctx, cfg, keys, log)
	if err != nil {
		return err
	}
	handler := httpapi.New(httpapi.Deps{
		Tasks:          c.svc,
		Ready:          func(ctx context.Context) error { return c.rdb.Ping(ctx).Err() },
		Log:            log.With("component", "api"),
		Version:        version(),
		MaxUploadBytes: cfg.MaxUploadBytes,
		MaxBodyBytes:   cfg.MaxBodyBytes,
		Auth:           keys,
		AuthPolicy:     policy,
		Limiter:        auth.NewLimiter(c.rdb, cfg.RateLimitRPS),
		CORSOrigins:    cfg.CORSOrigins,
		Metrics:        c.metrics,
		Operations:     ops,
		// A chat's messages may carry an image of up to MAX_UPLOAD_BYTES
		// as a data: URL (base64, a third larger) besides the JSON.
		V1: openaiapi.New(openaiapi.Deps{Tasks: c.svc, Log: log.With("component", "v1"), MaxBodyBytes: cfg.MaxBodyBytes + cfg.MaxUploadBytes*4/3 + 64<<10,
			MaxUploadBytes: cfg.MaxUploadBytes, MaxFileBytes: cfg.MaxFileBytes}),
		TrustedProxies: cfg.TrustedProxies,
		GuestRateLimit: cfg.GuestRateLimit,
	})
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("HTTP_ADDR: listen on %s: %w", cfg.HTTPAddr, err)
	}
	srv := &http.Server{
		Handler:           tr.Handler(handler),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      cfg.SyncTimeout + 10*time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("API listening", "addr", ln.Addr().String(), "docs", "http://"+ln.Addr().String()+"/docs")
	p.goRun(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.errc <- fmt.Errorf("http: %w", err)
			p.cancel()
		}
	})
	p.goRun(func() {
		<-p.ctx.Done()
		sctx, scancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer scancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn("HTTP shutdown cut short", "err", err)
		}
		log.Info("API stopped")
	})
	return nil
}

// operations returns the handler of /metrics, /debug/pprof and /monitoring
// (asynqmon, Flower's role), and what closes the dashboard's Redis
// connections.
func operations(cfg config.Config, connOpt asynq.RedisConnOpt, m *metrics.Metrics) (http.Handler, func()) {
	mon := asynqmon.New(asynqmon.Options{RootPath: "/monitoring", RedisConnOpt: connOpt, ReadOnly: cfg.MonitoringReadOnly,
		// Payloads hold tenants' prompts; the dashboard shows their size,
		// and the task record (by the id shown) says the rest to its owner.
		PayloadFormatter: asynqmon.PayloadFormatterFunc(func(_ string, payload []byte) string {
			return fmt.Sprintf("(%d bytes, not shown)", len(payload))
		})})
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	// Profiles, for finding where the time goes under load.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/monitoring/", mon)
	mux.Handle("/monitoring", http.RedirectHandler("/monitoring/", http.StatusMovedPermanently))
	return mux, func() { _ = mon.Close() }
}

// serveOperations serves ops on METRICS_ADDR until ctx ends.
func serveOperations(ctx context.Context, wg *sync.WaitGroup, cfg config.Config, ops http.Handler, log *slog.Logger) error {
	ln, err := net.Listen("tcp", cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("METRICS_ADDR: listen on %s: %w", cfg.MetricsAddr, err)
	}
	srv := &http.Server{Handler: ops, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	log.Info("metrics and monitoring listening", "addr", ln.Addr().String())
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	go func() {
		defer wg.Done()
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	return nil
}

// authPolicy decides when the API is open: on purpose (AUTH_DISABLED), or
// on the one-command start, whose embedded Redis no other process can reach
// to make a key, and which must then listen on loopback only. With a real
// Redis the API always needs keys, so a fresh install or a rotation that
// revoked the last key is closed, not open; start-up says how to make one.
func authPolicy(ctx context.Context, cfg config.Config, keys *auth.Store, log *slog.Logger) (httpapi.AuthPolicy, error) {
	host, _, _ := net.SplitHostPort(cfg.HTTPAddr)
	ip := net.ParseIP(host)
	loopback := host == "localhost" || (ip != nil && ip.IsLoopback())
	policy := httpapi.AuthPolicy{Disabled: cfg.AuthDisabled, Embedded: cfg.RedisURL == "", AllowedHosts: cfg.AllowedHosts}
	switch {
	case policy.Disabled:
		log.Warn("AUTH_DISABLED=true: the API takes no keys, and every caller sees and cancels every task",
			"hosts", append([]string{"localhost", "loopback addresses"}, cfg.AllowedHosts...))
		return policy, nil
	case policy.Embedded && !loopback:
		return policy, fmt.Errorf("HTTP_ADDR %s is not a loopback address, and the embedded Redis can hold no API key, so the API would be open to the network: "+
			"set REDIS_URL and create a key with 'siganteng keys create --name NAME --admin', or set AUTH_DISABLED=true to run it open on purpose", cfg.HTTPAddr)
	case policy.Embedded:
		log.Warn("the API is open: it runs on the embedded Redis, which has no API keys, so anyone on this machine who can reach " + cfg.HTTPAddr +
			" may use it (requests addressed to localhost only). Set REDIS_URL and create a key to require keys")
		return policy, nil
	}
	kctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	anyKeys, err := keys.Any(kctx)
	switch {
	case err != nil:
		log.Warn("could not tell whether API keys exist yet; every request needs one all the same", "err", err)
	case anyKeys:
		log.Info("API keys required")
	default:
		log.Error("no API key exists, so the API refuses every request: create the first one with " +
			"'siganteng keys create --name NAME --admin' (with this REDIS_URL)")
	}
	return policy, nil
}

// queueWeights is the default weight of every queue, with QUEUE_WEIGHTS
// over it.
func queueWeights(overrides map[string]int) (map[string]int, error) {
	weights := queue.DefaultWeights(taskTypes)
	for name, w := range overrides {
		if _, ok := weights[name]; !ok {
			switch name {
			case queue.QueueWebhooks:
				return nil, fmt.Errorf("QUEUE_WEIGHTS: the webhooks queue has a pool of its own; WEBHOOK_CONCURRENCY sizes it")
			case queue.QueueWaiting:
				return nil, fmt.Errorf("QUEUE_WEIGHTS: the waiting queue (tasks back from a wait for a provider's budget) has a pool of its own, of WORKER_CONCURRENCY")
			}
			names := slices.DeleteFunc(queue.Names(taskTypes), func(n string) bool { return n == queue.QueueWebhooks || n == queue.QueueWaiting })
			return nil, fmt.Errorf("QUEUE_WEIGHTS: no queue %q; the queues are %s", name, strings.Join(names, ", "))
		}
		weights[name] = w
	}
	return weights, nil
}

// artifactStore is what the service and the sweeper need of a store.
type artifactStore interface {
	service.Artifacts
	Sweep(ctx context.Context, maxAge time.Duration, now time.Time) (int, error)
}

// openArtifacts opens the S3 bucket, or ARTIFACT_DIR, or a temporary folder
// under serve.
func openArtifacts(ctx context.Context, cfg config.Config, log *slog.Logger) (artifactStore, error) {
	if cfg.S3.Bucket != "" {
		s3, err := artifact.NewS3(artifact.S3Config{Endpoint: cfg.S3.Endpoint, Bucket: cfg.S3.Bucket, Region: cfg.S3.Region,
			Prefix: cfg.S3.Prefix, PathStyle: cfg.S3.PathStyle, AccessKey: cfg.S3.AccessKey, SecretKey: cfg.S3.SecretKey,
			SessionToken: cfg.S3.SessionToken})
		if err != nil {
			return nil, fmt.Errorf("S3_ENDPOINT: %w", err)
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := s3.Check(cctx); err != nil {
			return nil, fmt.Errorf("S3_BUCKET: %w", err)
		}
		log.Info("artifacts go to S3", "endpoint", cfg.S3.Endpoint, "bucket", cfg.S3.Bucket, "prefix", cfg.S3.Prefix)
		return s3, nil
	}
	dir := cfg.ArtifactDir
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "siganteng-artifacts")
		log.Info("artifacts go to a temporary folder; set ARTIFACT_DIR to choose one", "dir", dir)
	}
	d, err := artifact.NewDir(dir)
	if err != nil {
		return nil, fmt.Errorf("ARTIFACT_DIR: %w", err)
	}
	return d, nil
}

// sweepArtifacts deletes artifacts whose records have expired, until ctx
// ends. A record expires RESULT_TTL after its task ended, which is when its
// artifact was written.
func sweepArtifacts(ctx context.Context, d artifactStore, ttl time.Duration, log *slog.Logger) {
	sweepEvery(ctx, min(max(ttl/4, time.Second), 10*time.Minute), "artifacts", log, func(now time.Time) (int, error) {
		return d.Sweep(ctx, ttl+time.Minute, now)
	})
}

// sweepFiles deletes expired files of the Files API once a minute.
func sweepFiles(ctx context.Context, svc *service.Service, log *slog.Logger) {
	sweepEvery(ctx, time.Minute, "files", log, func(now time.Time) (int, error) { return svc.SweepFiles(ctx, now) })
}

// sweepEvery runs sweep every period until ctx ends, logging what it
// removed (what names it) and its failures.
func sweepEvery(ctx context.Context, period time.Duration, what string, log *slog.Logger, sweep func(now time.Time) (int, error)) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if n, err := sweep(now); err != nil {
				log.Warn("sweep failed", "what", what, "err", err)
			} else if n > 0 {
				log.Info("expired "+what+" removed", "count", n)
			}
		}
	}
}

// openRedis connects to REDIS_URL, or starts the embedded Redis. It also
// returns the same connection as asynq describes it, for the dashboard.
func openRedis(ctx context.Context, cfg config.Config, log *slog.Logger) (redis.UniversalClient, asynq.RedisConnOpt, func(), error) {
	redis.SetLogger(redisLogger{log.With("from", "go-redis")})
	if cfg.RedisURL == "" {
		m := miniredis.NewMiniRedis()
		if err := m.StartAddr("127.0.0.1:0"); err != nil {
			return nil, nil, nil, fmt.Errorf("start embedded Redis: %w", err)
		}
		stopClock := advanceClock(m)
		rdb := redis.NewClient(&redis.Options{Addr: m.Addr(), ContextTimeoutEnabled: true})
		log.Warn("using an embedded in-memory Redis: tasks do not survive a restart, and API and worker must share this process. " +
			"Set REDIS_URL (for example redis://127.0.0.1:6379/0) to keep tasks and to scale out.")
		return rdb, asynq.RedisClientOpt{Addr: m.Addr()}, func() { _ = rdb.Close(); stopClock(); m.Close() }, nil
	}
	rdb, connOpt, where, err := dialRedis(cfg.RedisURL)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		// Not fatal: the API answers 503 and the worker reconnects until
		// Redis comes back, which is what a restart under systemd wants.
		log.Error("Redis does not answer yet; retrying in the background", "addr", where, "err", err)
	} else {
		log.Info("connected to Redis", "addr", where)
	}
	return rdb, connOpt, func() { _ = rdb.Close() }, nil
}

// dialRedis makes the client REDIS_URL names: a single server; or, when
// the URL has master_name, the master that Redis Sentinel reports (the URL's
// host and each addr= parameter being sentinels), followed across failovers;
// or, when it has cluster=true, a Redis Cluster reached through the URL's
// host and each addr= parameter.
func dialRedis(raw string) (redis.UniversalClient, asynq.RedisConnOpt, string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, nil, "", errors.New("not a URL")
	}
	if nodes, ok := config.ClusterURL(raw); ok {
		co, err := redis.ParseClusterURL(nodes)
		if err != nil {
			return nil, nil, "", err
		}
		co.ContextTimeoutEnabled = true
		opt := asynq.RedisClusterClientOpt{Addrs: co.Addrs, Username: co.Username, Password: co.Password, TLSConfig: co.TLSConfig}
		return redis.NewClusterClient(co), opt, "cluster " + strings.Join(co.Addrs, ","), nil
	}
	if u.Query().Has("master_name") {
		fo, err := redis.ParseFailoverURL(raw)
		if err != nil {
			return nil, nil, "", err
		}
		// Let request deadlines cut Redis calls short: the API answers 503
		// in time instead of waiting out go-redis's own retries.
		fo.ContextTimeoutEnabled = true
		opt := asynq.RedisFailoverClientOpt{MasterName: fo.MasterName, SentinelAddrs: fo.SentinelAddrs,
			SentinelUsername: fo.SentinelUsername, SentinelPassword: fo.SentinelPassword,
			Username: fo.Username, Password: fo.Password, DB: fo.DB, TLSConfig: fo.TLSConfig}
		return redis.NewFailoverClient(fo), opt, "sentinel master " + fo.MasterName, nil
	}
	opts, err := redis.ParseURL(raw)
	if err != nil {
		return nil, nil, "", err
	}
	opts.ContextTimeoutEnabled = true
	opt := asynq.RedisClientOpt{Addr: opts.Addr, Username: opts.Username, Password: opts.Password, DB: opts.DB, TLSConfig: opts.TLSConfig}
	return redis.NewClient(opts), opt, fmt.Sprintf("%s db %d", opts.Addr, opts.DB), nil
}

// advanceClock moves the embedded Redis's clock with real time: miniredis
// expires keys only when told time has passed.
func advanceClock(m *miniredis.Miniredis) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				m.FastForward(now.Sub(last))
				last = now
			}
		}
	}()
	return func() { close(done) }
}

// redisLogger sends go-redis's own messages (failed dials, mostly) to slog
// rather than to the standard logger.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, fmt.Sprintf(format, v...))
}
