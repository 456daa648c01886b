package architecture_test

import (
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/siganteng/siganteng/internal/"

// adapters are the concrete providers; only the wiring may name them.
var adapters = []string{"provider/openai", "provider/huggingface", "provider/ollama", "provider/espeak"}

// rule forbids the packages matching from to import any of the packages
// named in forbidden (an entry ending in "/" forbids the whole subtree).
type rule struct {
	name      string
	from      func(pkg string) bool
	forbidden []string
}

func is(names ...string) func(string) bool {
	return func(pkg string) bool { return slices.Contains(names, pkg) }
}

func under(prefix string) func(string) bool {
	return func(pkg string) bool { return strings.HasPrefix(pkg, prefix) }
}

// The layer rules. Each says what a package may not know.
var rules = []rule{
	{"the HTTP layer has no business logic: it calls the service, and knows no store, queue, worker, router or provider",
		is("httpapi"), append([]string{"store", "queue", "worker", "routing", "provider", "config", "notify", "webhook"}, adapters...)},
	{"the OpenAI-compatible front translates shapes only: it calls the service, as the HTTP layer does",
		is("openaiapi"), append([]string{"store", "queue", "worker", "routing", "provider", "config", "notify", "webhook", "httpapi"}, adapters...)},
	{"the service layer knows no provider by name, nor the router, the HTTP layer or the worker",
		is("service"), append([]string{"routing", "httpapi", "openaiapi", "worker", "queue", "config", "cli"}, adapters...)},
	{"the worker runs what the service executes: it knows no router, provider by name or HTTP layer",
		is("worker"), append([]string{"routing", "httpapi", "config", "cli"}, adapters...)},
	{"providers know nothing of HTTP handlers, queues, records or routing",
		under("provider"), []string{"httpapi", "service", "worker", "queue", "store", "routing", "cli", "config", "webhook"}},
	{"the provider interfaces know no adapter", is("provider"), adapters},
	{"the queue knows no webhook delivery, worker or service", is("queue"), []string{"webhook", "worker", "service", "store"}},
	{"config reads settings only: which provider serves is the registry's rule", is("config"), []string{"routing", "store", "service", "httpapi", "worker", "queue", "provider", "providers"}},
	{"the domain depends on nothing of ours", is("task"), []string{""}},
	{"the router knows no adapter and no service: internal/cli builds its adapters",
		is("routing"), append([]string{"service", "httpapi", "worker", "queue", "store", "config"}, adapters...)},
	{"only the provider registry (internal/providers) builds concrete providers, and internal/cli wires it", func(pkg string) bool {
		return pkg != "providers" && pkg != "cli" && !slices.Contains(adapters, pkg) && pkg != "provider/providertest"
	}, adapters},
	{"flow control paces calls through the provider interfaces; it knows no adapter, router or layer above",
		is("flow"), append([]string{"service", "httpapi", "worker", "queue", "store", "routing", "config", "cli", "providers"}, adapters...)},
	{"the batch runner submits lines through the service and translates them through a codec it is given: it knows no front, router, provider or worker",
		is("batch"), append([]string{"httpapi", "openaiapi", "routing", "provider", "providers", "worker", "queue", "config", "cli", "flow"}, adapters...)},
	{"the registry knows providers, not the layers that use them", is("providers"),
		[]string{"service", "httpapi", "worker", "queue", "store", "routing", "cli", "config"}},
}

// imports lists every package of the module with the module's packages it
// imports (tests excluded: they may use anything).
func imports(t *testing.T) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "../...")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	all := map[string][]string{}
	dec := json.NewDecoder(out)
	for {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else {
			require.NoError(t, err)
		}
		name, ok := strings.CutPrefix(p.ImportPath, module)
		if !ok {
			continue
		}
		for _, imp := range p.Imports {
			if own, ok := strings.CutPrefix(imp, module); ok {
				all[name] = append(all[name], own)
			}
		}
		if _, seen := all[name]; !seen {
			all[name] = nil
		}
	}
	require.NoError(t, cmd.Wait())
	return all
}

func forbids(forbidden []string, imp string) bool {
	for _, f := range forbidden {
		if f == "" || imp == f || strings.HasPrefix(imp, f+"/") {
			return true
		}
	}
	return false
}

func TestLayerRules(t *testing.T) {
	t.Parallel()
	all := imports(t)
	require.Contains(t, all, "httpapi", "the module's packages were listed")
	require.Contains(t, all["providers"], "provider/openai", "the registry is seen importing an adapter")
	for _, r := range rules {
		for pkg, imps := range all {
			if !r.from(pkg) {
				continue
			}
			for _, imp := range imps {
				if forbids(r.forbidden, imp) {
					t.Errorf("%s imports %s, which breaks the rule: %s", pkg, imp, r.name)
				}
			}
		}
	}
}

// The check can fail: a rule broken on purpose is caught.
func TestLayerRulesCatchABreak(t *testing.T) {
	t.Parallel()
	broken := map[string][]string{"httpapi": {"store"}, "service": {"routing"}, "queue": {"webhook"}, "config": {"routing"}}
	caught := map[string]bool{}
	for _, r := range rules {
		for pkg, imps := range broken {
			for _, imp := range imps {
				if r.from(pkg) && forbids(r.forbidden, imp) {
					caught[pkg] = true
				}
			}
		}
	}
	require.Len(t, caught, len(broken), "each of the old breaks would be caught: %v", caught)
}
