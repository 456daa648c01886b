package cli

import (
	"github.com/siganteng/siganteng/internal/config"
	"github.com/siganteng/siganteng/internal/flow"
	"github.com/siganteng/siganteng/internal/metrics"
	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/routing"
	"github.com/siganteng/siganteng/internal/task"
)

// paced puts adapter, which serves kind, under deployment d's budget.
func paced(kind task.Type, d *flow.Deployment, adapter any) any {
	switch kind {
	case task.TypeGenerateText:
		return flow.LLM(d, adapter.(provider.LLM))
	case task.TypeDescribeImage:
		return flow.Vision(d, adapter.(provider.Vision))
	case task.TypeEmbed:
		return flow.Embedder(d, adapter.(provider.Embedder))
	case task.TypeTextToSpeech:
		return flow.TTS(d, adapter.(provider.TTS))
	case task.TypeSpeechToText:
		return flow.STT(d, adapter.(provider.STT))
	}
	return adapter
}

// envLimits are the limits the environment gives provider name.
func envLimits(cfg config.Config, name string) flow.Limits {
	l := cfg.Limits[name]
	return flow.Limits{RPM: l.RPM, TPM: l.TPM, Concurrent: l.Concurrent}
}

// fileLimits are the limits the routing file gives d.
func fileLimits(d routing.Deployment) flow.Limits {
	rpm, tpm, concurrent := d.Limits.Values()
	return flow.Limits{RPM: rpm, TPM: tpm, Concurrent: concurrent}
}

// flowStates are the deployments' limits as the metrics show them.
func flowStates(flows *flow.Controller) func() []metrics.FlowState {
	return func() []metrics.FlowState {
		states := flows.States()
		out := make([]metrics.FlowState, len(states))
		for i, s := range states {
			out[i] = metrics.FlowState{Deployment: s.Deployment, RPM: s.Configured.RPM, TPM: s.Configured.TPM, Concurrent: s.Configured.Concurrent,
				LearnedRPM: s.LearnedRPM, LearnedTPM: s.LearnedTPM, PacedRPM: s.PacedRPM, Paused: !s.PausedUntil.IsZero(), Waiting: s.Waiting}
		}
		return out
	}
}
