// Package routing serves named models from a routing file: each name stands
// for an ordered list of deployments (a provider, its model, its address and
// key), load is spread across them by weight, a transient failure moves the
// call to the next one, and a circuit breaker shared through Redis skips a
// deployment that keeps failing. It also prices what each call consumed.
package routing

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/siganteng/siganteng/internal/task"
)

// The capabilities a model can serve: the task types.
var Capabilities = []string{"generate_text", "describe_image", "embed", "text_to_speech", "speech_to_text"}

// Providers is what a routing file's deployments are checked against: the
// registry of providers (internal/providers), given by the caller, so the
// router knows no provider of its own.
type Providers struct {
	Names  []string
	Serves func(name string, kind task.Type) bool
}

// File is the routing file as written.
type File struct {
	Breaker BreakerSettings `yaml:"breaker"`
	Models  []Model         `yaml:"models"`
}

// BreakerSettings say when a deployment is skipped: after Failures transient
// failures in a row, for Cooldown; then one call is let through, and one
// more failure skips it again.
type BreakerSettings struct {
	Failures int           `yaml:"failures"`
	Cooldown time.Duration `yaml:"cooldown"`
}

// Model is a name clients may ask for.
type Model struct {
	Name        string       `yaml:"name"`
	Capability  string       `yaml:"capability"`
	Deployments []Deployment `yaml:"deployments"`
}

// Deployment is one place a model is served.
type Deployment struct {
	// ID is "<model name>/<position from 1>", as records and metrics show it.
	ID       string `yaml:"-"`
	Provider string `yaml:"provider"`
	Model    string `yaml:"model"`
	BaseURL  string `yaml:"base_url"`
	// APIKeyEnv names the environment variable holding the key: the file
	// itself never holds a secret.
	APIKeyEnv string `yaml:"api_key_env"`
	APIKey    string `yaml:"-"`
	// Weight shares load among the deployments of a model; 0 makes it a
	// fallback only, tried in file order after the weighted ones.
	Weight *int  `yaml:"weight"`
	Price  Price `yaml:"price"`
	// Limits are what the provider allows this deployment's credential;
	// absent ones are learned from the provider's answers.
	Limits Limits `yaml:"limits"`
}

// Limits bound one deployment, shared by every worker and API instance;
// an absent field is no configured limit.
type Limits struct {
	RPM        *int `yaml:"rpm"`        // requests per minute
	TPM        *int `yaml:"tpm"`        // tokens per minute
	Concurrent *int `yaml:"concurrent"` // calls at once
}

// Values are the limits with 0 for each one absent.
func (l Limits) Values() (rpm, tpm, concurrent int) {
	get := func(p *int) int {
		if p == nil {
			return 0
		}
		return *p
	}
	return get(l.RPM), get(l.TPM), get(l.Concurrent)
}

// Price is what a deployment costs, in US dollars.
type Price = task.Price

// Cost prices what a call consumed at deployment d's prices; false when d
// has no prices.
func (d Deployment) Cost(m task.Metered) (float64, bool) { return d.Price.Cost(m) }

// Default breaker settings, for a file that gives none.
const (
	DefaultFailures = 5
	DefaultCooldown = 30 * time.Second
)

// Load reads and checks a routing file; getenv resolves each api_key_env.
// Every problem is reported with where it is, so an operator fixes the file
// in one go.
func Load(path string, getenv func(string) string, known Providers) (*File, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(raw, getenv, known)
}

// Parse is Load on the file's contents.
func Parse(raw []byte, getenv func(string) string, known Providers) (*File, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("routing file: %w", err)
	}
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if f.Breaker.Failures == 0 {
		f.Breaker.Failures = DefaultFailures
	}
	if f.Breaker.Cooldown == 0 {
		f.Breaker.Cooldown = DefaultCooldown
	}
	if f.Breaker.Failures < 0 || f.Breaker.Cooldown < time.Second {
		fail("breaker: failures must be at least 1 and cooldown at least 1s")
	}
	if len(f.Models) == 0 {
		fail("models: the file names no model")
	}
	seen := map[string]bool{}
	for i := range f.Models {
		m := &f.Models[i]
		at := fmt.Sprintf("models[%d]", i)
		switch {
		case m.Name == "":
			fail("%s: name is empty", at)
		case strings.ContainsAny(m.Name, "/ \t"):
			fail("%s: name %q may not hold '/' or spaces", at, m.Name)
		case seen[m.Name]:
			fail("%s: name %q is used twice", at, m.Name)
		}
		seen[m.Name] = true
		if !slices.Contains(Capabilities, m.Capability) {
			fail("%s (%s): capability %q is not one of %s", at, m.Name, m.Capability, strings.Join(Capabilities, ", "))
		}
		if len(m.Deployments) == 0 {
			fail("%s (%s): no deployments", at, m.Name)
		}
		weighted := 0
		for j := range m.Deployments {
			d := &m.Deployments[j]
			d.ID = fmt.Sprintf("%s/%d", m.Name, j+1)
			dat := fmt.Sprintf("%s.deployments[%d]", at, j)
			switch {
			case !slices.Contains(known.Names, d.Provider):
				fail("%s: provider %q is not one of %s", dat, d.Provider, strings.Join(known.Names, ", "))
			case !known.Serves(d.Provider, task.Type(m.Capability)) && slices.Contains(Capabilities, m.Capability):
				fail("%s: provider %s cannot serve %s", dat, d.Provider, m.Capability)
			}
			if d.Model == "" {
				fail("%s: model is empty", dat)
			}
			switch {
			case d.Provider == "openai" && d.BaseURL == "" && d.APIKeyEnv == "":
				fail("%s: OpenAI itself needs api_key_env; give base_url for a keyless OpenAI-compatible server", dat)
			case d.Provider == "huggingface" && d.APIKeyEnv == "":
				fail("%s: Hugging Face needs api_key_env (a token)", dat)
			}
			if d.APIKeyEnv != "" {
				if d.APIKey = getenv(d.APIKeyEnv); d.APIKey == "" {
					fail("%s: api_key_env names %s, which is not set", dat, d.APIKeyEnv)
				}
			}
			if d.Weight == nil {
				d.Weight = new(int)
				*d.Weight = 1
			}
			if *d.Weight < 0 {
				fail("%s: weight must be 0 or more", dat)
			}
			if *d.Weight > 0 {
				weighted++
			}
			for i, v := range []*int{d.Limits.RPM, d.Limits.TPM, d.Limits.Concurrent} {
				if v != nil && *v < 1 {
					fail("%s: limits.%s is %d; a limit is at least 1 (leave it out for none)", dat, []string{"rpm", "tpm", "concurrent"}[i], *v)
				}
			}
			p := d.Price
			if p.InputPerMillionTokens < 0 || p.OutputPerMillionTokens < 0 || p.PerMillionCharacters < 0 || p.PerAudioMinute < 0 {
				fail("%s: prices must be 0 or more", dat)
			}
		}
		if len(m.Deployments) > 0 && weighted == 0 {
			fail("%s (%s): every deployment has weight 0; at least one must take load", at, m.Name)
		}
	}
	if len(problems) > 0 {
		return nil, errors.New("routing file: " + strings.Join(problems, "; "))
	}
	return &f, nil
}

// Default is the model used for a capability when a request names none:
// the first of that capability in the file.
func (f *File) Default(capability string) (Model, bool) {
	for _, m := range f.Models {
		if m.Capability == capability {
			return m, true
		}
	}
	return Model{}, false
}

// Lookup finds a model of capability by name ("" for the default). A name
// that does not exist is an error naming the ones that do.
func (f *File) Lookup(capability, name string) (Model, error) {
	if name == "" {
		if m, ok := f.Default(capability); ok {
			return m, nil
		}
		return Model{}, fmt.Errorf("the routing file names no model for %s", capability)
	}
	var names []string
	for _, m := range f.Models {
		if m.Capability == capability {
			if m.Name == name {
				return m, nil
			}
			names = append(names, m.Name)
		}
	}
	if len(names) == 0 {
		return Model{}, fmt.Errorf("the routing file names no model for %s", capability)
	}
	return Model{}, fmt.Errorf("no model %q for %s; the models are: %s", name, capability, strings.Join(names, ", "))
}
