package espeak_test

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/provider/espeak"
	"github.com/siganteng/siganteng/internal/provider/providertest"
)

func setup(t *testing.T) *espeak.Adapter {
	t.Helper()
	if !espeak.Available("") {
		if os.Getenv("CI") != "" {
			t.Fatal("espeak-ng is not installed; .ci/run installs it")
		}
		t.Skip("espeak-ng is not installed (apt-get install espeak-ng)")
	}
	return espeak.New(espeak.Config{TempDir: t.TempDir()})
}

func speak(t *testing.T, a *espeak.Adapter, req provider.SpeechRequest) (provider.Audio, []byte) {
	t.Helper()
	audio, err := a.Synthesize(context.Background(), req)
	require.NoError(t, err)
	defer audio.Body.Close()
	b, err := io.ReadAll(audio.Body)
	require.NoError(t, err)
	return audio, b
}

func TestSpeaksValidWAV(t *testing.T) {
	t.Parallel()
	a := setup(t)
	audio, b := speak(t, a, provider.SpeechRequest{Text: "Selamat pagi. Tugas Anda sudah selesai.", Voice: "id"})
	require.Equal(t, "audio/wav", audio.ContentType)
	require.Equal(t, "id", audio.Voice)
	info, err := providertest.ParseWAV(b)
	require.NoError(t, err)
	require.Equal(t, 1, info.Channels)
	require.Equal(t, 16, info.Bits)
	require.Greater(t, info.Duration, time.Second, "a whole sentence lasts more than a second")
}

func TestSpeedChangesDuration(t *testing.T) {
	t.Parallel()
	a := setup(t)
	text := "The quick brown fox jumps over the lazy dog."
	_, normal := speak(t, a, provider.SpeechRequest{Text: text})
	_, fast := speak(t, a, provider.SpeechRequest{Text: text, Speed: 2})
	n, err := providertest.ParseWAV(normal)
	require.NoError(t, err)
	f, err := providertest.ParseWAV(fast)
	require.NoError(t, err)
	require.Less(t, f.Duration, n.Duration*3/4)
}

func TestTextIsNeverAnOption(t *testing.T) {
	t.Parallel()
	a := setup(t)
	_, b := speak(t, a, provider.SpeechRequest{Text: "--version -w /etc/passwd; rm -rf /"})
	info, err := providertest.ParseWAV(b)
	require.NoError(t, err, "the text was spoken, not run or read as options")
	require.Greater(t, info.Duration, 500*time.Millisecond)
}

func TestTempFileIsRemovedOnClose(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if !espeak.Available("") {
		t.Skip("espeak-ng is not installed")
	}
	a := espeak.New(espeak.Config{TempDir: dir})
	audio, err := a.Synthesize(context.Background(), provider.SpeechRequest{Text: "hi"})
	require.NoError(t, err)
	entries, _ := os.ReadDir(dir)
	require.Len(t, entries, 1)
	require.NoError(t, audio.Body.Close())
	entries, _ = os.ReadDir(dir)
	require.Empty(t, entries)
}

func TestRejections(t *testing.T) {
	t.Parallel()
	a := setup(t)
	for name, req := range map[string]provider.SpeechRequest{
		"mp3":           {Text: "hi", Format: "mp3"},
		"unknown voice": {Text: "hi", Voice: "xx-nope"},
		"option voice":  {Text: "hi", Voice: "--help"},
		"path voice":    {Text: "hi", Voice: "../../etc"},
	} {
		_, err := a.Synthesize(context.Background(), req)
		var perr *provider.Error
		require.ErrorAs(t, err, &perr, name)
		require.Equal(t, provider.KindRejected, perr.Kind, name)
		require.False(t, perr.Transient(), name)
	}
}

func TestTimeLimit(t *testing.T) {
	t.Parallel()
	setup(t)
	a := espeak.New(espeak.Config{Timeout: time.Millisecond, TempDir: t.TempDir()})
	_, err := a.Synthesize(context.Background(), provider.SpeechRequest{Text: strings.Repeat("A long text to read aloud. ", 500)})
	var perr *provider.Error
	require.ErrorAs(t, err, &perr)
	require.Equal(t, provider.KindTimeout, perr.Kind)
}

func TestMissingProgramSaysHowToInstall(t *testing.T) {
	t.Parallel()
	a := espeak.New(espeak.Config{Program: "espeak-ng-not-here", TempDir: t.TempDir()})
	_, err := a.Synthesize(context.Background(), provider.SpeechRequest{Text: "hi"})
	var perr *provider.Error
	require.ErrorAs(t, err, &perr)
	require.Equal(t, provider.KindNotConfigured, perr.Kind)
	require.Contains(t, perr.Message, "apt-get install espeak-ng")
}
