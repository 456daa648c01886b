package routing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/task"
)

// Build makes the adapter of one deployment for a capability: a value
// implementing that capability's provider interface.
type Build func(d Deployment, capability string) (any, error)

// BreakersFor makes the circuit breakers of a file's deployments; nil, or
// a nil answer, for none.
type BreakersFor func(f *File) *Breakers

// Router serves the routing file's models. The file in service can be
// replaced while calls run (Reload).
type Router struct {
	build       Build
	breakersFor BreakersFor
	routes      atomic.Pointer[routes]
}

// routes is one routing file in service, with its adapters and breakers.
type routes struct {
	file     *File
	adapters map[string]any // by deployment id
	breakers *Breakers
	now      func() time.Time
}

// New builds every deployment's adapter and its breaker.
func New(f *File, build Build, breakersFor BreakersFor) (*Router, error) {
	r := &Router{build: build, breakersFor: breakersFor}
	rt, err := r.load(f)
	if err != nil {
		return nil, err
	}
	r.routes.Store(rt)
	return r, nil
}

func (r *Router) load(f *File) (*routes, error) {
	rt := &routes{file: f, adapters: map[string]any{}, now: time.Now}
	if r.breakersFor != nil {
		rt.breakers = r.breakersFor(f)
	}
	if rt.breakers != nil {
		rt.now = rt.breakers.now // one clock for the breakers and the choice
	}
	for _, m := range f.Models {
		for _, d := range m.Deployments {
			a, err := r.build(d, m.Capability)
			if err != nil {
				return nil, fmt.Errorf("routing: %s: %w", d.ID, err)
			}
			rt.adapters[d.ID] = a
		}
	}
	return rt, nil
}

// Reload puts f in service for the calls that start from now on; calls
// already running finish on the routes they began with. Breaker state is
// kept in Redis by deployment id, so a deployment keeps its breaker across
// a reload. The capabilities f routes must be those already routed, since
// which providers stand behind the router is decided at start-up; otherwise
// f is refused and the routes in service stay.
func (r *Router) Reload(f *File) error {
	for _, c := range Capabilities {
		if _, had := r.routes.Load().file.Default(c); had != hasCapability(f, c) {
			return fmt.Errorf("routing: the new file changes whether %s is routed; that takes a restart", c)
		}
	}
	rt, err := r.load(f)
	if err != nil {
		return err
	}
	r.routes.Store(rt)
	return nil
}

func hasCapability(f *File, capability string) bool {
	_, ok := f.Default(capability)
	return ok
}

// DeploymentIDs lists every deployment, in file order.
func DeploymentIDs(f *File) []string {
	var ids []string
	for _, m := range f.Models {
		for _, d := range m.Deployments {
			ids = append(ids, d.ID)
		}
	}
	return ids
}

// Resolve returns the model of capability that a request naming name (""
// for the default) gets, or an error naming the models that exist. For a
// capability the file does not route it returns false: that capability is
// served as without a file, and any name passes to the provider.
func (r *Router) Resolve(capability, name string) (string, bool, error) {
	if !r.Serves(capability) {
		return "", false, nil
	}
	m, err := r.routes.Load().file.Lookup(capability, name)
	return m.Name, true, err
}

// Serves reports whether the file names a model of capability.
func (r *Router) Serves(capability string) bool {
	return hasCapability(r.routes.Load().file, capability)
}

// Breakers returns every deployment's breaker, as last read (at most a
// second old); none without breakers.
func (r *Router) Breakers(ctx context.Context) map[string]BreakerState {
	return r.routes.Load().states(ctx)
}

func (rt *routes) states(ctx context.Context) map[string]BreakerState {
	if rt.breakers == nil {
		return nil
	}
	return rt.breakers.States(ctx)
}

// order is the sequence in which m's deployments are tried: the weighted
// ones in a random order drawn by weight, then the fallbacks (weight 0) in
// file order, leaving out those whose breaker is open. When every one is
// open, it returns none and when the first reopens.
func (rt *routes) order(ctx context.Context, m Model) ([]Deployment, time.Time) {
	states := rt.states(ctx)
	now := rt.now()
	var weighted, fallbacks []Deployment
	var reopens time.Time
	total := 0
	for _, d := range m.Deployments {
		if s := states[d.ID]; s.Open(now) {
			if reopens.IsZero() || s.OpenUntil.Before(reopens) {
				reopens = s.OpenUntil
			}
			continue
		}
		if *d.Weight == 0 {
			fallbacks = append(fallbacks, d)
			continue
		}
		weighted = append(weighted, d)
		total += *d.Weight
	}
	out := make([]Deployment, 0, len(weighted)+len(fallbacks))
	for len(weighted) > 0 {
		pick := rand.IntN(total)
		for i, d := range weighted {
			if pick < *d.Weight {
				out = append(out, d)
				total -= *d.Weight
				weighted = append(weighted[:i], weighted[i+1:]...)
				break
			}
			pick -= *d.Weight
		}
	}
	return append(out, fallbacks...), reopens
}

// call runs do on the deployments of the model name (of capability) in
// order until one succeeds. A transient failure, or refused credentials,
// moves on to the next deployment and counts against its breaker; a request
// the provider rejects, or the end of ctx, stops at once: another
// deployment would refuse it too, or the attempt is over. retryable, when
// given, says whether another deployment may still be tried (a stream that
// has begun may not).
//
// It returns what served the call, with every call tried and the serving
// deployment's prices, as the response's route (set through routed); a
// failure comes back as a *provider.RoutedError carrying the calls tried.
func call[R any](r *Router, ctx context.Context, capability, name string, retryable func() bool,
	do func(adapter any, model string) (R, error), routed func(*R, *task.Route)) (R, error) {
	var zero R
	rt := r.routes.Load() // one file for the whole call, even across a reload
	m, err := rt.file.Lookup(capability, name)
	if err != nil {
		return zero, &provider.Error{Provider: Name, Kind: provider.KindRejected, Message: err.Error()}
	}
	order, reopens := rt.order(ctx, m)
	if len(order) == 0 {
		return zero, &provider.Error{Provider: Name, Kind: provider.KindUnavailable, RetryAfter: reopens.Sub(rt.now()),
			Message: fmt.Sprintf("every deployment of model %s is cooling down after failures", m.Name)}
	}
	var (
		calls []task.Call
		last  error
	)
	failure := func(err error) error { return &provider.RoutedError{Err: err, Calls: calls} }
	for i, d := range order {
		if i > 0 && retryable != nil && !retryable() {
			break
		}
		started := rt.now()
		res, err := do(rt.adapters[d.ID], d.Model)
		c := task.Call{Deployment: d.ID, Provider: d.Provider, Model: d.Model, Outcome: "success", At: started.UTC()}
		if err == nil {
			calls = append(calls, c)
			if rt.breakers != nil {
				rt.breakers.Succeeded(context.WithoutCancel(ctx), d.ID)
			}
			routed(&res, &task.Route{Deployment: d.ID, Provider: d.Provider, Model: d.Model, Calls: calls, Price: d.Price})
			return res, nil
		}
		last = err
		var wait *provider.WaitError
		if errors.As(err, &wait) {
			// Flow control, not a fault: no breaker counts it. A slot
			// reserved on d is d's to use; a refusal (429) or a full set
			// of concurrent calls moves on to the next deployment, as
			// before. Only a call made (the 429) goes on the record.
			if wait.Reason == "provider" {
				c.Outcome, c.StatusCode, c.Message = string(task.FailureProviderRateLimited), 429, wait.Error()
				calls = append(calls, c)
			}
			if wait.Reserved || ctx.Err() != nil {
				return zero, failure(err)
			}
			continue
		}
		var perr *provider.Error
		if !errors.As(err, &perr) {
			// Not the provider's answer (an expired attempt, or ours): its
			// text may be internal, so the record gets a plain word.
			c.Outcome, c.Message = "error", "the call did not complete; see the worker's log"
			if errors.Is(err, context.DeadlineExceeded) {
				c.Outcome, c.Message = "timeout", "the attempt ran past TASK_TIMEOUT"
				rt.failed(ctx, d)
			}
			calls = append(calls, c)
			return zero, failure(err)
		}
		c.Outcome, c.StatusCode, c.Message = string(perr.Kind.Code()), perr.StatusCode, perr.Message
		calls = append(calls, c)
		if !perr.Transient() && perr.Kind != provider.KindAuth {
			return zero, failure(err)
		}
		rt.failed(ctx, d)
		if ctx.Err() != nil {
			return zero, failure(err)
		}
	}
	return zero, failure(last)
}

// failed counts a failure against d's breaker, unless the attempt was
// cancelled (revoked, or the worker stopping): that says nothing of d. An
// attempt that ran out of time does count, so a deployment that hangs
// opens its breaker like one that answers 503.
func (rt *routes) failed(ctx context.Context, d Deployment) {
	if rt.breakers == nil || errors.Is(ctx.Err(), context.Canceled) {
		return
	}
	rt.breakers.Failed(context.WithoutCancel(ctx), d.ID)
}

// LLM is the router as a provider.LLM: TextRequest.Model names the model.
func (r *Router) LLM() provider.LLM { return routedLLM{r} }

// Vision is the router as a provider.Vision.
func (r *Router) Vision() provider.Vision { return routedVision{r} }

// Embedder is the router as a provider.Embedder.
func (r *Router) Embedder() provider.Embedder { return routedEmbedder{r} }

// TTS is the router as a provider.TTS.
func (r *Router) TTS() provider.TTS { return routedTTS{r} }

// STT is the router as a provider.STT.
func (r *Router) STT() provider.STT { return routedSTT{r} }

// Name is what a routed call's provider is called until one has served it.
const Name = "router"

var (
	_ provider.LLM          = routedLLM{}
	_ provider.TextStreamer = routedLLM{}
	_ provider.Vision       = routedVision{}
	_ provider.Embedder     = routedEmbedder{}
	_ provider.TTS          = routedTTS{}
	_ provider.STT          = routedSTT{}
)

type routedLLM struct{ r *Router }

func (routedLLM) Name() string { return Name }

func (l routedLLM) GenerateText(ctx context.Context, req provider.TextRequest) (provider.TextResponse, error) {
	return call(l.r, ctx, "generate_text", req.Model, nil, func(a any, model string) (provider.TextResponse, error) {
		req.Model = model
		return a.(provider.LLM).GenerateText(ctx, req)
	}, textRouted)
}

// CheckText refuses a request that any deployment of its model cannot
// serve: a fallback taking over must honour it too.
func (l routedLLM) CheckText(req provider.TextRequest) error {
	rt := l.r.routes.Load()
	m, err := rt.file.Lookup("generate_text", req.Model)
	if err != nil {
		return nil // the call itself says what is wrong
	}
	for _, d := range m.Deployments {
		if llm, ok := rt.adapters[d.ID].(provider.LLM); ok {
			r := req
			r.Model = d.Model
			if err := provider.CheckText(llm, r); err != nil {
				return err
			}
		}
	}
	return nil
}

func textRouted(r *provider.TextResponse, route *task.Route)     { r.Route = route }
func embedRouted(r *provider.EmbedResponse, route *task.Route)   { r.Route = route }
func audioRouted(r *provider.Audio, route *task.Route)           { r.Route = route }
func transcriptRouted(r *provider.Transcript, route *task.Route) { r.Route = route }

// StreamText streams from deployments that can; one that cannot gives its
// text as one piece. Once text has reached onText, a failure is final for
// the attempt: the client has seen the start of one answer.
func (l routedLLM) StreamText(ctx context.Context, req provider.TextRequest, onText func(string)) (provider.TextResponse, error) {
	began := false
	piece := func(s string) { began = true; onText(s) }
	return call(l.r, ctx, "generate_text", req.Model, func() bool { return !began }, func(a any, model string) (provider.TextResponse, error) {
		req.Model = model
		if s, ok := a.(provider.TextStreamer); ok {
			return s.StreamText(ctx, req, piece)
		}
		out, err := a.(provider.LLM).GenerateText(ctx, req)
		if err == nil {
			piece(out.Text)
		}
		return out, err
	}, textRouted)
}

type routedVision struct{ r *Router }

func (routedVision) Name() string { return Name }

func (v routedVision) DescribeImage(ctx context.Context, req provider.VisionRequest) (provider.TextResponse, error) {
	return call(v.r, ctx, "describe_image", req.Model, nil, func(a any, model string) (provider.TextResponse, error) {
		req.Model = model
		return a.(provider.Vision).DescribeImage(ctx, req)
	}, textRouted)
}

type routedEmbedder struct{ r *Router }

func (routedEmbedder) Name() string { return Name }

func (e routedEmbedder) Embed(ctx context.Context, req provider.EmbedRequest) (provider.EmbedResponse, error) {
	return call(e.r, ctx, "embed", req.Model, nil, func(a any, model string) (provider.EmbedResponse, error) {
		req.Model = model
		return a.(provider.Embedder).Embed(ctx, req)
	}, embedRouted)
}

type routedTTS struct{ r *Router }

func (routedTTS) Name() string { return Name }

func (t routedTTS) Synthesize(ctx context.Context, req provider.SpeechRequest) (provider.Audio, error) {
	return call(t.r, ctx, "text_to_speech", req.Model, nil, func(a any, model string) (provider.Audio, error) {
		req.Model = model
		return a.(provider.TTS).Synthesize(ctx, req)
	}, audioRouted)
}

type routedSTT struct{ r *Router }

func (routedSTT) Name() string { return Name }

// Transcribe moves to another deployment only when the audio can be read
// again from its start.
func (s routedSTT) Transcribe(ctx context.Context, req provider.TranscribeRequest) (provider.Transcript, error) {
	seeker, rewindable := req.Audio.(io.Seeker)
	tries := 0
	return call(s.r, ctx, "speech_to_text", req.Model, func() bool { return rewindable }, func(a any, model string) (provider.Transcript, error) {
		if tries++; tries > 1 {
			if _, err := seeker.Seek(0, io.SeekStart); err != nil {
				return provider.Transcript{}, &provider.Error{Provider: Name, Kind: provider.KindRejected, Message: "the audio cannot be read again: " + err.Error()}
			}
		}
		req.Model = model
		return a.(provider.STT).Transcribe(ctx, req)
	}, transcriptRouted)
}

// Models lists the file's models with their deployments' health, in file
// order; the first of each capability is its default.
func (r *Router) Models(ctx context.Context) []task.ModelInfo {
	rt := r.routes.Load()
	states := rt.states(ctx)
	now := rt.now()
	seen := map[string]bool{}
	out := make([]task.ModelInfo, 0, len(rt.file.Models))
	for _, m := range rt.file.Models {
		info := task.ModelInfo{Name: m.Name, Capability: task.Type(m.Capability), Default: !seen[m.Capability]}
		seen[m.Capability] = true
		for _, d := range m.Deployments {
			s := states[d.ID]
			breaker := "closed"
			if s.Open(now) {
				breaker = "open"
			}
			info.Deployments = append(info.Deployments, task.DeploymentInfo{ID: d.ID, Provider: d.Provider, Model: d.Model,
				Weight: *d.Weight, Breaker: breaker, Failures: s.Failures})
		}
		out = append(out, info)
	}
	return out
}
