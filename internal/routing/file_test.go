package routing_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/providers"
	"github.com/siganteng/siganteng/internal/routing"
)

func env(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }

func TestParseFillsDefaultsAndResolvesKeys(t *testing.T) {
	f, err := routing.Parse([]byte(`
models:
  - name: chat
    capability: generate_text
    deployments:
      - {provider: openai, model: gpt-4o-mini, api_key_env: OPENAI_KEY, price: {input_per_million_tokens: 0.15}}
      - {provider: ollama, model: llama3.2, weight: 0}
  - name: big-chat
    capability: generate_text
    deployments:
      - {provider: openai, model: gpt-4o, base_url: "http://127.0.0.1:9/v1"}
`), env(map[string]string{"OPENAI_KEY": "sk-test"}), known)
	require.NoError(t, err)
	require.Equal(t, routing.DefaultFailures, f.Breaker.Failures)
	require.Equal(t, routing.DefaultCooldown, f.Breaker.Cooldown)
	d := f.Models[0].Deployments
	require.Equal(t, "chat/1", d[0].ID)
	require.Equal(t, "chat/2", d[1].ID)
	require.Equal(t, "sk-test", d[0].APIKey)
	require.Equal(t, 1, *d[0].Weight, "weight 1 when absent")
	require.Equal(t, 0, *d[1].Weight)
	require.Equal(t, []string{"chat/1", "chat/2", "big-chat/1"}, routing.DeploymentIDs(f))

	m, err := f.Lookup("generate_text", "")
	require.NoError(t, err)
	require.Equal(t, "chat", m.Name, "the first model of a capability is its default")
	_, err = f.Lookup("generate_text", "gpt-5")
	require.EqualError(t, err, `no model "gpt-5" for generate_text; the models are: chat, big-chat`)
	_, err = f.Lookup("embed", "")
	require.EqualError(t, err, "the routing file names no model for embed")
}

func TestParseNamesEveryProblem(t *testing.T) {
	_, err := routing.Parse([]byte(`
breaker: {failures: 3, cooldown: 100ms}
models:
  - name: chat
    capability: chat
    deployments:
      - {provider: azure, model: x}
  - name: chat
    capability: text_to_speech
    deployments:
      - {provider: ollama, model: y}
      - {provider: openai, model: z, api_key_env: MISSING}
  - name: quiet
    capability: embed
    deployments:
      - {provider: openai, model: e, base_url: "http://h/v1", weight: 0}
`), env(nil), known)
	require.Error(t, err)
	for _, want := range []string{
		"cooldown at least 1s",
		`capability "chat" is not one of`,
		`provider "azure" is not one of openai, huggingface, ollama, espeak`,
		`name "chat" is used twice`,
		"provider ollama cannot serve text_to_speech",
		"api_key_env names MISSING, which is not set",
		"every deployment has weight 0",
	} {
		require.Contains(t, err.Error(), want)
	}
	require.NotContains(t, err.Error(), "sk-", "no secret in errors")
}

func TestParseRefusesUnknownFields(t *testing.T) {
	_, err := routing.Parse([]byte("models:\n  - name: a\n    capabilty: embed\n"), env(nil), known)
	require.ErrorContains(t, err, "capabilty")
}

func TestCostUsesEveryPrice(t *testing.T) {
	d := routing.Deployment{Price: routing.Price{InputPerMillionTokens: 2, OutputPerMillionTokens: 8, PerMillionCharacters: 15, PerAudioMinute: 0.006}}
	cost, ok := d.Cost(routingMetered(1_000_000, 500_000, 1000, 120))
	require.True(t, ok)
	require.InDelta(t, 2+4+0.015+0.012, cost, 1e-9)
	_, ok = routing.Deployment{}.Cost(routingMetered(1, 1, 1, 1))
	require.False(t, ok, "no prices, no cost")
}

func TestExampleFileParses(t *testing.T) {
	// It starts with OPENAI_API_KEY alone, as the README promises.
	f, err := routing.Load("../../deploy/routes.example.yaml", env(map[string]string{"OPENAI_API_KEY": "sk-x"}), known)
	require.NoError(t, err)
	for _, capability := range routing.Capabilities {
		_, ok := f.Default(capability)
		require.True(t, ok, "the example routes %s", capability)
	}
	_, err = routing.Load("../../deploy/routes.example.yaml", env(nil), known)
	require.ErrorContains(t, err, "api_key_env names OPENAI_API_KEY, which is not set")
}

// known is the registry, as internal/cli gives it to the routing file.
var known = routing.Providers{Names: providers.Names(), Serves: providers.Serves}

func TestParseReadsLimitsAndRefusesZeroOrNegativeOnes(t *testing.T) {
	f, err := routing.Parse([]byte(`
models:
  - name: chat
    capability: generate_text
    deployments:
      - {provider: ollama, model: llama3.2, limits: {rpm: 6000, tpm: 150000, concurrent: 4}}
      - {provider: ollama, model: llama3.2, weight: 0}
`), env(nil), known)
	require.NoError(t, err)
	rpm, tpm, concurrent := f.Models[0].Deployments[0].Limits.Values()
	require.Equal(t, []int{6000, 150000, 4}, []int{rpm, tpm, concurrent})
	rpm, tpm, concurrent = f.Models[0].Deployments[1].Limits.Values()
	require.Equal(t, []int{0, 0, 0}, []int{rpm, tpm, concurrent}, "absent limits are none")

	_, err = routing.Parse([]byte(`
models:
  - name: chat
    capability: generate_text
    deployments:
      - {provider: ollama, model: llama3.2, limits: {rpm: 0, concurrent: -2}}
`), env(nil), known)
	require.EqualError(t, err, "routing file: models[0].deployments[0]: limits.rpm is 0; a limit is at least 1 (leave it out for none); "+
		"models[0].deployments[0]: limits.concurrent is -2; a limit is at least 1 (leave it out for none)")
}
