package worker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	b := Backoff{Base: time.Second, Max: 30 * time.Second}
	for retried, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second} {
		d := b.Delay("task-1", retried, 0)
		require.GreaterOrEqual(t, d, want/2, "retry %d", retried)
		require.LessOrEqual(t, d, want, "retry %d", retried)
		require.Equal(t, d, b.Delay("task-1", retried, 0), "the delay must be the same when asynq computes it")
	}
	spread := map[time.Duration]bool{}
	for _, id := range []string{"a", "b", "c", "d", "e", "f"} {
		spread[b.Delay(id, 3, 0)] = true
	}
	require.Greater(t, len(spread), 3, "tasks failing together must not retry together")
	require.Equal(t, 7*time.Second, b.Delay("x", 0, 7*time.Second), "Retry-After wins")
	require.Equal(t, 30*time.Second, b.Delay("x", 0, time.Hour), "up to Max")
}

func TestNextAttemptNeverEarly(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 10, 700_000_000, time.UTC)
	require.Equal(t, time.Date(2026, 1, 1, 0, 0, 11, 0, time.UTC), nextAttempt(now, 100*time.Millisecond))
	require.Equal(t, time.Date(2026, 1, 1, 0, 0, 12, 0, time.UTC), nextAttempt(now, 400*time.Millisecond))
	whole := time.Date(2026, 1, 1, 0, 0, 10, 0, time.UTC)
	require.Equal(t, whole.Add(2*time.Second), nextAttempt(whole, 2*time.Second))
}
