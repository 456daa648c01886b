package worker

import (
	"context"
	"log/slog"
	"slices"
	"sync"
)

// taskLogger writes a task's lines with its attributes (task id, type,
// attempt, ...), formatting them only when a line is written. slog's With
// formats them at once, which cost 3% of a busy worker's CPU for a logger
// that, below LOG_LEVEL, never wrote a line.
type taskLogger struct {
	base  *slog.Logger
	attrs []any

	once sync.Once
	l    *slog.Logger
}

func newTaskLogger(base *slog.Logger, attrs ...any) *taskLogger {
	return &taskLogger{base: base, attrs: attrs}
}

// With returns a logger with more attributes.
func (t *taskLogger) With(attrs ...any) *taskLogger {
	return newTaskLogger(t.base, append(slices.Clip(t.attrs), attrs...)...)
}

func (t *taskLogger) log(level slog.Level, msg string, args []any) {
	if !t.base.Enabled(context.Background(), level) {
		return
	}
	t.once.Do(func() { t.l = t.base.With(t.attrs...) })
	t.l.Log(context.Background(), level, msg, args...)
}

func (t *taskLogger) Debug(msg string, args ...any) { t.log(slog.LevelDebug, msg, args) }
func (t *taskLogger) Info(msg string, args ...any)  { t.log(slog.LevelInfo, msg, args) }
func (t *taskLogger) Warn(msg string, args ...any)  { t.log(slog.LevelWarn, msg, args) }
func (t *taskLogger) Error(msg string, args ...any) { t.log(slog.LevelError, msg, args) }
