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
	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/provider/espeak"
	"github.com/siganteng/siganteng/internal/provider/huggingface"
	"github.com/siganteng/siganteng/internal/provider/ollama"
	"github.com/siganteng/siganteng/internal/provider/openai"
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

func buildProviders(cfg config.Config, client *http.Client, log *slog.Logger) service.Providers {
	var llm provider.LLM
	switch cfg.LLMProvider {
	case config.ProviderOpenAI:
		llm = openai.New(openai.Config{BaseURL: cfg.OpenAIBaseURL, APIKey: cfg.OpenAIAPIKey, DefaultModel: cfg.LLMModel, HTTPClient: client})
	case config.ProviderHuggingFace:
		llm = huggingface.New(huggingface.Config{BaseURL: cfg.HFBaseURL, Token: cfg.HFToken, DefaultModel: cfg.LLMModel, HTTPClient: client})
	default:
		llm = ollama.New(ollama.Config{BaseURL: cfg.OllamaBaseURL, DefaultModel: cfg.LLMModel, HTTPClient: client})
		if !cfg.LLMProviderChosen {
			llm = provider.WithUnreachableHint(llm, unconfiguredHint)
		}
	}
	var vision provider.Vision
	switch cfg.VisionProvider {
	case config.ProviderOpenAI:
		vision = openai.New(openai.Config{BaseURL: cfg.OpenAIBaseURL, APIKey: cfg.OpenAIAPIKey, VisionModel: cfg.VisionModel, HTTPClient: client})
	case config.ProviderHuggingFace:
		vision = huggingface.New(huggingface.Config{BaseURL: cfg.HFBaseURL, Token: cfg.HFToken, VisionModel: cfg.VisionModel, HTTPClient: client})
	default:
		vision = ollama.New(ollama.Config{BaseURL: cfg.OllamaBaseURL, VisionModel: cfg.VisionModel, HTTPClient: client})
		if !cfg.LLMProviderChosen {
			vision = provider.VisionWithUnreachableHint(vision, unconfiguredHint)
		}
	}

	var embedder provider.Embedder
	switch cfg.EmbedProvider {
	case config.ProviderOpenAI:
		embedder = openai.New(openai.Config{BaseURL: cfg.OpenAIBaseURL, APIKey: cfg.OpenAIAPIKey, EmbedModel: cfg.EmbedModel, HTTPClient: client})
	case config.ProviderHuggingFace:
		embedder = huggingface.NewEmbedder(huggingface.InferenceConfig{InferenceURL: cfg.HFInferenceURL, Token: cfg.HFToken, DefaultModel: cfg.EmbedModel, HTTPClient: client})
	default:
		embedder = ollama.New(ollama.Config{BaseURL: cfg.OllamaBaseURL, EmbedModel: cfg.EmbedModel, HTTPClient: client})
		if !cfg.LLMProviderChosen {
			embedder = provider.EmbedderWithUnreachableHint(embedder, unconfiguredHint)
		}
	}

	var stt provider.STT
	switch cfg.STTProvider {
	case config.ProviderOpenAI:
		stt = openai.New(openai.Config{BaseURL: cfg.OpenAIBaseURL, APIKey: cfg.OpenAIAPIKey, TranscribeModel: cfg.STTModel, HTTPClient: client})
	case config.ProviderHuggingFace:
		stt = huggingface.NewASR(huggingface.InferenceConfig{InferenceURL: cfg.HFInferenceURL, Token: cfg.HFToken, DefaultModel: cfg.STTModel, HTTPClient: client})
	default:
		stt = provider.Missing{Capability: "speech_to_text", Hint: "set OPENAI_API_KEY or HF_TOKEN (STT_PROVIDER chooses between them)"}
	}

	var tts provider.TTS
	switch cfg.TTSProvider {
	case config.ProviderOpenAI:
		tts = openai.New(openai.Config{BaseURL: cfg.OpenAIBaseURL, APIKey: cfg.OpenAIAPIKey, SpeechModel: cfg.TTSModel, HTTPClient: client})
	case config.ProviderHuggingFace:
		tts = huggingface.NewTTS(huggingface.InferenceConfig{InferenceURL: cfg.HFInferenceURL, Token: cfg.HFToken, DefaultModel: cfg.TTSModel, HTTPClient: client})
	default:
		tts = espeak.New(espeak.Config{Timeout: cfg.TaskTimeout})
		if !espeak.Available("") {
			log.Warn("text_to_speech uses espeak-ng, which is not installed: install it (apt-get install espeak-ng) or set OPENAI_API_KEY")
		}
	}
	log.Info("providers", "llm", llm.Name(), "llm_model", modelOrDefault(cfg), "vision", vision.Name(), "embed", embedder.Name(), "stt", stt.Name(), "tts", tts.Name())
	return service.Providers{LLM: llm, TTS: tts, Vision: vision, Embedder: embedder, STT: stt}
}

func modelOrDefault(cfg config.Config) string {
	if cfg.LLMModel != "" {
		return cfg.LLMModel
	}
	switch cfg.LLMProvider {
	case config.ProviderOpenAI:
		return openai.DefaultModel
	case config.ProviderHuggingFace:
		return huggingface.DefaultModel
	}
	return ollama.DefaultModel
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
func envCatalog(cfg config.Config, p service.Providers) []task.ModelInfo {
	pick := func(set string, defaults map[string]string, providerName string) string {
		if set != "" {
			return set
		}
		return defaults[providerName]
	}
	o, h, l := config.ProviderOpenAI, config.ProviderHuggingFace, config.ProviderOllama
	return []task.ModelInfo{
		{Capability: task.TypeGenerateText, Default: true, Provider: p.LLM.Name(), Name: modelOrDefault(cfg)},
		{Capability: task.TypeDescribeImage, Default: true, Provider: p.Vision.Name(), Name: pick(cfg.VisionModel,
			map[string]string{o: openai.DefaultVisionModel, h: huggingface.DefaultVisionModel, l: ollama.DefaultVisionModel}, cfg.VisionProvider)},
		{Capability: task.TypeEmbed, Default: true, Provider: p.Embedder.Name(), Name: pick(cfg.EmbedModel,
			map[string]string{o: openai.DefaultEmbedModel, h: huggingface.DefaultEmbedModel, l: ollama.DefaultEmbedModel}, cfg.EmbedProvider)},
		{Capability: task.TypeTextToSpeech, Default: true, Provider: p.TTS.Name(), Name: pick(cfg.TTSModel,
			map[string]string{o: openai.DefaultSpeechModel, h: huggingface.DefaultTTSModel, config.ProviderEspeak: "espeak-ng"}, cfg.TTSProvider)},
		{Capability: task.TypeSpeechToText, Default: true, Provider: p.STT.Name(), Name: pick(cfg.STTModel,
			map[string]string{o: openai.DefaultTranscribeModel, h: huggingface.DefaultASRModel}, cfg.STTProvider)},
	}
}

// catalog lists the routed models, then each capability the routing file
// does not route as the environment configures it.
func catalog(env []task.ModelInfo, router *routing.Router) service.Catalog {
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
		return out
	}
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

// deploymentAdapter makes the adapter of one routed deployment. The model
// comes with each request, so the adapters' default models are not used.
func deploymentAdapter(cfg config.Config, client *http.Client) routing.Build {
	return func(d routing.Deployment, capability string) (any, error) {
		if d.BaseURL == "" {
			// The environment's server for that provider (OPENAI_BASE_URL,
			// OLLAMA_BASE_URL, HF_BASE_URL or HF_INFERENCE_URL), whose
			// defaults are the providers' own: a key meant for a local
			// server must not travel to a public one.
			d.BaseURL = envBaseURL(cfg, d.Provider, capability)
		}
		switch d.Provider {
		case config.ProviderOpenAI:
			return openai.New(openai.Config{BaseURL: d.BaseURL, APIKey: d.APIKey, HTTPClient: client}), nil
		case config.ProviderOllama:
			return ollama.New(ollama.Config{BaseURL: d.BaseURL, HTTPClient: client}), nil
		case config.ProviderHuggingFace:
			inference := huggingface.InferenceConfig{InferenceURL: d.BaseURL, Token: d.APIKey, DefaultModel: d.Model, HTTPClient: client}
			switch task.Type(capability) {
			case task.TypeEmbed:
				return huggingface.NewEmbedder(inference), nil
			case task.TypeSpeechToText:
				return huggingface.NewASR(inference), nil
			case task.TypeTextToSpeech:
				return huggingface.NewTTS(inference), nil
			}
			return huggingface.New(huggingface.Config{BaseURL: d.BaseURL, Token: d.APIKey, HTTPClient: client}), nil
		}
		return nil, fmt.Errorf("unknown provider %q", d.Provider)
	}
}

// envBaseURL is the base URL the environment gives a provider's adapter for
// capability.
func envBaseURL(cfg config.Config, providerName, capability string) string {
	switch providerName {
	case config.ProviderOpenAI:
		return cfg.OpenAIBaseURL
	case config.ProviderOllama:
		return cfg.OllamaBaseURL
	case config.ProviderHuggingFace:
		switch task.Type(capability) {
		case task.TypeEmbed, task.TypeSpeechToText, task.TypeTextToSpeech:
			return cfg.HFInferenceURL
		}
		return cfg.HFBaseURL
	}
	return ""
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
			f, err := routing.Load(path, getenv)
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
