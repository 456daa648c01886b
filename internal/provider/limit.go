package provider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// ErrResponseTooLarge is the read error of a provider answer past its
// limit. An OpenAI-compatible server is anybody's code: an answer of
// gigabytes must fail the call, not fill the worker's memory, Redis or disk.
var ErrResponseTooLarge = errors.New("the provider's answer is larger than its limit")

type responseLimitKey struct{}

// WithResponseLimit bounds the answers of the provider calls made with ctx
// to n bytes (a text call sizes it from max_tokens); n <= 0 leaves the
// transport's default.
func WithResponseLimit(ctx context.Context, n int64) context.Context {
	if n <= 0 {
		return ctx
	}
	return context.WithValue(ctx, responseLimitKey{}, n)
}

// TextResponseLimit is the answer size allowed for a completion of at most
// maxTokens tokens: generous for JSON escapes and a streamed answer's
// per-chunk overhead, far below anything that hurts.
func TextResponseLimit(maxTokens int, stream bool) int64 {
	perToken := int64(64)
	if stream {
		perToken = 1024 // each token may come as its own SSE chunk
	}
	if maxTokens <= 0 {
		maxTokens = 131072 // no cap asked for: the largest max_tokens there is
	}
	return 1<<20 + int64(maxTokens)*perToken
}

// LimitResponses wraps base so that every answer's body fails with
// ErrResponseTooLarge once it passes the request's limit (WithResponseLimit)
// or else defaultLimit; a declared Content-Length past it fails at once.
func LimitResponses(base http.RoundTripper, defaultLimit int64) http.RoundTripper {
	return limitTransport{base: base, limit: defaultLimit}
}

type limitTransport struct {
	base  http.RoundTripper
	limit int64
}

func (t limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := t.base.RoundTrip(req)
	if err != nil {
		return res, err
	}
	limit := t.limit
	if n, ok := req.Context().Value(responseLimitKey{}).(int64); ok {
		limit = n
	}
	if limit <= 0 {
		return res, nil
	}
	if res.ContentLength > limit {
		_ = res.Body.Close()
		return nil, fmt.Errorf("%w (%d bytes declared, limit %d)", ErrResponseTooLarge, res.ContentLength, limit)
	}
	res.Body = &limitedBody{ReadCloser: res.Body, left: limit}
	return res, nil
}

// limitedBody reads at most left bytes, then fails.
type limitedBody struct {
	io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, ErrResponseTooLarge
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n, ErrResponseTooLarge
	}
	return n, err
}

// TooLarge is the error of a call whose answer passed its limit: permanent,
// since the same request is likely to get the same answer.
func TooLarge(name string) *Error {
	return &Error{Provider: name, Kind: KindTooLarge, Message: "the answer was larger than SIGANTENG accepts for this call; nothing of it was kept"}
}

// Unreadable is the error of an answer that could not be read: too large,
// or a bad response (which may be a proxy's hiccup, so worth a retry).
func Unreadable(name string, err error) *Error {
	if errors.Is(err, ErrResponseTooLarge) {
		return TooLarge(name)
	}
	return &Error{Provider: name, Kind: KindBadResponse, Message: "unreadable answer: " + truncate(err.Error())}
}
