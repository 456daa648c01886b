package e2e_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider/providertest"
	"github.com/siganteng/siganteng/internal/redistest"
)

// Scheduled tasks wait PENDING with scheduled_at, start at that time and not
// before, and survive a restart of the only server while they wait.
func TestScheduledTasksStartOnTimeAndSurviveARestart(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	env := openAIEnv(t, fake, redistest.URL(t))
	first := start(t, "serve", env)

	runAt := time.Now().Add(2 * time.Second).UTC()
	var ids []string
	for i := range 10 {
		rec, _ := submit(t, first.url, fmt.Sprintf(`{"prompt":"later %d","run_at":%q}`, i, runAt.Format(time.RFC3339Nano)))
		require.Equal(t, "PENDING", rec.Status)
		ids = append(ids, rec.TaskID)
	}
	delayed, _ := submit(t, first.url, `{"prompt":"after a restart","delay":3}`)
	var late []time.Duration
	for _, id := range ids {
		final, seen := await(t, first.url, id, 20*time.Second)
		require.Equal(t, "SUCCESS", final.Status, "seen %v", seen)
		require.NotNil(t, final.ScheduledAt)
		require.NotNil(t, final.StartedAt)
		scheduled, started := *final.ScheduledAt, *final.StartedAt
		require.WithinDuration(t, runAt, scheduled, time.Millisecond, "scheduled_at is the time asked")
		require.False(t, started.Before(scheduled), "started %s, before its scheduled %s", started, scheduled)
		late = append(late, started.Sub(scheduled))
	}
	slices.Sort(late)
	t.Logf("scheduled tasks started late by p50 %s, max %s (RETRY_POLL_INTERVAL 100ms here)", late[len(late)/2], late[len(late)-1])
	require.Less(t, late[len(late)-1], 2*time.Second)

	// The only server goes away while a task waits; another finds it.
	require.Equal(t, "PENDING", get(t, first.url, delayed.TaskID).Status)
	first.stop()
	first.done <- <-first.done // stopped; the cleanup reads it again
	second := start(t, "serve", env)
	final, seen := await(t, second.url, delayed.TaskID, 20*time.Second)
	require.Equal(t, "SUCCESS", final.Status, "seen %v", seen)
}

// A scheduled task cancelled while it waits never runs.
func TestAScheduledTaskCancelledWhileItWaitsNeverRuns(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	s := start(t, "serve", openAIEnv(t, fake, redistest.URL(t)))
	rec, _ := submit(t, s.url, `{"prompt":"never","delay":1}`)
	res, raw := call(t, "POST", s.url+"/background/tasks/"+rec.TaskID+"/cancel", "", "")
	require.Equal(t, 200, res.StatusCode, "%s", raw)
	require.Equal(t, "REVOKED", get(t, s.url, rec.TaskID).Status)
	// The worker takes it at its time and sees it has ended: the positive
	// sign that "it did not run" means something.
	require.Eventually(t, func() bool { return strings.Contains(s.logs.String(), "task already finished; not running it again") },
		15*time.Second, 20*time.Millisecond)
	require.Empty(t, fake.Calls(), "the provider was never called")
}
