// Package config reads SIGANTENG's settings from the environment, fills in
// defaults and checks them, so that a wrong value stops start-up with a
// message naming the variable instead of failing later.
package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The providers.
const (
	ProviderOpenAI      = "openai"
	ProviderHuggingFace = "huggingface"
	ProviderOllama      = "ollama"
	ProviderEspeak      = "espeak"
)

// DefaultMaxUploadBytes is MAX_UPLOAD_BYTES's default.
const DefaultMaxUploadBytes = 10 << 20

// Config is every setting. The zero value is not valid; use Load.
type Config struct {
	HTTPAddr string // HTTP_ADDR
	RedisURL string // REDIS_URL; empty runs an embedded in-memory Redis
	// RoutesFile is the routing file's path (ROUTES_FILE); internal/cli
	// reads and checks it.
	RoutesFile string
	LogLevel   slog.Level // LOG_LEVEL
	LogFormat  string     // LOG_FORMAT: text or json

	// LLMProvider and the other *Provider fields are the providers named
	// for each kind of work, lower-cased, "" where unset. Which provider
	// serves a kind when none is named (the keys set decide), and whether
	// a named one can, is the provider registry's rule
	// (internal/providers.Choose), applied at start-up.
	LLMProvider string // LLM_PROVIDER
	LLMModel    string // LLM_MODEL; empty: the adapter's default

	VisionProvider string // VISION_PROVIDER
	VisionModel    string // VISION_MODEL; empty: the adapter's default
	MaxUploadBytes int64  // MAX_UPLOAD_BYTES
	EmbedProvider  string // EMBED_PROVIDER
	STTProvider    string // STT_PROVIDER
	STTModel       string // STT_MODEL; empty: the adapter's default
	EmbedModel     string // EMBED_MODEL; empty: the adapter's default
	// FetchAllowPrivate lets image URLs reach private and loopback
	// addresses (FETCH_ALLOW_PRIVATE), for development only.
	FetchAllowPrivate bool
	// FetchConcurrency bounds the image downloads one process makes at
	// once (FETCH_CONCURRENCY), of which one API key may make
	// FetchPerKey (FETCH_PER_KEY).
	FetchConcurrency, FetchPerKey int

	TTSProvider string // TTS_PROVIDER
	TTSModel    string // TTS_MODEL; empty: the adapter's default

	ArtifactDir string // ARTIFACT_DIR; empty: a temporary folder, under serve only
	S3          S3     // S3_*; used instead of ARTIFACT_DIR when S3_BUCKET is set

	OpenAIAPIKey   string // OPENAI_API_KEY
	OpenAIBaseURL  string // OPENAI_BASE_URL
	HFToken        string // HF_TOKEN
	HFBaseURL      string // HF_BASE_URL
	HFInferenceURL string // HF_INFERENCE_URL
	OllamaBaseURL  string // OLLAMA_BASE_URL

	WorkerConcurrency  int           // WORKER_CONCURRENCY
	MaxQueuedPerKey    int           // MAX_QUEUED_PER_KEY; 0: the running workers' slots and an eighth
	TaskMaxRetry       int           // TASK_MAX_RETRY
	TaskTimeout        time.Duration // TASK_TIMEOUT
	ResultTTL          time.Duration // RESULT_TTL
	SyncTimeout        time.Duration // SYNC_TIMEOUT
	ShutdownTimeout    time.Duration // SHUTDOWN_TIMEOUT
	WorkerPollInterval time.Duration // WORKER_POLL_INTERVAL
	RetryPollInterval  time.Duration // RETRY_POLL_INTERVAL
	RetryBaseDelay     time.Duration // RETRY_BASE_DELAY
	RetryMaxDelay      time.Duration // RETRY_MAX_DELAY
	ReconcileInterval  time.Duration // RECONCILE_INTERVAL
	PipelineRecheck    time.Duration // PIPELINE_RECHECK_INTERVAL
	// QueueWeights overrides the default weights of the named queues
	// (QUEUE_WEIGHTS); the names are checked against the queues at start-up.
	QueueWeights map[string]int

	WebhookSecret string // WEBHOOK_SECRET: whsec_ and base64; empty turns webhooks off
	// MaxFileBytes bounds a file of the Files API (MAX_FILE_BYTES), and
	// BatchWindow is how many of a batch's lines are in flight at once
	// (BATCH_WINDOW).
	MaxFileBytes int64
	BatchWindow  int
	// BatchMaxLines bounds a batch's input file (BATCH_MAX_LINES).
	BatchMaxLines int
	// MaxScheduleAhead bounds a submit's run_at and delay
	// (MAX_SCHEDULE_AHEAD).
	MaxScheduleAhead time.Duration
	// LargeResultBytes is the size past which a result is kept in the
	// artifact store, not the record (LARGE_RESULT_BYTES).
	LargeResultBytes int
	// WebhookConcurrency is how many webhook deliveries one worker process
	// makes at once (WEBHOOK_CONCURRENCY), in a pool of their own.
	WebhookConcurrency int

	AuthDisabled        bool     // AUTH_DISABLED: open API on any address, on purpose
	RateLimitRPS        int      // RATE_LIMIT_RPS: per key, shared across instances
	MaxUnfinishedPerKey int      // MAX_UNFINISHED_PER_KEY
	MaxSyncPerKey       int      // MAX_SYNC_PER_KEY: synchronous calls at once, per key and API process
	MaxWaitingPerKey    int      // MAX_WAITING_PER_KEY: event streams and Prefer: wait at once, per key and API process
	MaxBodyBytes        int64    // MAX_BODY_BYTES: JSON request bodies
	MaxOutputTokens     int      // MAX_OUTPUT_TOKENS: cap on max_tokens, and its value when a request omits it
	CORSOrigins         []string // CORS_ORIGINS; empty: no cross-origin access
	AllowedHosts        []string // ALLOWED_HOSTS: Host names an open API answers besides loopback ones
	GuestRateLimit      int      // GUEST_RATE_LIMIT_RPS: requests without a valid key per client address and second
	// MaxStoredBytesPerKey bounds an API key's uploads and results in the
	// artifact store (MAX_STORED_BYTES_PER_KEY); 0 for no bound.
	MaxStoredBytesPerKey int64
	// MaxProviderResponseBytes bounds a provider's answer where max_tokens
	// does not (audio, embeddings): MAX_PROVIDER_RESPONSE_BYTES.
	MaxProviderResponseBytes int64

	// FlowMaxWait is how long a task may wait for its deployment's budget
	// in all before it fails (FLOW_MAX_WAIT).
	FlowMaxWait time.Duration
	// FlowShare is how far ahead one API key may hold a saturated
	// deployment's slots (FLOW_SHARE).
	FlowShare time.Duration
	// Limits are the environment's providers' limits, by provider name
	// (OPENAI_LIMIT_*, HF_LIMIT_*, OLLAMA_LIMIT_*); routed deployments set
	// theirs in ROUTES_FILE.
	Limits map[string]Limits

	MetricsAddr        string         // METRICS_ADDR; empty: /metrics and /monitoring on the API, for admin keys
	TrustedProxies     []netip.Prefix // TRUSTED_PROXIES: whose X-Forwarded-For is believed
	MonitoringReadOnly bool           // MONITORING_READONLY
}

// Limits bound one provider deployment; 0 is no limit.
type Limits struct {
	RPM        int // requests per minute
	TPM        int // tokens per minute
	Concurrent int // calls at once
}

// S3 locates an S3-compatible bucket for artifacts.
type S3 struct {
	Endpoint     string // S3_ENDPOINT
	Bucket       string // S3_BUCKET
	Region       string // S3_REGION
	Prefix       string // S3_PREFIX
	PathStyle    bool   // S3_PATH_STYLE
	AccessKey    string // AWS_ACCESS_KEY_ID
	SecretKey    string // AWS_SECRET_ACCESS_KEY
	SessionToken string // AWS_SESSION_TOKEN
}

// Var documents one environment variable.
type Var struct {
	Name    string
	Default string
	Doc     string
}

// Vars lists every variable with its default, in the order of .env.example.
// A test checks that .env.example and both READMEs name each of them.
var Vars = []Var{
	{"HTTP_ADDR", "127.0.0.1:8000", "address the API listens on"},
	{"REDIS_URL", "", "redis:// or rediss:// URL; with ?master_name=NAME the host (and each &addr=host:port) is a Redis Sentinel, and the client follows its master across failovers; with ?cluster=true the host (and each &addr=host:port) is a node of a Redis Cluster; empty runs an embedded in-memory Redis (tasks do not survive a restart)"},
	{"LOG_LEVEL", "info", "debug, info, warn or error"},
	{"LOG_FORMAT", "text", "text or json"},
	{"LLM_PROVIDER", "", "openai, huggingface or ollama; empty: openai if OPENAI_API_KEY is set, else huggingface if HF_TOKEN is set, else ollama"},
	{"LLM_MODEL", "", "default model; empty: gpt-4o-mini (openai), meta-llama/Llama-3.1-8B-Instruct (huggingface), llama3.2 (ollama)"},
	{"VISION_PROVIDER", "", "openai, huggingface or ollama, for describe_image; empty: the LLM provider"},
	{"VISION_MODEL", "", "vision model; empty: gpt-4o-mini (openai), Qwen/Qwen2.5-VL-7B-Instruct (huggingface), llava (ollama)"},
	{"EMBED_PROVIDER", "", "openai, huggingface or ollama, for embed; empty: the LLM provider"},
	{"EMBED_MODEL", "", "embedding model; empty: text-embedding-3-small (openai), sentence-transformers/all-MiniLM-L6-v2 (huggingface), nomic-embed-text (ollama)"},
	{"STT_PROVIDER", "", "openai or huggingface, for speech_to_text; empty: openai if OPENAI_API_KEY is set, else huggingface if HF_TOKEN is set, else none (such tasks fail saying so)"},
	{"STT_MODEL", "", "speech-to-text model; empty: whisper-1 (openai), openai/whisper-large-v3 (huggingface)"},
	{"MAX_UPLOAD_BYTES", "10485760", "largest image accepted, fetched or sent in a data: URL (10 MiB)"},
	{"FETCH_ALLOW_PRIVATE", "false", "true lets image URLs and webhooks reach loopback and private addresses, for development; cloud metadata stays refused"},
	{"FETCH_CONCURRENCY", "64", "image URLs one process downloads at once, in a pool of their own: a queued describe_image task that finds the pool full waits (PENDING, waiting reason downloads) holding no worker slot, a synchronous call waits within SYNC_TIMEOUT"},
	{"FETCH_PER_KEY", "16", "image URLs one API key may download at once in one process (at most FETCH_CONCURRENCY), so one key's slow or silent image hosts cannot take the pool"},
	{"TTS_PROVIDER", "", "openai, huggingface or espeak; empty: openai if OPENAI_API_KEY is set, else huggingface if HF_TOKEN is set, else espeak (the local espeak-ng program)"},
	{"TTS_MODEL", "", "text-to-speech model; empty: gpt-4o-mini-tts (openai), facebook/mms-tts-eng (huggingface); espeak has one"},
	{"ROUTES_FILE", "", "YAML routing file naming the models clients may ask for, each with its deployments (provider, model, base URL, key variable, weight, prices), fallbacks and circuit breaker; empty: one provider per capability from the variables above"},
	{"ARTIFACT_DIR", "", "folder for audio and other binary results, shared by API and workers; empty: a temporary folder, allowed only under serve"},
	{"S3_BUCKET", "", "an S3-compatible bucket for artifacts, for API and workers on different machines; empty: ARTIFACT_DIR"},
	{"S3_ENDPOINT", "https://s3.amazonaws.com", "S3 endpoint: AWS, MinIO, Cloudflare R2, Backblaze B2, Ceph, …"},
	{"S3_REGION", "us-east-1", "bucket region"},
	{"S3_PREFIX", "siganteng/", "key prefix for artifacts inside the bucket"},
	{"S3_PATH_STYLE", "false", "true addresses the bucket as endpoint/bucket (MinIO and most self-hosted servers)"},
	{"AWS_ACCESS_KEY_ID", "", "S3 credentials; empty: the AWS shared credentials file or the instance or task role"},
	{"AWS_SECRET_ACCESS_KEY", "", "S3 credentials"},
	{"AWS_SESSION_TOKEN", "", "S3 credentials, for temporary ones"},
	{"OPENAI_API_KEY", "", "OpenAI key (or the key of an OpenAI-compatible server)"},
	{"OPENAI_BASE_URL", "https://api.openai.com/v1", "any OpenAI-compatible server: vLLM, llama.cpp's server, LM Studio, TGI"},
	{"HF_TOKEN", "", "Hugging Face access token"},
	{"HF_BASE_URL", "https://router.huggingface.co/v1", "Hugging Face Inference Providers router (OpenAI-compatible chat)"},
	{"HF_INFERENCE_URL", "https://router.huggingface.co/hf-inference", "Hugging Face's task pipelines (feature-extraction for embed)"},
	{"OLLAMA_BASE_URL", "http://127.0.0.1:11434", "Ollama server"},
	{"OPENAI_LIMIT_RPM", "", "requests per minute the OpenAI (or OPENAI_BASE_URL) account allows, shared by every worker and API instance; empty: learned from the provider's x-ratelimit-* headers and 429s"},
	{"OPENAI_LIMIT_TPM", "", "tokens per minute it allows (input and max_tokens estimated before a call, corrected by the usage reported); empty: learned"},
	{"OPENAI_LIMIT_CONCURRENT", "", "calls it may have running at once; empty: no bound"},
	{"HF_LIMIT_RPM", "", "requests per minute for Hugging Face, as OPENAI_LIMIT_RPM"},
	{"HF_LIMIT_TPM", "", "tokens per minute for Hugging Face"},
	{"HF_LIMIT_CONCURRENT", "", "calls at once for Hugging Face"},
	{"OLLAMA_LIMIT_RPM", "", "requests per minute for Ollama; empty: none"},
	{"OLLAMA_LIMIT_TPM", "", "tokens per minute for Ollama; empty: none"},
	{"OLLAMA_LIMIT_CONCURRENT", "", "calls at once for Ollama; empty: OLLAMA_NUM_PARALLEL when set (Ollama's own setting), else 1, so a local model is never flooded"},
	{"OLLAMA_NUM_PARALLEL", "", "Ollama's own parallel-request setting, read as the default of OLLAMA_LIMIT_CONCURRENT"},
	{"FLOW_MAX_WAIT", "1h", "longest a task waits in all for its deployment's budget (a rate limit is flow control, not failure: waiting uses up no retry); past it the task fails deployment_rate_limited"},
	{"FLOW_SHARE", "1s", "while a deployment is saturated, how far ahead one API key may hold its call slots: another key's task waits about this long behind a burst, and the burst takes whatever budget no other key asks for"},
	{"WORKER_CONCURRENCY", "2048", "tasks one worker process runs at once; provider calls wait on the network, so this is far above the CPU count (each call in flight holds about 140 KB); flow control keeps each provider within its limits (Ollama to OLLAMA_NUM_PARALLEL calls); tasks back from a wait for a provider's budget run in a pool of their own of the same size"},
	{"MAX_QUEUED_PER_KEY", "0", "most tasks of one API key in the worker queues at once; its next ones wait in the key's own line (status PENDING, waiting.reason key_share) and go in as its earlier ones end, so another key's task is never queued behind a whole burst. 0: the running workers' WORKER_CONCURRENCY slots summed, and an eighth more, so one key alone still fills every slot"},
	{"TASK_MAX_RETRY", "3", "retries after the first attempt for transient failures"},
	{"TASK_TIMEOUT", "5m", "time limit of one attempt; whole seconds, at least 1s"},
	{"RESULT_TTL", "24h", "how long a finished task's record is kept"},
	{"SYNC_TIMEOUT", "60s", "time limit of the synchronous endpoints"},
	{"SHUTDOWN_TIMEOUT", "30s", "on SIGTERM, how long running tasks and requests may take to finish"},
	{"WORKER_POLL_INTERVAL", "5ms", "how often an idle worker looks for new tasks (latency on an idle system against Redis load)"},
	{"RETRY_POLL_INTERVAL", "1s", "how often retries that are due are put back on their queue"},
	{"RETRY_BASE_DELAY", "2s", "delay before the first retry; doubles each retry, with jitter"},
	{"RETRY_MAX_DELAY", "10m", "longest delay between retries, Retry-After included"},
	{"RECONCILE_INTERVAL", "30s", "how often workers look for tasks the queue gave up on (a worker that died with no retries left) and end them FAILURE"},
	{"PIPELINE_RECHECK_INTERVAL", "30s", "how often an unfinished pipeline is looked at even when none of its steps' tasks has ended: the net under a worker that died while moving it on (a step's end moves it at once)"},
	{"QUEUE_WEIGHTS", "", "queue=weight pairs, comma-separated, over the defaults high=50, each task type=2, low=1 (webhook deliveries have a pool of their own, WEBHOOK_CONCURRENCY, and so do tasks back from a wait for a provider's budget): a queue with twice the weight is looked at first twice as often"},
	{"MAX_FILE_BYTES", "209715200", "largest file of the Files API (/v1/files; 200 MiB, as OpenAI's batch input): streamed into the artifact store, 413 past it"},
	{"BATCH_WINDOW", "256", "lines of one batch in flight at once (queued or running as tasks); the rest wait in the input file, so a batch of any size holds about this many in Redis. Lines count against the key's MAX_UNFINISHED_PER_KEY"},
	{"LARGE_RESULT_BYTES", "262144", "a result larger than this (256 KiB of JSON: a long text, a large set of embeddings) is kept in the artifact store, not in its Redis record; GET /background/tasks/{id} still inlines it (?result=link names it in result_url instead), listings never do; 0 keeps every result in Redis"},
	{"MAX_SCHEDULE_AHEAD", "720h", "how far ahead a submit's run_at or delay may start a task (30 days); a scheduled task waits PENDING, holding no worker, in the queue's scheduled set"},
	{"BATCH_MAX_LINES", "50000", "most lines a batch's input file may hold (OpenAI's limit); a longer file fails validation with too_many_requests"},
	{"WEBHOOK_CONCURRENCY", "64", "webhook deliveries one worker process makes at once, in a pool of their own beside WORKER_CONCURRENCY's, so slow receivers never hold a task's slot"},
	{"WEBHOOK_SECRET", "", "signs webhook deliveries (Standard Webhooks): whsec_ and base64 of 24 to 64 random bytes, for example whsec_$(openssl rand -base64 32); empty: submits naming a webhook get a 422"},
	{"AUTH_DISABLED", "false", "true runs the API without keys, on purpose; without it the API is open only on the one-command start (embedded Redis, loopback address) and, with a real Redis, every request needs a key, even before the first one exists"},
	{"MAX_STORED_BYTES_PER_KEY", "1073741824", "bytes one API key may keep in the artifact store at once, uploads waiting for their task and results not yet expired (1 GiB); past it, submits that store bytes get a 429; 0: no bound"},
	{"MAX_PROVIDER_RESPONSE_BYTES", "67108864", "largest answer read from a provider where max_tokens does not size it (speech audio, embeddings, transcripts; 64 MiB): past it the call fails provider_response_too_large and nothing is kept; text answers are bounded by their max_tokens"},
	{"ALLOWED_HOSTS", "", "Host names, comma-separated, that an open API (no keys, or AUTH_DISABLED) answers besides localhost and loopback addresses; any other Host gets a 403, which stops DNS rebinding"},
	{"GUEST_RATE_LIMIT_RPS", "10", "requests without a valid key that one client address may make per second (bursts of twice that), counted in memory before any Redis read; 0 turns it off"},
	{"RATE_LIMIT_RPS", "50", "requests per second per API key (bursts up to twice that), shared by every API instance through Redis; keys may override it"},
	{"MAX_UNFINISHED_PER_KEY", "1000", "tasks one API key may have unfinished at once; keys may override it"},
	{"MAX_SYNC_PER_KEY", "16", "synchronous calls (POST /generate_text and the like) one API key may have running at once, across every API process, past which it gets a 429; keys may override it (keys create --max-sync); 0: no bound"},
	{"MAX_WAITING_PER_KEY", "16", "event streams and Prefer: wait requests one API key may have open at once, across every API process: a stream past it gets a 429, a Prefer: wait is answered at once; keys may override it (keys create --max-waiting); 0: no bound"},
	{"MAX_BODY_BYTES", "1048576", "largest JSON request body (1 MiB); uploads are bounded by MAX_UPLOAD_BYTES, and a body that may carry an image as a data: URL may be larger by one"},
	{"MAX_OUTPUT_TOKENS", "16384", "largest max_tokens a request may ask for, and what is sent when it asks for none, so no request runs up an unbounded bill"},
	{"CORS_ORIGINS", "", "origins browsers may call the API from, comma-separated (https://app.example.com), or * for any; empty: none"},
	{"TRUSTED_PROXIES", "", "addresses or CIDR ranges of reverse proxies (127.0.0.1,10.0.0.0/8) whose X-Forwarded-For names the client in logs; empty: none, the connection's address is the client"},
	{"OTEL_EXPORTER_OTLP_ENDPOINT", "", "an OpenTelemetry collector's OTLP/HTTP base URL (http://127.0.0.1:4318): turns tracing on, from each API request through the queue into the worker and its provider calls; empty: no tracing"},
	{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "", "the full traces URL, instead of OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces"},
	{"OTEL_SERVICE_NAME", "siganteng", "the service name on the traces"},
	{"METRICS_ADDR", "", "a separate address (such as 127.0.0.1:9090) serving /metrics and /monitoring without keys, in API and worker processes alike; empty: both are served on the API to admin keys only, and workers have none"},
	{"MONITORING_READONLY", "true", "the /monitoring dashboard (asynqmon) shows but does not change the queues; its actions bypass task records, which the reconciler then ends as lost"},
}

// Load reads the configuration through getenv.
func Load(getenv func(string) string) (Config, error) {
	p := parser{getenv: getenv}
	cfg := Config{
		HTTPAddr:       p.str("HTTP_ADDR"),
		RedisURL:       p.str("REDIS_URL"),
		LogLevel:       p.level("LOG_LEVEL"),
		LogFormat:      p.oneOf("LOG_FORMAT", "text", "json"),
		LLMModel:       p.str("LLM_MODEL"),
		TTSModel:       p.str("TTS_MODEL"),
		VisionModel:    p.str("VISION_MODEL"),
		EmbedModel:     p.str("EMBED_MODEL"),
		HFInferenceURL: p.url("HF_INFERENCE_URL"),
		ArtifactDir:    p.str("ARTIFACT_DIR"),
		S3: S3{
			Endpoint:     p.url("S3_ENDPOINT"),
			Bucket:       p.str("S3_BUCKET"),
			Region:       p.str("S3_REGION"),
			Prefix:       p.str("S3_PREFIX"),
			AccessKey:    strings.TrimSpace(getenv("AWS_ACCESS_KEY_ID")),
			SecretKey:    strings.TrimSpace(getenv("AWS_SECRET_ACCESS_KEY")),
			SessionToken: strings.TrimSpace(getenv("AWS_SESSION_TOKEN")),
		},
		OpenAIAPIKey:  strings.TrimSpace(getenv("OPENAI_API_KEY")),
		OpenAIBaseURL: p.url("OPENAI_BASE_URL"),
		HFToken:       strings.TrimSpace(getenv("HF_TOKEN")),
		HFBaseURL:     p.url("HF_BASE_URL"),
		OllamaBaseURL: p.url("OLLAMA_BASE_URL"),

		WorkerConcurrency:        p.intAtLeast("WORKER_CONCURRENCY", 1),
		MaxQueuedPerKey:          p.intAtLeast("MAX_QUEUED_PER_KEY", 0),
		TaskMaxRetry:             p.intAtLeast("TASK_MAX_RETRY", 0),
		TaskTimeout:              p.duration("TASK_TIMEOUT"),
		ResultTTL:                p.duration("RESULT_TTL"),
		SyncTimeout:              p.duration("SYNC_TIMEOUT"),
		ShutdownTimeout:          p.duration("SHUTDOWN_TIMEOUT"),
		WorkerPollInterval:       p.duration("WORKER_POLL_INTERVAL"),
		RetryPollInterval:        p.duration("RETRY_POLL_INTERVAL"),
		RetryBaseDelay:           p.duration("RETRY_BASE_DELAY"),
		RetryMaxDelay:            p.duration("RETRY_MAX_DELAY"),
		ReconcileInterval:        p.duration("RECONCILE_INTERVAL"),
		PipelineRecheck:          p.duration("PIPELINE_RECHECK_INTERVAL"),
		QueueWeights:             p.weights("QUEUE_WEIGHTS"),
		WebhookSecret:            p.webhookSecret("WEBHOOK_SECRET"),
		AuthDisabled:             p.boolean("AUTH_DISABLED"),
		RateLimitRPS:             p.intAtLeast("RATE_LIMIT_RPS", 1),
		MaxUnfinishedPerKey:      p.intAtLeast("MAX_UNFINISHED_PER_KEY", 1),
		MaxSyncPerKey:            p.intAtLeast("MAX_SYNC_PER_KEY", 0),
		MaxWaitingPerKey:         p.intAtLeast("MAX_WAITING_PER_KEY", 0),
		MaxBodyBytes:             int64(p.intAtLeast("MAX_BODY_BYTES", 4096)),
		MaxOutputTokens:          p.intAtLeast("MAX_OUTPUT_TOKENS", 1),
		CORSOrigins:              p.list("CORS_ORIGINS"),
		AllowedHosts:             p.list("ALLOWED_HOSTS"),
		GuestRateLimit:           p.intAtLeast("GUEST_RATE_LIMIT_RPS", 0),
		MaxStoredBytesPerKey:     int64(p.intAtLeast("MAX_STORED_BYTES_PER_KEY", 0)),
		MaxProviderResponseBytes: int64(p.intAtLeast("MAX_PROVIDER_RESPONSE_BYTES", 65536)),
		MetricsAddr:              strings.TrimSpace(getenv("METRICS_ADDR")),
		MonitoringReadOnly:       p.boolean("MONITORING_READONLY"),
		TrustedProxies:           p.prefixes("TRUSTED_PROXIES"),
	}
	cfg.FlowMaxWait = p.duration("FLOW_MAX_WAIT")
	cfg.FlowShare = p.duration("FLOW_SHARE")
	cfg.Limits = map[string]Limits{
		ProviderOpenAI:      p.limits("OPENAI_LIMIT_", 0),
		ProviderHuggingFace: p.limits("HF_LIMIT_", 0),
		ProviderOllama:      p.limits("OLLAMA_LIMIT_", p.optionalInt("OLLAMA_NUM_PARALLEL", 1)),
	}
	cfg.LLMProvider = p.name("LLM_PROVIDER")
	cfg.TTSProvider = p.name("TTS_PROVIDER")
	cfg.VisionProvider = p.name("VISION_PROVIDER")
	cfg.EmbedProvider = p.name("EMBED_PROVIDER")
	cfg.STTProvider = p.name("STT_PROVIDER")
	cfg.MaxUploadBytes = int64(p.intAtLeast("MAX_UPLOAD_BYTES", 1024))
	cfg.FetchAllowPrivate = p.boolean("FETCH_ALLOW_PRIVATE")
	cfg.FetchConcurrency = p.intAtLeast("FETCH_CONCURRENCY", 1)
	cfg.FetchPerKey = p.intAtLeast("FETCH_PER_KEY", 1)
	if cfg.FetchPerKey > cfg.FetchConcurrency {
		p.fail("FETCH_PER_KEY", "must not be above FETCH_CONCURRENCY (%d)", cfg.FetchConcurrency)
	}
	cfg.WebhookConcurrency = p.intAtLeast("WEBHOOK_CONCURRENCY", 1)
	cfg.MaxFileBytes = int64(p.intAtLeast("MAX_FILE_BYTES", 1024))
	cfg.BatchWindow = p.intAtLeast("BATCH_WINDOW", 1)
	cfg.BatchMaxLines = p.intAtLeast("BATCH_MAX_LINES", 1)
	cfg.MaxScheduleAhead = p.duration("MAX_SCHEDULE_AHEAD")
	cfg.LargeResultBytes = p.intAtLeast("LARGE_RESULT_BYTES", 0)
	cfg.S3.PathStyle = p.boolean("S3_PATH_STYLE")
	if (cfg.S3.AccessKey == "") != (cfg.S3.SecretKey == "") {
		p.fail("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are set together or not at all")
	}
	if _, _, err := net.SplitHostPort(cfg.HTTPAddr); err != nil {
		p.fail("HTTP_ADDR", "want host:port, got %q", cfg.HTTPAddr)
	}
	cfg.RoutesFile = p.str("ROUTES_FILE")
	if cfg.RedisURL != "" {
		parse := func(raw string) error { _, err := redis.ParseURL(raw); return err }
		if u, err := url.Parse(cfg.RedisURL); err == nil && u.Query().Has("master_name") {
			parse = func(raw string) error { _, err := redis.ParseFailoverURL(raw); return err }
		}
		if nodes, ok := ClusterURL(cfg.RedisURL); ok {
			parse = func(string) error { _, err := redis.ParseClusterURL(nodes); return err }
		}
		if err := parse(cfg.RedisURL); err != nil {
			p.fail("REDIS_URL", "%v", stripURL(err, cfg.RedisURL))
		}
	}
	if cfg.TaskTimeout < time.Second || cfg.TaskTimeout%time.Second != 0 {
		p.fail("TASK_TIMEOUT", "must be whole seconds, at least 1s: the queue counts timeouts in whole seconds")
	}
	if cfg.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(cfg.MetricsAddr); err != nil {
			p.fail("METRICS_ADDR", "want host:port, got %q", cfg.MetricsAddr)
		}
	}
	if cfg.MaxOutputTokens > 131072 {
		p.fail("MAX_OUTPUT_TOKENS", "must be at most 131072, the largest max_tokens the API takes")
	}
	for _, o := range cfg.CORSOrigins {
		if u, err := url.Parse(o); o != "*" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "") {
			p.fail("CORS_ORIGINS", "want origins such as https://app.example.com (scheme and host, no path) or *, got %q", o)
		}
	}
	if cfg.RetryMaxDelay < cfg.RetryBaseDelay {
		p.fail("RETRY_MAX_DELAY", "must not be shorter than RETRY_BASE_DELAY (%s)", cfg.RetryBaseDelay)
	}
	if len(p.errs) > 0 {
		return Config{}, fmt.Errorf("config: %w", errors.Join(p.errs...))
	}
	return cfg, nil
}

// stripURL keeps a password in REDIS_URL out of the error.
func stripURL(err error, raw string) string {
	msg := err.Error()
	if u, perr := url.Parse(raw); perr == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "[REDACTED]")
		}
	}
	return msg
}

func defaultOf(name string) string {
	for _, v := range Vars {
		if v.Name == name {
			return v.Default
		}
	}
	panic("config: no variable " + name)
}

type parser struct {
	getenv func(string) string
	errs   []error
}

func (p *parser) fail(name, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s: "+format, append([]any{name}, args...)...))
}

// str returns the variable, or its default when unset or blank.
func (p *parser) str(name string) string {
	if v := strings.TrimSpace(p.getenv(name)); v != "" {
		return v
	}
	return defaultOf(name)
}

func (p *parser) oneOf(name string, allowed ...string) string {
	v := strings.ToLower(p.str(name))
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	p.fail(name, "want one of %s, got %q", strings.Join(allowed, ", "), v)
	return allowed[0]
}

func (p *parser) level(name string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(p.str(name))); err != nil {
		p.fail(name, "want debug, info, warn or error, got %q", p.str(name))
	}
	return l
}

func (p *parser) url(name string) string {
	v := strings.TrimRight(p.str(name), "/")
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.fail(name, "want an http:// or https:// URL, got %q", v)
	}
	return v
}

func (p *parser) intAtLeast(name string, least int) int {
	v := p.str(name)
	n, err := strconv.Atoi(v)
	if err != nil || n < least {
		p.fail(name, "want a whole number of at least %d, got %q", least, v)
	}
	return n
}

// optionalInt reads a variable that may be unset (or, for one with a
// default, 0); when set it must be at least 1.
func (p *parser) optionalInt(name string, unset int) int {
	v := p.str(name)
	if v == "" {
		return unset
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		p.fail(name, "want a whole number of at least 1, or nothing for none, got %q", v)
	}
	return n
}

// limits reads the RPM, TPM and CONCURRENT variables after prefix.
func (p *parser) limits(prefix string, concurrent int) Limits {
	return Limits{RPM: p.optionalInt(prefix+"RPM", 0), TPM: p.optionalInt(prefix+"TPM", 0),
		Concurrent: p.optionalInt(prefix+"CONCURRENT", concurrent)}
}

func (p *parser) duration(name string) time.Duration {
	v := p.str(name)
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		p.fail(name, "want a positive duration such as 30s or 5m, got %q", v)
	}
	return d
}

// prefixes reads a list of addresses and CIDR ranges.
func (p *parser) prefixes(name string) []netip.Prefix {
	var out []netip.Prefix
	for _, v := range p.list(name) {
		if pfx, err := netip.ParsePrefix(v); err == nil {
			out = append(out, pfx.Masked())
			continue
		}
		addr, err := netip.ParseAddr(v)
		if err != nil {
			p.fail(name, "want addresses or CIDR ranges such as 127.0.0.1 or 10.0.0.0/8, got %q", v)
			continue
		}
		out = append(out, netip.PrefixFrom(addr.Unmap(), addr.Unmap().BitLen()))
	}
	return out
}

// list reads a comma-separated list.
func (p *parser) list(name string) []string {
	var out []string
	for _, v := range strings.Split(p.getenv(name), ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// weights reads name=n pairs.
func (p *parser) weights(name string) map[string]int {
	w := map[string]int{}
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return w
	}
	for _, pair := range strings.Split(v, ",") {
		q, n, ok := strings.Cut(strings.TrimSpace(pair), "=")
		weight, err := strconv.Atoi(strings.TrimSpace(n))
		if !ok || err != nil || weight < 1 || strings.TrimSpace(q) == "" {
			p.fail(name, "want queue=weight pairs with whole weights of at least 1, such as high=50,embed=4; got %q", pair)
			continue
		}
		w[strings.TrimSpace(q)] = weight
	}
	return w
}

// webhookSecret reads a Standard Webhooks secret: whsec_ and base64. The
// value never appears in the error.
func (p *parser) webhookSecret(name string) string {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return ""
	}
	raw, ok := strings.CutPrefix(v, "whsec_")
	key, err := base64.StdEncoding.DecodeString(raw)
	if !ok || err != nil || len(key) < 24 || len(key) > 64 {
		p.fail(name, "want whsec_ followed by the base64 of 24 to 64 random bytes (whsec_$(openssl rand -base64 32))")
		return ""
	}
	return v
}

func (p *parser) boolean(name string) bool {
	v, err := strconv.ParseBool(p.str(name))
	if err != nil {
		p.fail(name, "want true or false, got %q", p.str(name))
	}
	return v
}

// name reads a provider's name as set, lower-cased.
func (p *parser) name(name string) string {
	return strings.ToLower(strings.TrimSpace(p.getenv(name)))
}

// ClusterURL tells whether a REDIS_URL names a Redis Cluster (it has
// cluster=true) and returns it without that parameter, as go-redis's
// ParseClusterURL takes it.
func ClusterURL(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Query().Get("cluster") != "true" {
		return raw, false
	}
	q := u.Query()
	q.Del("cluster")
	u.RawQuery = q.Encode()
	return u.String(), true
}
