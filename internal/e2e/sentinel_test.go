package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider/providertest"
	"github.com/siganteng/siganteng/internal/redistest"
)

// TestThroughRedisSentinel runs the API and a worker on a master found
// through a real Redis Sentinel.
func TestThroughRedisSentinel(t *testing.T) {
	t.Parallel()
	if redistest.Binary() == "" {
		t.Skip("redis-server is not installed")
	}
	master := redistest.StartServer(t)
	dir := t.TempDir()
	sentinelAddr := freeAddr(t)
	_, port, _ := net.SplitHostPort(sentinelAddr)
	mhost, mport, _ := net.SplitHostPort(master.Addr)
	conf := filepath.Join(dir, "sentinel.conf")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf(
		"port %s\nbind 127.0.0.1\ndir %s\nsentinel monitor siganteng %s %s 1\n", port, dir, mhost, mport)), 0o600))
	cmd := exec.Command(redistest.Binary(), conf, "--sentinel")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", sentinelAddr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)

	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	env := openAIEnv(t, fake, "redis://"+sentinelAddr+"?master_name=siganteng")
	env["AUTH_DISABLED"] = "true" // no key: with a real Redis the API is open only on purpose
	s := start(t, "serve", env)
	require.Contains(t, s.logs.String(), "sentinel master siganteng")
	rec, _ := submit(t, s.url, `{"prompt":"through sentinel"}`)
	final, _ := await(t, s.url, rec.TaskID, 10*time.Second)
	require.Equal(t, "SUCCESS", final.Status)
	require.Equal(t, "echo: through sentinel", final.Result.Text)
}

// TestThroughRedisCluster runs the API and a worker on a real three-node
// Redis Cluster: tasks end, events stream, listing works, and API keys
// (written in a transaction) work, so no script or transaction crosses slots.
func TestThroughRedisCluster(t *testing.T) {
	t.Parallel()
	nodes := redistest.StartCluster(t, 3)
	redisURL := "redis://" + nodes[0] + "?addr=" + nodes[1] + "&addr=" + nodes[2] + "&cluster=true"
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	env := openAIEnv(t, fake, redisURL)
	env["AUTH_DISABLED"] = "true" // no key: with a real Redis the API is open only on purpose
	s := start(t, "serve", env)
	require.Contains(t, s.logs.String(), "connected to Redis")
	require.Contains(t, s.logs.String(), "cluster "+nodes[0])

	const n = 20
	ids := make([]string, n)
	for i := range ids {
		rec, _ := submit(t, s.url, fmt.Sprintf(`{"prompt":"cluster %d"}`, i))
		ids[i] = rec.TaskID
	}
	for i, id := range ids {
		final, _ := await(t, s.url, id, 10*time.Second)
		require.Equal(t, "SUCCESS", final.Status)
		require.Equal(t, fmt.Sprintf("echo: cluster %d", i), final.Result.Text)
	}
	events := follow(t, context.Background(), s.url, ids[0], "")
	require.Equal(t, "status", events[0].Kind)
	require.Contains(t, string(events[len(events)-1].Data), `"SUCCESS"`)
	var page struct {
		Tasks []struct {
			TaskID string `json:"task_id"`
		} `json:"tasks"`
	}
	getJSON(t, s.url+"/background/tasks?limit=100", &page)
	listed := make([]string, len(page.Tasks))
	for i, task := range page.Tasks {
		listed[i] = task.TaskID
	}
	require.ElementsMatch(t, ids, listed)

	// The cluster is really used: asynq's queues hash by queue name, so
	// their keys land on more than the one node that holds SIGANTENG's
	// own keys (which share the hash tag {siganteng}).
	holding := 0
	for _, addr := range nodes {
		size, err := redis.NewClient(&redis.Options{Addr: addr}).DBSize(context.Background()).Result()
		require.NoError(t, err)
		if size > 0 {
			holding++
		}
	}
	require.GreaterOrEqual(t, holding, 2, "keys on %d of %d nodes", holding, len(nodes))

	// Keys through the cluster: created in a transaction, read by an API
	// that requires them.
	key := createKey(t, redisURL, "--name", "cluster")
	delete(env, "AUTH_DISABLED")
	keyed := start(t, "api", env)
	res, _ := call(t, http.MethodGet, keyed.url+"/background/tasks/"+ids[0], "", "")
	require.Equal(t, http.StatusUnauthorized, res.StatusCode)
	res, raw := call(t, http.MethodPost, keyed.url+"/background/generate_text", key, `{"prompt":"with a key"}`)
	require.Equal(t, http.StatusAccepted, res.StatusCode, "%s", raw)
	var rec record
	require.NoError(t, json.Unmarshal(raw, &rec))
	final, _ := await(t, keyed.url, rec.TaskID, 10*time.Second, key)
	require.Equal(t, "SUCCESS", final.Status)
}
