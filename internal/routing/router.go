package routing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/task"
)

// Build makes the adapter of one deployment for a capability: a value
// implementing that capability's provider interface.
type Build func(d Deployment, capability string) (any, error)

// Router serves the routing file's models.
type Router struct {
	file     *File
	adapters map[string]any // by deployment id
	breakers *Breakers
	now      func() time.Time
}

// New builds every deployment's adapter. breakers may be nil: no breaker.
func New(f *File, build Build, breakers *Breakers) (*Router, error) {
	r := &Router{file: f, adapters: map[string]any{}, breakers: breakers, now: time.Now}
	if breakers != nil {
		r.now = breakers.now // one clock for the breakers and the choice
	}
	for _, m := range f.Models {
		for _, d := range m.Deployments {
			a, err := build(d, m.Capability)
			if err != nil {
				return nil, fmt.Errorf("routing: %s: %w", d.ID, err)
			}
			r.adapters[d.ID] = a
		}
	}
	return r, nil
}

// File is the routing file the router serves.
func (r *Router) File() *File { return r.file }

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
	m, err := r.file.Lookup(capability, name)
	return m.Name, true, err
}

// Serves reports whether the file names a model of capability.
func (r *Router) Serves(capability string) bool {
	_, ok := r.file.Default(capability)
	return ok
}

// Breakers returns every deployment's breaker, as last read (at most a
// second old); none without breakers.
func (r *Router) Breakers(ctx context.Context) map[string]BreakerState {
	if r.breakers == nil {
		return nil
	}
	return r.breakers.States(ctx)
}

// order is the sequence in which m's deployments are tried: the weighted
// ones in a random order drawn by weight, then the fallbacks (weight 0) in
// file order, leaving out those whose breaker is open. When every one is
// open, it returns none and when the first reopens.
func (r *Router) order(ctx context.Context, m Model) ([]Deployment, time.Time) {
	var states map[string]BreakerState
	if r.breakers != nil {
		states = r.breakers.States(ctx)
	}
	now := r.now()
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
func call[R any](r *Router, ctx context.Context, capability, name string, retryable func() bool,
	do func(adapter any, model string) (R, error)) (R, error) {
	var zero R
	m, err := r.file.Lookup(capability, name)
	if err != nil {
		return zero, &provider.Error{Provider: Name, Kind: provider.KindRejected, Message: err.Error()}
	}
	order, reopens := r.order(ctx, m)
	if len(order) == 0 {
		return zero, &provider.Error{Provider: Name, Kind: provider.KindUnavailable, RetryAfter: reopens.Sub(r.now()),
			Message: fmt.Sprintf("every deployment of model %s is cooling down after failures", m.Name)}
	}
	trail := trailFrom(ctx)
	var last error
	for i, d := range order {
		if i > 0 && retryable != nil && !retryable() {
			break
		}
		started := r.now()
		res, err := do(r.adapters[d.ID], d.Model)
		c := task.Call{Deployment: d.ID, Provider: d.Provider, Model: d.Model, Outcome: "success", At: started.UTC()}
		if err == nil {
			trail.add(c, &d)
			if r.breakers != nil {
				r.breakers.Succeeded(context.WithoutCancel(ctx), d.ID)
			}
			return res, nil
		}
		last = err
		var perr *provider.Error
		if !errors.As(err, &perr) {
			// Not the provider's answer (an expired attempt, or ours): its
			// text may be internal, so the record gets a plain word.
			c.Outcome, c.Message = "error", "the call did not complete; see the worker's log"
			if errors.Is(err, context.DeadlineExceeded) {
				c.Outcome, c.Message = "timeout", "the attempt ran past TASK_TIMEOUT"
				r.failed(ctx, d)
			}
			trail.add(c, nil)
			return zero, err
		}
		c.Outcome, c.StatusCode, c.Message = perr.Kind.Code(), perr.StatusCode, perr.Message
		trail.add(c, nil)
		if !perr.Transient() && perr.Kind != provider.KindAuth {
			return zero, err
		}
		r.failed(ctx, d)
		if ctx.Err() != nil {
			return zero, err
		}
	}
	return zero, last
}

// failed counts a failure against d's breaker, unless the attempt was
// cancelled (revoked, or the worker stopping): that says nothing of d. An
// attempt that ran out of time does count, so a deployment that hangs
// opens its breaker like one that answers 503.
func (r *Router) failed(ctx context.Context, d Deployment) {
	if r.breakers == nil || errors.Is(ctx.Err(), context.Canceled) {
		return
	}
	r.breakers.Failed(context.WithoutCancel(ctx), d.ID)
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
	})
}

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
	})
}

type routedVision struct{ r *Router }

func (routedVision) Name() string { return Name }

func (v routedVision) DescribeImage(ctx context.Context, req provider.VisionRequest) (provider.TextResponse, error) {
	return call(v.r, ctx, "describe_image", req.Model, nil, func(a any, model string) (provider.TextResponse, error) {
		req.Model = model
		return a.(provider.Vision).DescribeImage(ctx, req)
	})
}

type routedEmbedder struct{ r *Router }

func (routedEmbedder) Name() string { return Name }

func (e routedEmbedder) Embed(ctx context.Context, req provider.EmbedRequest) (provider.EmbedResponse, error) {
	return call(e.r, ctx, "embed", req.Model, nil, func(a any, model string) (provider.EmbedResponse, error) {
		req.Model = model
		return a.(provider.Embedder).Embed(ctx, req)
	})
}

type routedTTS struct{ r *Router }

func (routedTTS) Name() string { return Name }

func (t routedTTS) Synthesize(ctx context.Context, req provider.SpeechRequest) (provider.Audio, error) {
	return call(t.r, ctx, "text_to_speech", req.Model, nil, func(a any, model string) (provider.Audio, error) {
		req.Model = model
		return a.(provider.TTS).Synthesize(ctx, req)
	})
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
	})
}

// Cost prices what a call consumed at deployment d's prices; false when d
// has no prices.
func (d Deployment) Cost(m task.Metered) (float64, bool) {
	p := d.Price
	if !p.Set() {
		return 0, false
	}
	return float64(m.InputTokens)*p.InputPerMillionTokens/1e6 +
		float64(m.OutputTokens)*p.OutputPerMillionTokens/1e6 +
		float64(m.Characters)*p.PerMillionCharacters/1e6 +
		m.AudioSeconds/60*p.PerAudioMinute, true
}

// Models lists the file's models with their deployments' health, in file
// order; the first of each capability is its default.
func (r *Router) Models(ctx context.Context) []task.ModelInfo {
	states := r.Breakers(ctx)
	now := r.now()
	seen := map[string]bool{}
	out := make([]task.ModelInfo, 0, len(r.file.Models))
	for _, m := range r.file.Models {
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
