package e2e_test

import (
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/config"
)

// The deployment files are not run here (no Docker engine, no systemd), so
// this checks what can be checked: every variable they set exists, every
// command they run exists, every file they mount is in the repository, and
// the nginx body limit is in step with the upload limit.
func TestDeploymentFilesAgreeWithTheProgram(t *testing.T) {
	t.Parallel()
	read := func(path string) string {
		b, err := os.ReadFile("../../" + path)
		require.NoError(t, err)
		return string(b)
	}
	known := map[string]bool{}
	for _, v := range config.Vars {
		known[v.Name] = true
	}
	commands := []string{"serve", "api", "worker", "keys"}
	checkVar := func(file, name string) {
		require.True(t, known[name], "%s sets %s, which SIGANTENG does not read", file, name)
	}

	for _, unit := range []string{"deploy/systemd/siganteng-api@.service", "deploy/systemd/siganteng-worker.service"} {
		text := read(unit)
		vars := regexp.MustCompile(`(?m)^Environment=([A-Z_0-9]+)=`).FindAllStringSubmatch(text, -1)
		require.NotEmpty(t, vars, unit)
		for _, m := range vars {
			checkVar(unit, m[1])
		}
		exec := regexp.MustCompile(`(?m)^ExecStart=/usr/local/bin/siganteng (\w+)$`).FindStringSubmatch(text)
		require.NotNil(t, exec, unit)
		require.Contains(t, commands, exec[1], unit)
		require.Contains(t, text, "KillSignal=SIGTERM", "%s: graceful stop", unit)
	}

	docker := read("Dockerfile")
	env := regexp.MustCompile(`(?s)ENV (.*?)\n\S`).FindStringSubmatch(docker)
	require.NotNil(t, env)
	for _, m := range regexp.MustCompile(`([A-Z_0-9]+)=`).FindAllStringSubmatch(env[1], -1) {
		checkVar("Dockerfile", m[1])
	}
	require.Contains(t, docker, "CGO_ENABLED=0", "a static binary")
	require.Contains(t, docker, "USER nonroot", "not root")

	compose := read("compose.yaml")
	inEnv := false
	for _, line := range strings.Split(compose, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "environment:"):
			inEnv = true
			continue
		case !strings.HasPrefix(line, "      ") && trimmed != "":
			inEnv = false
		}
		if m := regexp.MustCompile(`^\s+([A-Z][A-Z_0-9]+):`).FindStringSubmatch(line); inEnv && m != nil {
			checkVar("compose.yaml", m[1])
		}
		if m := regexp.MustCompile(`command: \["(\w+)"\]`).FindStringSubmatch(line); m != nil && !strings.Contains(line, "redis-server") {
			require.Contains(t, commands, m[1], "compose.yaml: %s", line)
		}
		if m := regexp.MustCompile(`- \./(deploy/[^:]+\.conf):`).FindStringSubmatch(line); m != nil {
			read(m[1]) // the file it mounts exists
		}
	}
	require.Contains(t, compose, "--appendonly", "Redis keeps its data")

	// nginx must let the largest upload through to the API, which then
	// answers 413 itself for anything over MAX_UPLOAD_BYTES.
	limit := regexp.MustCompile(`client_max_body_size (\d+)m;`).FindStringSubmatch(read("deploy/nginx/siganteng.conf"))
	require.NotNil(t, limit)
	mb, _ := strconv.Atoi(limit[1])
	require.Greater(t, int64(mb)<<20, int64(config.DefaultMaxUploadBytes), "client_max_body_size below MAX_UPLOAD_BYTES")

	// The systemd API instances are the ones nginx's upstream names.
	for _, port := range regexp.MustCompile(`server 127\.0\.0\.1:(\d+);`).FindAllStringSubmatch(read("deploy/nginx/upstream.conf"), -1) {
		require.True(t, slices.ContainsFunc([]string{read("deploy/systemd/siganteng-api@.service")}, func(s string) bool {
			return strings.Contains(s, "siganteng-api@"+port[1])
		}), "upstream port %s has no systemd instance in the unit's instructions", port[1])
	}
}
