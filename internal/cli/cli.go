// Package cli is SIGANTENG's command line and the one place where concrete
// types meet: it reads the configuration, connects Redis, builds the
// providers, and runs the API, the worker, or both.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/joho/godotenv"

	"github.com/siganteng/siganteng/internal/config"
	"github.com/siganteng/siganteng/internal/httpapi"
	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/routing"
	"github.com/siganteng/siganteng/internal/tracing"
)

const usage = `SIGANTENG runs slow AI work in background workers behind an HTTP API.

Usage:
  siganteng [command]

Commands:
  serve     run the API and a worker in one process (the default)
  api       run only the HTTP API (needs REDIS_URL)
  worker    run only a worker (needs REDIS_URL)
  keys      create, list and revoke API keys (needs REDIS_URL)
  bench     the load tool: an instant provider, and a driver that measures a running API
  openapi   print the OpenAPI document
  version   print the version

Every setting is an environment variable (see .env.example); a .env file in
the working directory is read when present. Variables already set win.
`

// Run runs the command in args (args[0] is the program name). It returns
// when the command is done, or when ctx ends or SIGINT/SIGTERM arrives.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	cmd := "serve"
	if len(args) > 1 {
		cmd = args[1]
	}
	switch cmd {
	case "help", "-h", "--help":
		_, err := io.WriteString(stdout, usage)
		return err
	case "version", "--version":
		_, err := fmt.Fprintln(stdout, version())
		return err
	case "openapi":
		doc, err := httpapi.OpenAPI(version(), config.DefaultMaxUploadBytes)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", doc)
		return err
	case "bench":
		return bench(ctx, args[2:], stdout)
	case "serve", "api", "worker", "keys":
	default:
		return fmt.Errorf("unknown command %q\n\n%s", cmd, usage)
	}

	getenv, err := withDotEnv(getenv)
	if err != nil {
		return err
	}
	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	routes, err := loadRoutes(cfg.RoutesFile, getenv)
	if err != nil {
		return err
	}
	if cmd == "keys" {
		return keys(ctx, args[2:], cfg, routes, stdout)
	}
	chosen, err := chooseProviders(cfg)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	tr, err := tracing.Setup(ctx, getenv, version())
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := tr.Shutdown(sctx); err != nil {
			log.Warn("traces not all exported", "err", err)
		}
	}()
	if tr.Enabled() {
		log.Info("tracing to OTLP", "endpoint", provider.Redact(firstNonEmpty(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))))
	}
	return run(ctx, cmd, cfg, setup{routes: routes, chosen: chosen}, getenv, log, tr)
}

// withDotEnv lets a .env file in the working directory supply variables the
// environment does not set.
func withDotEnv(getenv func(string) string) (func(string) string, error) {
	file, err := godotenv.Read(".env")
	if errors.Is(err, os.ErrNotExist) {
		return getenv, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read .env: %w", err)
	}
	return func(name string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return file[name]
	}, nil
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

func version() string {
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "dev"
}

// loadRoutes reads and checks the routing file at path; nil without one.
func loadRoutes(path string, getenv func(string) string) (*routing.File, error) {
	if path == "" {
		return nil, nil
	}
	f, err := routing.Load(path, getenv, knownProviders)
	if err != nil {
		return nil, fmt.Errorf("config: ROUTES_FILE: %w", err)
	}
	return f, nil
}
