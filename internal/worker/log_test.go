package worker

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTaskLoggerWritesItsAttributesOnlyWithALine(t *testing.T) {
	var buf bytes.Buffer
	base := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	log := newTaskLogger(base, "task_id", "t1", "attempt", 2)
	log.Info("below the level")
	require.Empty(t, buf.String())
	log.With("provider", "openai").Warn("attempt failed", "err", "503")
	require.Contains(t, buf.String(), `level=WARN msg="attempt failed" task_id=t1 attempt=2 provider=openai err=503`)
	buf.Reset()
	log.Error("other line")
	require.Contains(t, buf.String(), "task_id=t1 attempt=2")
	require.NotContains(t, buf.String(), "provider", "With does not change the logger it came from")
}
