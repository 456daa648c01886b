package cli

import (
	"bytes"
	"errors"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/auth"
	"github.com/siganteng/siganteng/internal/config"
)

func TestLogsCarryNoSecrets(t *testing.T) {
	key, _, err := auth.NewKey()
	require.NoError(t, err)
	for _, format := range []string{"text", "json"} {
		var out bytes.Buffer
		log := newLogger(config.Config{LogFormat: format, LogLevel: slog.LevelDebug}, &out)
		log.Info("request", "authorization", "Bearer "+key, "X-API-Key", key, "token", "t0ps3cret",
			"detail", "key was "+key, "err", errors.New("upstream said: invalid key sk-proj-abcdef123456 / whsec_MfKQ9r8GKYqrTwjUPD8I"),
			"task_id", "kept")
		got := out.String()
		for _, secret := range []string{key[4:], "t0ps3cret", "abcdef123456", "MfKQ9r8GKYqrTwjUPD8I"} {
			require.NotContains(t, got, secret, format)
		}
		require.Contains(t, got, "kept", "other attributes stay")
		require.Contains(t, got, "[REDACTED]")
	}
}
