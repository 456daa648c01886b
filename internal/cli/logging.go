package cli

import (
	"io"
	"log/slog"
	"strings"

	"github.com/siganteng/siganteng/internal/config"
	"github.com/siganteng/siganteng/internal/logctx"
	"github.com/siganteng/siganteng/internal/provider"
)

// secretAttrs are attribute names whose values are never logged.
var secretAttrs = map[string]bool{
	"authorization": true, "x-api-key": true, "api_key": true, "apikey": true, "token": true,
	"secret": true, "password": true, "webhook_secret": true, "cookie": true,
}

// newLogger writes LOG_FORMAT lines at LOG_LEVEL, with secrets removed: the
// values of attributes named like credentials, and anything shaped like a
// key (ours, OpenAI's, Hugging Face's, a webhook secret, a bearer token) in
// any message or value, errors included.
func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel, ReplaceAttr: redactAttr}
	if cfg.LogFormat == "json" {
		return slog.New(logctx.Handler{Handler: slog.NewJSONHandler(w, opts)})
	}
	return slog.New(logctx.Handler{Handler: slog.NewTextHandler(w, opts)})
}

func redactAttr(_ []string, a slog.Attr) slog.Attr {
	if secretAttrs[strings.ToLower(a.Key)] {
		return slog.String(a.Key, "[REDACTED]")
	}
	switch v := a.Value.Resolve(); v.Kind() {
	case slog.KindString:
		a.Value = slog.StringValue(provider.Redact(v.String()))
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			a.Value = slog.StringValue(provider.Redact(err.Error()))
		}
	}
	return a
}
