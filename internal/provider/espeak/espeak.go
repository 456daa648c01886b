// Package espeak is a local text-to-speech adapter: it runs the espeak-ng
// program, so the embedded default speaks without any network or key.
package espeak

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/siganteng/siganteng/internal/provider"
)

// DefaultVoice is espeak-ng's English voice; "id" is Indonesian.
const DefaultVoice = "en"

// wordsPerMinute is espeak-ng's normal speed, which Speed 1.0 maps to.
const wordsPerMinute = 175

// Config configures the adapter.
type Config struct {
	Program string        // "espeak-ng" when empty, looked up on PATH
	Timeout time.Duration // bound on one run; 60s when zero
	TempDir string        // where audio is written before it is read; os.TempDir() when empty
}

// Adapter implements provider.TTS with espeak-ng.
type Adapter struct {
	program string
	timeout time.Duration
	tempDir string
}

var _ provider.TTS = (*Adapter)(nil)

// Available reports whether espeak-ng can be run.
func Available(program string) bool {
	if program == "" {
		program = "espeak-ng"
	}
	_, err := exec.LookPath(program)
	return err == nil
}

// New returns the adapter. It does no I/O.
func New(cfg Config) *Adapter {
	if cfg.Program == "" {
		cfg.Program = "espeak-ng"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 60 * time.Second
	}
	return &Adapter{program: cfg.Program, timeout: cfg.Timeout, tempDir: cfg.TempDir}
}

// Name implements provider.TTS.
func (a *Adapter) Name() string { return "espeak" }

// Synthesize implements provider.TTS. The program gets its options as
// separate arguments and the text on standard input, never through a shell,
// so no text can become an option or a command. It writes a WAV file (a
// file, because a WAV streamed to a pipe has no sizes in its header).
func (a *Adapter) Synthesize(ctx context.Context, req provider.SpeechRequest) (provider.Audio, error) {
	if req.Format != "" && req.Format != "wav" {
		return provider.Audio{}, &provider.Error{Provider: a.Name(), Kind: provider.KindRejected,
			Message: fmt.Sprintf("espeak-ng makes wav only, not %s; ask for format wav or configure TTS_PROVIDER=openai", req.Format)}
	}
	voice := req.Voice
	if voice == "" {
		voice = DefaultVoice
	}
	if !validVoice(voice) {
		return provider.Audio{}, &provider.Error{Provider: a.Name(), Kind: provider.KindRejected, Message: fmt.Sprintf("invalid voice %q", voice)}
	}
	speed := req.Speed
	if speed == 0 {
		speed = 1
	}
	out, err := os.CreateTemp(a.tempDir, "espeak-*.wav")
	if err != nil {
		return provider.Audio{}, fmt.Errorf("espeak: temp file: %w", err)
	}
	path := out.Name()
	_ = out.Close()

	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, a.program, "--stdin", "-w", path, "-v", voice, "-s", fmt.Sprint(int(wordsPerMinute*speed)))
	cmd.Stdin = strings.NewReader(req.Text)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		_ = os.Remove(path)
		return provider.Audio{}, a.runError(ctx, err, stderr.String())
	}
	f, err := os.Open(path)
	if err != nil {
		return provider.Audio{}, fmt.Errorf("espeak: open output: %w", err)
	}
	return provider.Audio{
		Body: &removeOnClose{File: f}, ContentType: "audio/wav", Format: "wav", Voice: voice, Model: "espeak-ng",
	}, nil
}

func (a *Adapter) runError(ctx context.Context, err error, stderr string) error {
	msg := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(stderr), "Error:"))
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return &provider.Error{Provider: a.Name(), Kind: provider.KindTimeout, Message: "espeak-ng ran out of time"}
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, exec.ErrNotFound):
		return &provider.Error{Provider: a.Name(), Kind: provider.KindNotConfigured, Message: "espeak-ng is not installed (apt-get install espeak-ng)"}
	case strings.Contains(msg, "voice does not exist"):
		return &provider.Error{Provider: a.Name(), Kind: provider.KindRejected, Message: msg}
	case msg == "":
		msg = err.Error()
	}
	return &provider.Error{Provider: a.Name(), Kind: provider.KindUnavailable, Message: "espeak-ng failed: " + msg}
}

// validVoice admits espeak-ng voice names ("en", "id", "en-us", "gmw/af",
// "en+f3") and nothing that could be read as an option.
func validVoice(v string) bool {
	if v == "" || len(v) > 64 || v[0] == '-' {
		return false
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_+/", r)) {
			return false
		}
	}
	return !strings.Contains(v, "..")
}

// removeOnClose deletes the temporary file once the audio has been read.
type removeOnClose struct{ *os.File }

func (r *removeOnClose) Close() error {
	err := r.File.Close()
	_ = os.Remove(r.File.Name())
	return err
}
