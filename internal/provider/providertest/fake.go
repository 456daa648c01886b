// Package providertest holds fake provider servers that speak each
// provider's documented wire format, and a conformance suite that every
// adapter passes against its fake.
package providertest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// Message is one chat message as a fake received it.
type Message struct {
	Role    string
	Content string
	// ToolCalls are an assistant message's calls, by function name; a
	// tool message's answer is in Content.
	ToolCalls []string
}

// ChatCall is a chat request as a fake received it, in a shape common to all
// wire formats so that one suite can check every adapter.
type ChatCall struct {
	Method        string
	Path          string
	Authorization string
	Model         string
	Messages      []Message
	Images        [][]byte // images sent with the messages, decoded
	MaxTokens     *int
	Temperature   *float64
	Stream        bool     // the answer was asked for as a stream
	Tools         []string // the functions offered, by name
	Format        string   // "json_object", "json_schema" or ""
	Raw           []byte
}

// Reply is one scripted answer.
type Reply struct {
	Status int
	Header http.Header
	Body   []byte
	Delay  time.Duration // wait before answering, bounded by the request's context
	Hangup bool          // close the connection without an answer
}

// Fake is a fake provider server.
type Fake interface {
	// URL is the base URL to configure the adapter with.
	URL() string
	// Script queues answers for the next chat calls; once they are used up the
	// fake answers with a success that echoes the prompt.
	Script(replies ...Reply)
	// Calls returns the chat calls received so far.
	Calls() []ChatCall
	// Close stops the server; later calls are refused connections.
	Close()
	// TextReply is a success in this wire format.
	TextReply(text, model string, promptTokens, completionTokens int64) Reply
	// ErrorReply is an error in this wire format, with Retry-After when > 0.
	ErrorReply(status int, message string, retryAfter time.Duration) Reply
	// SetStreamChunkDelay spaces the pieces of streamed answers.
	SetStreamChunkDelay(d time.Duration)
}

// recorder is the state both fakes share: scripted replies and calls seen.
type recorder struct {
	srv *httptest.Server

	mu         sync.Mutex
	script     []Reply
	calls      []ChatCall
	embedCalls []EmbedCall
	sttCalls   []STTCall
	delay      time.Duration
	failure    func(n int) *Reply
	chunkDelay time.Duration
	// toolReply is a success in the fake's format that calls function
	// name with arguments args (a JSON object).
	toolReply func(name, args, model string) Reply
}

func (r *recorder) Close() { r.srv.Close() }

func (r *recorder) Script(replies ...Reply) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.script = append(r.script, replies...)
}

func (r *recorder) Calls() []ChatCall { return snapshot(r, &r.calls) }

// snapshot copies a list of calls under the recorder's lock.
func snapshot[T any](r *recorder, calls *[]T) []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]T(nil), *calls...)
}

// record stores call and returns the scripted reply for it, if any.
func (r *recorder) record(call ChatCall) (Reply, bool) {
	r.mu.Lock()
	r.calls = append(r.calls, call)
	n := len(r.calls)
	var reply Reply
	scripted := len(r.script) > 0
	if scripted {
		reply, r.script = r.script[0], r.script[1:]
	} else if r.failure != nil {
		if f := r.failure(n); f != nil {
			reply, scripted = *f, true
		}
	}
	if !scripted && r.delay > 0 {
		reply, scripted = Reply{Delay: r.delay}, false
	}
	r.mu.Unlock()
	return reply, scripted
}

// take records a call with add, under the lock, and pops the next scripted
// reply, if any.
func (r *recorder) take(add func()) (Reply, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	add()
	if len(r.script) == 0 {
		return Reply{}, false
	}
	reply := r.script[0]
	r.script = r.script[1:]
	return reply, true
}

// answer records call and returns its reply: the scripted or failing one if
// any, else a success in the fake's format (textReply) that echoes the last
// user message. Offered tools, the first is called with the prompt as
// {"q": prompt}; after a tool message the answer echoes the tool's answer;
// asked for JSON, the echo is a JSON object {"echo": prompt}.
func (r *recorder) answer(call ChatCall, textReply func(text, model string, promptTokens, completionTokens int64) Reply) Reply {
	reply, scripted := r.record(call)
	if scripted {
		return reply
	}
	prompt := lastUser(call.Messages)
	var echo Reply
	last := Message{}
	if n := len(call.Messages); n > 0 {
		last = call.Messages[n-1]
	}
	switch {
	case last.Role == "tool":
		echo = textReply("the tool said: "+last.Content, call.Model, int64(len(strings.Fields(prompt))), 4)
	case len(call.Tools) > 0 && r.toolReply != nil:
		echo = r.toolReply(call.Tools[0], string(mustJSON(map[string]string{"q": prompt})), call.Model)
	case call.Format != "":
		echo = textReply(string(mustJSON(map[string]string{"echo": prompt})), call.Model, int64(len(strings.Fields(prompt))), 3)
	default:
		echo = textReply("echo: "+prompt, call.Model, int64(len(strings.Fields(prompt))), 3)
	}
	echo.Delay = reply.Delay
	return echo
}

// write sends reply, honouring Delay and Hangup.
func write(w http.ResponseWriter, req *http.Request, reply Reply) {
	if reply.Delay > 0 {
		select {
		case <-time.After(reply.Delay):
		case <-req.Context().Done():
			return
		}
	}
	if reply.Hangup {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
	}
	for k, vs := range reply.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	status := reply.Status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = w.Write(reply.Body)
}

func readBody(req *http.Request) []byte {
	b, _ := io.ReadAll(io.LimitReader(req.Body, 64<<20))
	return b
}

func retryAfterHeader(d time.Duration) http.Header {
	h := http.Header{}
	if d > 0 {
		h.Set("Retry-After", formatSeconds(d))
	}
	return h
}

func formatSeconds(d time.Duration) string {
	b, _ := json.Marshal(int64((d + time.Second - 1) / time.Second))
	return string(b)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
