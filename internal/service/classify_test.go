package service

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/task"
)

// One classification for both fronts: every kind of provider failure has
// one word on a record and one rendering for a synchronous client.
func TestEveryProviderFailureIsClassifiedOnceForBothFronts(t *testing.T) {
	t.Parallel()
	s := New(Deps{}, Config{RetryMaxDelay: 10 * time.Second})
	for k := provider.KindUnavailable; k <= provider.KindTooLarge; k++ {
		perr := &provider.Error{Provider: "p", Kind: k, Message: "m", RetryAfter: time.Hour}
		v := Classify(perr, "p")
		require.Equal(t, k.Code(), v.Failure.Code, k.String())
		require.Equal(t, perr.Transient(), v.Transient, k.String())
		code, ok := syncCodes[v.Failure.Code]
		require.True(t, ok, "%s (%s) has a synchronous rendering", k, v.Failure.Code)
		e := s.syncError(t.Context(), perr).(*task.Error)
		require.Equal(t, code, e.Code, k.String())
		require.Equal(t, v.Failure.Message, e.Message, "the same words on both fronts")
		if code == task.EUNAVAILABLE {
			require.Equal(t, 10*time.Second, e.RetryAfter, "bounded by RETRY_MAX_DELAY")
		}
	}
}
