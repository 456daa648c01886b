package e2e_test

import (
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider/espeak"
	"github.com/siganteng/siganteng/internal/provider/providertest"
	"github.com/siganteng/siganteng/internal/redistest"
)

type speechRecord struct {
	Status string `json:"status"`
	Result *struct {
		Artifact struct {
			URL         string `json:"url"`
			ContentType string `json:"content_type"`
			Size        int64  `json:"size"`
		} `json:"artifact"`
		Provider string `json:"provider"`
		Format   string `json:"format"`
		Voice    string `json:"voice"`
	} `json:"result"`
}

func download(t *testing.T, url, rangeHeader string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if rangeHeader != "" {
		req.Header.Set("Range", rangeHeader)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res, b
}

// The one-command default speaks: no Redis, no key, espeak-ng on PATH.
func TestEmbeddedDefaultSpeaksWAV(t *testing.T) {
	t.Parallel()
	if !espeak.Available("") {
		if os.Getenv("CI") != "" {
			t.Fatal("espeak-ng is not installed; .ci/run installs it")
		}
		t.Skip("espeak-ng is not installed")
	}
	s := start(t, "serve", map[string]string{})
	rec, _ := submitTo(t, s.url, "text_to_speech", `{"text":"Selamat datang di SIGANTENG. Tugas Anda sudah selesai.","voice":"id"}`)
	await(t, s.url, rec.TaskID, 15*time.Second)

	var final speechRecord
	getJSON(t, s.url+"/background/tasks/"+rec.TaskID, &final)
	require.Equal(t, "SUCCESS", final.Status)
	require.Equal(t, "espeak", final.Result.Provider)
	require.Equal(t, "wav", final.Result.Format)
	require.Equal(t, "audio/wav", final.Result.Artifact.ContentType)

	res, wav := download(t, s.url+final.Result.Artifact.URL, "")
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "audio/wav", res.Header.Get("Content-Type"))
	require.EqualValues(t, final.Result.Artifact.Size, len(wav))
	info, err := providertest.ParseWAV(wav)
	require.NoError(t, err)
	require.Greater(t, info.Duration, 2*time.Second, "two sentences of real speech")

	res, head := download(t, s.url+final.Result.Artifact.URL, "bytes=0-11")
	require.Equal(t, http.StatusPartialContent, res.StatusCode)
	require.Equal(t, wav[:12], head)
}

func TestTextToSpeechThroughOpenAI(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake(providertest.WithSpeechBytes(100_000))
	t.Cleanup(fake.Close)
	s := start(t, "serve", openAIEnv(t, fake, redistest.URL(t)))

	rec, _ := submitTo(t, s.url, "text_to_speech", `{"text":"Hello","voice":"nova","format":"mp3","speed":1.1}`)
	await(t, s.url, rec.TaskID, 10*time.Second)
	var final speechRecord
	getJSON(t, s.url+"/background/tasks/"+rec.TaskID, &final)
	require.Equal(t, "SUCCESS", final.Status)
	require.Equal(t, "openai", final.Result.Provider)
	require.EqualValues(t, 100_000, final.Result.Artifact.Size)

	res, audio := download(t, s.url+final.Result.Artifact.URL, "")
	require.Equal(t, "audio/mpeg", res.Header.Get("Content-Type"))
	require.Len(t, audio, 100_000)

	calls := fake.SpeechCalls()
	require.Len(t, calls, 1)
	require.Equal(t, "Hello", calls[0].Input)
	require.Equal(t, "nova", calls[0].Voice)
	require.Equal(t, "mp3", calls[0].Format)
	require.Equal(t, "Bearer "+testKey, calls[0].Authorization)

	// And synchronously: the audio is the answer.
	res2, err := http.Post(s.url+"/text_to_speech", "application/json", stringsReader(`{"text":"Now","format":"wav"}`))
	require.NoError(t, err)
	defer res2.Body.Close()
	body, _ := io.ReadAll(res2.Body)
	require.Equal(t, http.StatusOK, res2.StatusCode)
	require.Equal(t, "audio/wav", res2.Header.Get("Content-Type"))
	_, err = providertest.ParseWAV(body)
	require.NoError(t, err)
}

func TestArtifactBeforeTheEndIsConflict(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake(providertest.WithDelay(2 * time.Second))
	t.Cleanup(fake.Close)
	s := start(t, "serve", openAIEnv(t, fake, redistest.URL(t)))
	rec, _ := submit(t, s.url, `{"prompt":"slow"}`)
	res, _ := download(t, s.url+"/background/tasks/"+rec.TaskID+"/artifact", "")
	require.Equal(t, http.StatusConflict, res.StatusCode)
}
