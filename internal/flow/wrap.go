package flow

import (
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/task"
)

// Transport learns from every answer that passes through it what the
// provider says of its limits (x-ratelimit-* headers, a 429's Retry-After).
func (d *Deployment) Transport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return learning{d: d, next: next}
}

type learning struct {
	d    *Deployment
	next http.RoundTripper
}

func (t learning) RoundTrip(req *http.Request) (*http.Response, error) {
	sent := t.d.c.cfg.Now()
	t.d.traffic.sent(sent)
	res, err := t.next.RoundTrip(req)
	if err == nil {
		if res.StatusCode == http.StatusTooManyRequests {
			t.d.traffic.refused(sent)
		}
		if rl := provider.ParseRateLimit(res.Header, t.d.c.cfg.Now()); res.StatusCode == http.StatusTooManyRequests || rl.Said() {
			t.d.Learn(res.StatusCode, rl)
		}
	}
	return res, err
}

// Client is client with Transport in front of its transport.
func (d *Deployment) Client(client *http.Client) *http.Client {
	if client == nil {
		client = http.DefaultClient
	}
	c := *client
	c.Transport = d.Transport(client.Transport)
	return &c
}

// call runs one provider call within the deployment's budget: it waits for
// budget (or hands the wait back, see acquire), makes the call, settles the
// tokens it used, and turns the provider's 429 into a wait like any other.
// A synchronous call waits out a 429 in place when its deadline allows and
// again says the call may be repeated.
func call[R any](ctx context.Context, d *Deployment, tokens int64, do func() (R, error), used func(R) int64, again func() bool) (R, error) {
	var zero R
	for {
		l, err := d.acquire(ctx, d.charge(tokens))
		if err != nil {
			return zero, err
		}
		res, err := do()
		var n int64
		if err == nil && used != nil {
			n = used(res)
			d.learnShare(tokens, n)
		}
		d.settle(ctx, l, n)
		if err == nil {
			return res, nil
		}
		err = d.refusal(err)
		var wait *provider.WaitError
		if !errors.As(err, &wait) || (again != nil && !again()) {
			return zero, err
		}
		left := wait.Until.Sub(d.c.cfg.Now())
		if _, deferred := provider.DeferredWaits(ctx); deferred && left > d.c.cfg.SleepMax {
			return zero, err
		}
		if dl, ok := ctx.Deadline(); ok && wait.Until.After(dl) {
			return zero, err
		}
		if err := d.sleep(ctx, "provider", left); err != nil {
			return zero, err
		}
	}
}

func usedTokens(u provider.Usage) int64 {
	if u.TotalTokens > 0 {
		return u.TotalTokens
	}
	return u.PromptTokens + u.CompletionTokens
}

// LLM puts llm's calls under d's budget; it streams when llm can.
func LLM(d *Deployment, llm provider.LLM) provider.LLM {
	l := pacedLLM{d: d, llm: llm}
	if s, ok := llm.(provider.TextStreamer); ok {
		return pacedStreamer{pacedLLM: l, s: s}
	}
	return l
}

type pacedLLM struct {
	d   *Deployment
	llm provider.LLM
}

func (p pacedLLM) Name() string { return p.llm.Name() }

func (p pacedLLM) GenerateText(ctx context.Context, req provider.TextRequest) (provider.TextResponse, error) {
	return call(ctx, p.d, req.EstimatedTokens(),
		func() (provider.TextResponse, error) { return p.llm.GenerateText(ctx, req) },
		func(r provider.TextResponse) int64 { return usedTokens(r.Usage) }, nil)
}

// CheckText passes the wrapped LLM's answer through.
func (p pacedLLM) CheckText(req provider.TextRequest) error { return provider.CheckText(p.llm, req) }

// Ping passes through unpaced: it spends nothing.
func (p pacedLLM) Ping(ctx context.Context) error {
	if pinger, ok := p.llm.(provider.Pinger); ok {
		return pinger.Ping(ctx)
	}
	return nil
}

type pacedStreamer struct {
	pacedLLM
	s provider.TextStreamer
}

func (p pacedStreamer) StreamText(ctx context.Context, req provider.TextRequest, onText func(string)) (provider.TextResponse, error) {
	began := false
	return call(ctx, p.d, req.EstimatedTokens(),
		func() (provider.TextResponse, error) {
			return p.s.StreamText(ctx, req, func(s string) { began = true; onText(s) })
		},
		func(r provider.TextResponse) int64 { return usedTokens(r.Usage) }, func() bool { return !began })
}

// Vision puts v's calls under d's budget.
func Vision(d *Deployment, v provider.Vision) provider.Vision { return pacedVision{d: d, v: v} }

type pacedVision struct {
	d *Deployment
	v provider.Vision
}

func (p pacedVision) Name() string { return p.v.Name() }

func (p pacedVision) DescribeImage(ctx context.Context, req provider.VisionRequest) (provider.TextResponse, error) {
	return call(ctx, p.d, task.EstimatedTokens(len(req.Prompt), req.MaxTokens)+task.ImageTokens,
		func() (provider.TextResponse, error) { return p.v.DescribeImage(ctx, req) },
		func(r provider.TextResponse) int64 { return usedTokens(r.Usage) }, nil)
}

// Embedder puts e's calls under d's budget.
func Embedder(d *Deployment, e provider.Embedder) provider.Embedder { return pacedEmbedder{d: d, e: e} }

type pacedEmbedder struct {
	d *Deployment
	e provider.Embedder
}

func (p pacedEmbedder) Name() string { return p.e.Name() }

func (p pacedEmbedder) Embed(ctx context.Context, req provider.EmbedRequest) (provider.EmbedResponse, error) {
	return call(ctx, p.d, task.EstimatedInputTokens(req.Input),
		func() (provider.EmbedResponse, error) { return p.e.Embed(ctx, req) },
		func(r provider.EmbedResponse) int64 { return usedTokens(r.Usage) }, nil)
}

// TTS puts t's calls under d's requests and concurrency budget.
func TTS(d *Deployment, t provider.TTS) provider.TTS { return pacedTTS{d: d, t: t} }

type pacedTTS struct {
	d *Deployment
	t provider.TTS
}

func (p pacedTTS) Name() string { return p.t.Name() }

func (p pacedTTS) Synthesize(ctx context.Context, req provider.SpeechRequest) (provider.Audio, error) {
	return call(ctx, p.d, 0, func() (provider.Audio, error) { return p.t.Synthesize(ctx, req) }, nil, nil)
}

// STT puts s's calls under d's requests and concurrency budget. A 429 is
// waited out in place only when the audio can be read again.
func STT(d *Deployment, s provider.STT) provider.STT { return pacedSTT{d: d, s: s} }

type pacedSTT struct {
	d *Deployment
	s provider.STT
}

func (p pacedSTT) Name() string { return p.s.Name() }

func (p pacedSTT) Transcribe(ctx context.Context, req provider.TranscribeRequest) (provider.Transcript, error) {
	seeker, rewindable := req.Audio.(io.Seeker)
	return call(ctx, p.d, 0, func() (provider.Transcript, error) { return p.s.Transcribe(ctx, req) }, nil,
		func() bool { return rewindable && seeker != nil && seekStart(seeker) })
}

func seekStart(s io.Seeker) bool {
	_, err := s.Seek(0, io.SeekStart)
	return err == nil
}
