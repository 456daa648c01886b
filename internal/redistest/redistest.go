// Package redistest gives tests a real Redis: a redis-server started once per
// test binary on a free port, with a database of its own for each test. Only
// where no redis-server binary exists does it fall back to the embedded
// miniredis, and it says so.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// databases is how many tests one server can isolate from each other.
const databases = 1024

var (
	once    sync.Once
	addr    string
	bin     string
	started error
	nextDB  atomic.Int32
)

// URL returns a redis:// URL to an empty database that belongs to t alone.
func URL(t testing.TB) string {
	t.Helper()
	once.Do(func() { addr, started = startServer() })
	if started != nil {
		t.Fatalf("redistest: %v", started)
	}
	if addr == "" {
		t.Log("redistest: no redis-server binary found; using the embedded miniredis")
		return "redis://" + miniredis.RunT(t).Addr()
	}
	db := nextDB.Add(1)
	if db >= databases {
		t.Fatalf("redistest: more than %d tests in one binary; raise databases", databases)
	}
	url := fmt.Sprintf("redis://%s/%d", addr, db)
	t.Cleanup(func() {
		c := Client(t, url)
		_ = c.FlushDB(context.Background()).Err()
	})
	return url
}

// Client connects to url and closes the connection when t ends.
func Client(t testing.TB, url string) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// HideServerEnv, set to 1, makes the tests act as on a machine without
// redis-server: every test then runs on the embedded miniredis, or skips
// when it needs a real server. CI runs the suite once so, to keep the
// embedded path, the README's one-command start, honest.
const HideServerEnv = "SIGANTENG_TEST_NO_REDIS_SERVER"

// Binary returns the path of redis-server, or "" where there is none.
func Binary() string {
	if os.Getenv(HideServerEnv) == "1" {
		return ""
	}
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p
	}
	return ""
}

// Server is a redis-server process a test owns, for tests that stop and
// restart Redis.
type Server struct {
	Addr string
	cmd  *exec.Cmd
	args []string
}

// StartServer starts a private redis-server on a free port with extra
// arguments (for example "--appendonly", "yes"); it is killed when t ends.
// The test is skipped where no binary exists.
func StartServer(t testing.TB, extra ...string) *Server {
	t.Helper()
	if Binary() == "" {
		t.Skip("redistest: no redis-server binary on PATH")
	}
	s := &Server{args: extra}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Kill)
	return s
}

// Start starts (or restarts) the server on its address.
func (s *Server) Start() error {
	_, port, _ := net.SplitHostPort(s.Addr)
	cmd, err := spawn(port, s.args...)
	if err != nil {
		return err
	}
	s.cmd = cmd
	return nil
}

// Kill stops the server at once, as a crash would.
func (s *Server) Kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

func startServer() (string, error) {
	bin = Binary()
	if bin == "" {
		return "", nil
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	if _, err := spawn(fmt.Sprint(port), "--databases", fmt.Sprint(databases)); err != nil {
		return "", err
	}
	return fmt.Sprintf("127.0.0.1:%d", port), nil
}

// spawn starts redis-server in the foreground, keeping nothing on disk, and
// waits until it accepts connections.
func spawn(port string, extra ...string) (*exec.Cmd, error) {
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return nil, err
	}
	args := append([]string{
		"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--daemonize", "no", "--loglevel", "warning",
	}, extra...)
	cmd := exec.Command(Binary(), args...)
	setDeathSignal(cmd)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	go func() { // drain, so the server never blocks on a full pipe
		s := bufio.NewScanner(out)
		for s.Scan() {
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + port, MaxRetries: -1})
		err := c.Ping(context.Background()).Err()
		_ = c.Close()
		if err == nil {
			return cmd, nil
		}
		if strings.Contains(err.Error(), "LOADING") {
			continue
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	return nil, fmt.Errorf("redis-server on port %s did not answer within 10s", port)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StartCluster starts a Redis Cluster of n masters (no replicas) on free
// ports, with every hash slot assigned, and returns the nodes' addresses.
// The test is skipped where no redis-server or redis-cli binary exists.
func StartCluster(t testing.TB, n int) []string {
	t.Helper()
	cliBin, _ := exec.LookPath("redis-cli")
	if Binary() == "" || cliBin == "" {
		t.Skip("redistest: no redis-server or redis-cli binary on PATH")
	}
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = StartServer(t, "--cluster-enabled", "yes", "--cluster-node-timeout", "5000").Addr
	}
	args := append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cliBin, args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	// Every node must agree before clients are pointed at it.
	deadline := time.Now().Add(20 * time.Second)
	for _, addr := range addrs {
		c := redis.NewClient(&redis.Options{Addr: addr})
		for {
			info, err := c.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redistest: cluster node %s not ready: %v %s", addr, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = c.Close()
	}
	return addrs
}
