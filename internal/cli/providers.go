package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/siganteng/siganteng/internal/config"
	"github.com/siganteng/siganteng/internal/flow"
	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/provider/espeak"
	"github.com/siganteng/siganteng/internal/providers"
	"github.com/siganteng/siganteng/internal/routing"
	"github.com/siganteng/siganteng/internal/service"
	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
	"github.com/siganteng/siganteng/internal/tracing"
)

// unconfiguredHint is what a task says when no provider was configured and
// no local Ollama answers.
const unconfiguredHint = "no LLM provider is configured and no Ollama server answers at OLLAMA_BASE_URL. " +
	"Set OPENAI_API_KEY (OpenAI, or with OPENAI_BASE_URL any OpenAI-compatible server), " +
	"or HF_TOKEN (Hugging Face), or start Ollama ('ollama serve' and 'ollama pull llama3.2') " +
	"or point OLLAMA_BASE_URL at one; LLM_PROVIDER chooses among them"

// knownProviders is the registry as the routing file is checked against it.
var knownProviders = routing.Providers{Names: providers.Names(), Serves: providers.Serves}

// chooseProviders applies the registry's rule (providers.Choose) to the
// providers the environment names and the keys it sets.
func chooseProviders(cfg config.Config) (map[task.Type]providers.Choice, error) {
	chosen, err := providers.Choose(map[task.Type]providers.Named{
		task.TypeGenerateText:  {Variable: "LLM_PROVIDER", Provider: cfg.LLMProvider},
		task.TypeDescribeImage: {Variable: "VISION_PROVIDER", Provider: cfg.VisionProvider},
		task.TypeEmbed:         {Variable: "EMBED_PROVIDER", Provider: cfg.EmbedProvider},
		task.TypeTextToSpeech:  {Variable: "TTS_PROVIDER", Provider: cfg.TTSProvider},
		task.TypeSpeechToText:  {Variable: "STT_PROVIDER", Provider: cfg.STTProvider},
	}, func(name string) providers.Settings { return envSettings(cfg, name, nil) })
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return chosen, nil
}

// envModels are the models the environment names for each kind ("" for
// the provider's default).
func envModels(cfg config.Config) map[task.Type]string {
	return map[task.Type]string{
		task.TypeGenerateText: cfg.LLMModel, task.TypeDescribeImage: cfg.VisionModel, task.TypeEmbed: cfg.EmbedModel,
		task.TypeTextToSpeech: cfg.TTSModel, task.TypeSpeechToText: cfg.STTModel,
	}
}

// envSettings are what the environment gives a provider's adapter.
func envSettings(cfg config.Config, providerName string, client *http.Client) providers.Settings {
	s := providers.Settings{HTTPClient: client, Timeout: cfg.TaskTimeout}
	switch providerName {
	case config.ProviderOpenAI:
		s.BaseURL, s.APIKey = cfg.OpenAIBaseURL, cfg.OpenAIAPIKey
	case config.ProviderHuggingFace:
		s.BaseURL, s.InferenceURL, s.APIKey = cfg.HFBaseURL, cfg.HFInferenceURL, cfg.HFToken
	case config.ProviderOllama:
		s.BaseURL = cfg.OllamaBaseURL
	}
	return s
}

// buildProviders builds, from the registry, the adapter of each kind of
// work the environment configures.
//
// Each provider but the local espeak-ng is one deployment of flow control
// (flows), its kinds sharing one budget: they share a credential.
func buildProviders(cfg config.Config, chosen map[task.Type]providers.Choice, client *http.Client, flows *flow.Controller, log *slog.Logger) service.Providers {
	build := func(kind task.Type) any {
		name := chosen[kind].Provider
		spec, ok := providers.Lookup(name)
		if !ok || !spec.Serves(kind) {
			return nil
		}
		s := envSettings(cfg, name, client)
		s.Model = envModels(cfg)[kind]
		if name == config.ProviderEspeak {
			return spec.New(s, kind)
		}
		d := flows.Deployment(name, envLimits(cfg, name))
		s.HTTPClient = d.Client(client) // learns what the provider says of its limits
		return paced(kind, d, spec.New(s, kind))
	}
	llm := build(task.TypeGenerateText).(provider.LLM)
	vision := build(task.TypeDescribeImage).(provider.Vision)
	embedder := build(task.TypeEmbed).(provider.Embedder)
	// A local provider taken only because nothing else is configured: an
	// unreachable one means "configure something".
	if chosen[task.TypeGenerateText].Fallback {
		llm = provider.WithUnreachableHint(llm, unconfiguredHint)
	}
	if chosen[task.TypeDescribeImage].Fallback {
		vision = provider.VisionWithUnreachableHint(vision, unconfiguredHint)
	}
	if chosen[task.TypeEmbed].Fallback {
		embedder = provider.EmbedderWithUnreachableHint(embedder, unconfiguredHint)
	}
	var stt provider.STT = provider.Missing{Capability: "speech_to_text", Hint: "set OPENAI_API_KEY or HF_TOKEN (STT_PROVIDER chooses between them)"}
	if a, ok := build(task.TypeSpeechToText).(provider.STT); ok {
		stt = a
	}
	tts := build(task.TypeTextToSpeech).(provider.TTS)
	if chosen[task.TypeTextToSpeech].Provider == config.ProviderEspeak && !espeak.Available("") {
		log.Warn("text_to_speech uses espeak-ng, which is not installed: install it (apt-get install espeak-ng) or set OPENAI_API_KEY")
	}
	log.Info("providers", "llm", llm.Name(), "llm_model", modelOrDefault(cfg, chosen), "vision", vision.Name(), "embed", embedder.Name(), "stt", stt.Name(), "tts", tts.Name())
	return service.Providers{LLM: llm, TTS: tts, Vision: vision, Embedder: embedder, STT: stt}
}

func modelOrDefault(cfg config.Config, chosen map[task.Type]providers.Choice) string {
	if cfg.LLMModel != "" {
		return cfg.LLMModel
	}
	spec, _ := providers.Lookup(chosen[task.TypeGenerateText].Provider)
	return spec.Models[task.TypeGenerateText]
}

// providerHTTPClient keeps enough idle connections for every concurrent task
// to reuse one; deadlines come from each task's context. Its calls are
// spans of their task.
func providerHTTPClient(cfg config.Config, tr *tracing.Tracing) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = cfg.WorkerConcurrency * 2
	t.MaxIdleConnsPerHost = cfg.WorkerConcurrency
	return &http.Client{Transport: provider.LimitResponses(tr.Transport(t), cfg.MaxProviderResponseBytes)}
}

// envCatalog lists, for GET /models, the provider and default model of
// each capability as the environment configures them.
func envCatalog(cfg config.Config, chosen map[task.Type]providers.Choice, p service.Providers) []task.ModelInfo {
	served := map[task.Type]string{
		task.TypeGenerateText: p.LLM.Name(), task.TypeDescribeImage: p.Vision.Name(), task.TypeEmbed: p.Embedder.Name(),
		task.TypeTextToSpeech: p.TTS.Name(), task.TypeSpeechToText: p.STT.Name(),
	}
	models := envModels(cfg)
	out := make([]task.ModelInfo, 0, len(task.Types))
	for _, kind := range task.Types {
		name := models[kind]
		if name == "" {
			spec, _ := providers.Lookup(chosen[kind].Provider)
			name = spec.Models[kind]
		}
		out = append(out, task.ModelInfo{Capability: kind, Default: true, Provider: served[kind], Name: name})
	}
	return out
}

// catalog lists the routed models, then each capability the routing file
// does not route as the environment configures it, each with its flow
// control state.
func catalog(env []task.ModelInfo, router *routing.Router, flows *flow.Controller) service.Catalog {
	return func(ctx context.Context) []task.ModelInfo {
		var out []task.ModelInfo
		if router != nil {
			out = router.Models(ctx)
		}
		for _, m := range env {
			if router == nil || !router.Serves(string(m.Capability)) {
				out = append(out, m)
			}
		}
		states := map[string]*task.FlowInfo{}
		for _, s := range flows.States() {
			states[s.Deployment] = flowInfo(s)
		}
		for i := range out {
			if out[i].Provider != "" {
				out[i].Flow = states[out[i].Provider]
			}
			for j := range out[i].Deployments {
				out[i].Deployments[j].Flow = states[out[i].Deployments[j].ID]
			}
		}
		return out
	}
}

func flowInfo(s flow.State) *task.FlowInfo {
	info := &task.FlowInfo{RPM: s.Configured.RPM, TPM: s.Configured.TPM, Concurrent: s.Configured.Concurrent,
		LearnedRPM: s.LearnedRPM, LearnedTPM: s.LearnedTPM, PacedRPM: s.PacedRPM}
	if !s.PausedUntil.IsZero() {
		at := s.PausedUntil.UTC()
		info.PausedUntil = &at
	}
	return info
}

// checkProviders logs, once at start-up, whether each provider answers.
func checkProviders(ctx context.Context, p service.Providers, log *slog.Logger) {
	pinger, ok := p.LLM.(provider.Pinger)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := pinger.Ping(ctx); err != nil {
		if ctx.Err() != nil && ctx.Err() != context.DeadlineExceeded {
			return
		}
		var perr *provider.Error
		if errors.As(err, &perr) && perr.StatusCode != 0 && perr.Kind != provider.KindAuth && perr.Kind != provider.KindUnavailable {
			// It answered, only not to a model listing (several
			// OpenAI-compatible servers have no /v1/models): reachable.
			log.Info("LLM provider reachable (its model listing answered "+strconv.Itoa(perr.StatusCode)+")", "llm", p.LLM.Name())
			return
		}
		log.Warn("LLM provider is not reachable; generate_text tasks will fail until it is", "llm", p.LLM.Name(), "err", err)
		return
	}
	log.Info("LLM provider reachable", "llm", p.LLM.Name())
}

var (
	_ service.Models     = (*routing.Router)(nil)
	_ service.UsageStore = (*store.Store)(nil)
)

// routedProviders puts the router in front of each capability the routing
// file names; the others keep their providers from the environment.
func routedProviders(p service.Providers, r *routing.Router) service.Providers {
	if r.Serves(string(task.TypeGenerateText)) {
		p.LLM = r.LLM()
	}
	if r.Serves(string(task.TypeDescribeImage)) {
		p.Vision = r.Vision()
	}
	if r.Serves(string(task.TypeEmbed)) {
		p.Embedder = r.Embedder()
	}
	if r.Serves(string(task.TypeTextToSpeech)) {
		p.TTS = r.TTS()
	}
	if r.Serves(string(task.TypeSpeechToText)) {
		p.STT = r.STT()
	}
	return p
}

// deploymentAdapter makes the adapter of one routed deployment, under its
// flow control budget. The model comes with each request, so the adapters'
// default models are not used.
func deploymentAdapter(cfg config.Config, client *http.Client, flows *flow.Controller) routing.Build {
	return func(d routing.Deployment, capability string) (any, error) {
		spec, ok := providers.Lookup(d.Provider)
		if !ok {
			return nil, fmt.Errorf("unknown provider %q", d.Provider)
		}
		// Without base_url, the environment's server for that provider
		// (OPENAI_BASE_URL, OLLAMA_BASE_URL, HF_BASE_URL, HF_INFERENCE_URL),
		// whose defaults are the providers' own: a key meant for a local
		// server must not travel to a public one.
		s := envSettings(cfg, d.Provider, client)
		s.APIKey, s.Model = d.APIKey, d.Model
		if d.BaseURL != "" {
			s.BaseURL, s.InferenceURL = d.BaseURL, d.BaseURL
		}
		if d.Provider == config.ProviderEspeak {
			return spec.New(s, task.Type(capability)), nil
		}
		limits := fileLimits(d)
		if d.Provider == config.ProviderOllama && d.Limits.Concurrent == nil {
			// a local model's own parallelism, as for the environment's Ollama
			limits.Concurrent = cfg.Limits[config.ProviderOllama].Concurrent
		}
		dep := flows.Deployment(d.ID, limits)
		s.HTTPClient = dep.Client(client)
		return paced(task.Type(capability), dep, spec.New(s, task.Type(capability))), nil
	}
}

// reloadRoutesOnHangup reads ROUTES_FILE again on each SIGHUP and puts it
// in service; a file that does not load, or changes which capabilities are
// routed, is refused with a log line, and the routes in service stay.
func reloadRoutesOnHangup(path string, getenv func(string) string, router *routing.Router, log *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-hup:
			}
			f, err := routing.Load(path, getenv, knownProviders)
			if err == nil {
				err = router.Reload(f)
			}
			if err != nil {
				log.Error("ROUTES_FILE not reloaded; the routes in service stay", "path", path, "err", err)
				continue
			}
			log.Info("ROUTES_FILE reloaded", "path", path, "models", len(f.Models), "deployments", len(routing.DeploymentIDs(f)))
		}
	}()
	return func() { signal.Stop(hup); close(done) }
}
