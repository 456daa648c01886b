package e2e_test

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// chromium finds Debian's Chromium, which .ci/run installs.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "/usr/bin/chromium"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed; .ci/run installs it")
	}
	t.Skip("chromium is not installed (apt-get install chromium)")
	return ""
}

// /docs renders in a real browser on a machine with no outside network: its
// Swagger UI comes from the binary, and the rendered page lists the API's
// operations.
func TestDocsRenderInAHeadlessBrowser(t *testing.T) {
	t.Parallel()
	bin := chromium(t)
	s := start(t, "serve", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--user-data-dir="+t.TempDir(),
		"--virtual-time-budget=15000", "--dump-dom", s.url+"/docs")
	out, err := cmd.Output()
	require.NoError(t, err, "chromium: %s", out)
	dom := string(out)
	for _, want := range []string{"Queue text generation", "/background/generate_text", "/background/tasks/{task_id}", "Read a task's status and result"} {
		require.Contains(t, dom, want, "the rendered page lists the operations")
	}
	require.Contains(t, dom, "SIGANTENG")
	require.NotContains(t, dom, "Failed to load API definition")
}
