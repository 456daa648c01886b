package cli_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

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
	s := start(t, "serve", openAIEnv(t, fake, "redis://"+sentinelAddr+"?master_name=siganteng"))
	require.Contains(t, s.logs.String(), "sentinel master siganteng")
	rec, _ := submit(t, s.url, `{"prompt":"through sentinel"}`)
	final, _ := await(t, s.url, rec.TaskID, 10*time.Second)
	require.Equal(t, "SUCCESS", final.Status)
	require.Equal(t, "echo: through sentinel", final.Result.Text)
}
