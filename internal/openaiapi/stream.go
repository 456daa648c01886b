package openaiapi

import (
	"encoding/json"
	"net/http"
	"time"
)

// sse writes server-sent events, starting the answer with the first one so
// that an error before it can still be an ordinary error answer.
type sse struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool
}

// newSSE lifts the server's write deadline: a stream lasts as long as its
// task, and its keepalives show that the client is still there.
func newSSE(w http.ResponseWriter) *sse {
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	return &sse{w: w, rc: rc}
}

func (s *sse) start() {
	if s.started {
		return
	}
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: pass each event on at once
	s.w.WriteHeader(http.StatusOK)
}

// data sends one event: its name line when event is set, then v as JSON.
func (s *sse) data(event string, v any) error {
	s.start()
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	buf := make([]byte, 0, len(b)+len(event)+16)
	if event != "" {
		buf = append(append(append(buf, "event: "...), event...), '\n')
	}
	buf = append(append(append(buf, "data: "...), b...), "\n\n"...)
	if _, err := s.w.Write(buf); err != nil {
		return err
	}
	return s.rc.Flush()
}

// raw sends a line as it is ("data: [DONE]", a comment).
func (s *sse) raw(line string) error {
	s.start()
	if _, err := s.w.Write([]byte(line + "\n\n")); err != nil {
		return err
	}
	return s.rc.Flush()
}
