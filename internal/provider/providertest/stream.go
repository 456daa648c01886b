package providertest

import (
	"net/http"
	"strings"
	"time"
)

// SetStreamChunkDelay spaces the chunks of a streamed answer, so that a test
// can see text arrive while the answer is still being produced.
func (r *recorder) SetStreamChunkDelay(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.chunkDelay = d
}

func (r *recorder) streamChunkDelay() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.chunkDelay
}

// words splits text into the pieces a fake streams: each word with the
// space after it.
func words(text string) []string {
	if text == "" {
		return nil
	}
	return strings.SplitAfter(text, " ")
}

// streamLines writes a streamed answer: lines, each flushed on its own and
// spaced by delay, after reply's own Delay. A reply that is not a success
// (or hangs up) is written as it is, as providers answer errors before any
// stream begins.
func streamLines(w http.ResponseWriter, req *http.Request, contentType string, delay time.Duration, lines [][]byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	for i, line := range lines {
		if i > 0 && delay > 0 {
			select {
			case <-time.After(delay):
			case <-req.Context().Done():
				return
			}
		}
		if _, err := w.Write(line); err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
}

// waitReply honours a reply's Delay; false when the request ended first.
func waitReply(req *http.Request, reply Reply) bool {
	if reply.Delay <= 0 {
		return true
	}
	select {
	case <-time.After(reply.Delay):
		return true
	case <-req.Context().Done():
		return false
	}
}

func isSuccess(reply Reply) bool {
	return !reply.Hangup && (reply.Status == 0 || reply.Status == http.StatusOK)
}
