package e2e_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider/providertest"
	"github.com/siganteng/siganteng/internal/redistest"
)

// hangsFirst is a provider whose first call never answers, like a worker's
// machine dying mid-call, and whose later calls answer at once.
func hangsFirst() *providertest.OpenAIFake {
	return providertest.NewOpenAIFake(providertest.WithFailures(func(n int) *providertest.Reply {
		if n == 1 {
			return &providertest.Reply{Delay: 10 * time.Minute}
		}
		return nil
	}))
}

// killMidTask submits a task to an API, lets a worker process start it, and
// SIGKILLs that worker; a second worker then runs in this process.
func killMidTask(t *testing.T, env map[string]string) (base, id string, killed time.Time) {
	t.Helper()
	s := start(t, "api", env)
	victim, _ := child(t, "worker", env)
	rec, _ := submit(t, s.url, `{"prompt":"survive this"}`)
	require.Eventually(t, func() bool { return get(t, s.url, rec.TaskID).Status == "STARTED" }, 15*time.Second, 10*time.Millisecond)
	time.Sleep(100 * time.Millisecond) // the provider call is under way
	require.NoError(t, victim.Process.Signal(syscall.SIGKILL))
	_, _ = victim.Process.Wait()
	killed = time.Now()
	start(t, "worker", env)
	return s.url, rec.TaskID, killed
}

func TestWorkerKilledMidTaskRunsElsewhere(t *testing.T) {
	t.Parallel()
	fake := hangsFirst()
	t.Cleanup(fake.Close)
	env := openAIEnv(t, fake, redistest.URL(t))
	env["TASK_MAX_RETRY"] = "2"
	base, id, killed := killMidTask(t, env)

	final, seen := await(t, base, id, 150*time.Second)
	require.Equal(t, "SUCCESS", final.Status, "seen %v, error %+v", seen, final.Error)
	require.Equal(t, "echo: survive this", final.Result.Text)
	t.Logf("SIGKILL of the worker mid-task: SUCCESS on another worker %s after the kill (asynq's lease is 30s, its recoverer runs every minute); provider called %d times",
		time.Since(killed).Round(time.Second), len(fake.Calls()))
	require.Len(t, fake.Calls(), 2, "once by the killed worker, once by the one that finished it")
}

func TestWorkerKilledWithNoRetriesLeftEndsFailure(t *testing.T) {
	t.Parallel()
	fake := hangsFirst()
	t.Cleanup(fake.Close)
	env := openAIEnv(t, fake, redistest.URL(t))
	env["TASK_MAX_RETRY"] = "0"
	env["RECONCILE_INTERVAL"] = "1s"
	base, id, killed := killMidTask(t, env)

	final, seen := await(t, base, id, 180*time.Second)
	require.Equal(t, "FAILURE", final.Status, "seen %v", seen)
	require.Equal(t, "lost", final.Error.Code)
	require.Contains(t, final.Error.Message, "the worker running it stopped")
	t.Logf("SIGKILL with no retries left: FAILURE (%s) %s after the kill, instead of STARTED forever",
		final.Error.Code, time.Since(killed).Round(time.Second))
	require.Len(t, fake.Calls(), 1)
}
