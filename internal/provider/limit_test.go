package provider_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/task"
)

// endless answers each request with n bytes of 'a', never holding them.
func endless(n int64) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		chunk := []byte(strings.Repeat("a", 64<<10))
		for left := n; left > 0; { // each request its own count: they may overlap
			k := min(left, int64(len(chunk)))
			if _, err := w.Write(chunk[:k]); err != nil {
				return
			}
			left -= k
		}
	}
}

func TestAnswersAreReadThroughALimit(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(endless(100 << 20))
	t.Cleanup(srv.Close)
	client := &http.Client{Transport: provider.LimitResponses(http.DefaultTransport, 1<<20)}
	read := func(ctx context.Context) (int64, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		res, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer res.Body.Close()
		return io.Copy(io.Discard, res.Body)
	}
	n, err := read(context.Background())
	require.ErrorIs(t, err, provider.ErrResponseTooLarge)
	require.LessOrEqual(t, n, int64(1<<20+1), "reading stops at the limit")

	n, err = read(provider.WithResponseLimit(context.Background(), 4096))
	require.ErrorIs(t, err, provider.ErrResponseTooLarge)
	require.LessOrEqual(t, n, int64(4097), "a call's own limit wins")

	small := httptest.NewServer(endless(1000))
	t.Cleanup(small.Close)
	req, _ := http.NewRequest(http.MethodGet, small.URL, nil)
	res, err := client.Do(req)
	require.NoError(t, err)
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	require.NoError(t, err, "an answer within the limit reads whole")
	require.Len(t, b, 1000)

	declared := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "5000000")
		_, _ = w.Write([]byte("x"))
	}))
	t.Cleanup(declared.Close)
	req, _ = http.NewRequest(http.MethodGet, declared.URL, nil)
	_, err = client.Do(req)
	require.ErrorIs(t, err, provider.ErrResponseTooLarge, "a declared length past the limit fails before reading")

	perr := provider.ErrorFromTransport(context.Background(), "p", err)
	var pe *provider.Error
	require.True(t, errors.As(perr, &pe))
	require.Equal(t, provider.KindTooLarge, pe.Kind)
	require.False(t, pe.Transient(), "the same request would get the same answer")
	require.Equal(t, task.FailureResponseTooLarge, pe.Kind.Code())
	require.Equal(t, provider.KindTooLarge, provider.Unreadable("p", err).Kind)
	require.Equal(t, provider.KindBadResponse, provider.Unreadable("p", io.ErrUnexpectedEOF).Kind)
}

func TestTextLimitsFollowMaxTokens(t *testing.T) {
	t.Parallel()
	require.Less(t, provider.TextResponseLimit(10, false), int64(2<<20))
	require.Greater(t, provider.TextResponseLimit(16384, true), provider.TextResponseLimit(16384, false), "streams carry per-chunk overhead")
	require.Equal(t, provider.TextResponseLimit(131072, false), provider.TextResponseLimit(0, false), "no max_tokens: the largest there is")
}

// Finding 12: what a provider says in Retry-After is bounded.
func TestRetryAfterIsBounded(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for value, want := range map[string]time.Duration{
		"":                              0,
		"3":                             3 * time.Second,
		"0.5":                           500 * time.Millisecond,
		"-4":                            0,
		"NaN":                           0,
		"999999999":                     provider.MaxRetryAfter,
		"1e30":                          provider.MaxRetryAfter, // overflowed to a negative duration
		"Inf":                           provider.MaxRetryAfter,
		"soon":                          0,
		"Fri, 01 Jan 2100 00:00:00 GMT": provider.MaxRetryAfter,
		"Thu, 01 Jan 2026 00:00:30 GMT": 30 * time.Second,
	} {
		got := provider.ParseRetryAfter(value, now)
		require.Equal(t, want, got, "%q", value)
		require.GreaterOrEqual(t, got, time.Duration(0), "%q", value)
	}
}
