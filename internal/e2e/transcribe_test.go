package e2e_test

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider/providertest"
	"github.com/siganteng/siganteng/internal/redistest"
)

// upload posts a multipart form with the audio as "file".
func upload(t *testing.T, url string, fields map[string]string, audio []byte) (int, []byte) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for k, v := range fields {
		require.NoError(t, w.WriteField(k, v))
	}
	fw, err := w.CreateFormFile("file", "meeting.bin")
	require.NoError(t, err)
	_, _ = fw.Write(audio)
	require.NoError(t, w.Close())
	res, err := http.Post(url, w.FormDataContentType(), &buf)
	require.NoError(t, err)
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, body
}

func TestSpeechToTextThroughOpenAI(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	env := openAIEnv(t, fake, redistest.URL(t))
	s := start(t, "serve", env)
	audio := providertest.WAV(96000)

	status, body := upload(t, s.url+"/background/speech_to_text", map[string]string{"language": "id", "prompt": "SIGANTENG"}, audio)
	require.Equal(t, http.StatusAccepted, status, "%s", body)
	var rec record
	require.NoError(t, json.Unmarshal(body, &rec))
	await(t, s.url, rec.TaskID, 10*time.Second)

	var final struct {
		Status string `json:"status"`
		Result struct {
			Text     string `json:"text"`
			Language string `json:"language"`
			Segments []struct {
				End float64 `json:"end"`
			} `json:"segments"`
			Provider string `json:"provider"`
		} `json:"result"`
	}
	getJSON(t, s.url+"/background/tasks/"+rec.TaskID, &final)
	require.Equal(t, "SUCCESS", final.Status)
	require.Equal(t, providertest.TranscriptOf(audio), final.Result.Text)
	require.Equal(t, "openai", final.Result.Provider)
	require.Len(t, final.Result.Segments, 1)

	call := fake.STTCalls()[0]
	require.Equal(t, audio, call.Audio, "the provider got the upload byte for byte")
	require.Equal(t, "audio/wav", call.MediaType, "sniffed, not the client's word")
	require.Equal(t, "audio.wav", call.Filename)
	require.Equal(t, "id", call.Language)
	require.Equal(t, "SIGANTENG", call.Prompt)

	entries, err := os.ReadDir(env["ARTIFACT_DIR"])
	require.NoError(t, err)
	for _, e := range entries {
		require.False(t, strings.HasSuffix(e.Name(), "-input"), "the upload is removed once transcribed: %s", e.Name())
	}

	// Synchronously, the transcript is the answer.
	status, body = upload(t, s.url+"/speech_to_text", nil, audio)
	require.Equal(t, http.StatusOK, status, "%s", body)
	require.Contains(t, string(body), providertest.TranscriptOf(audio))
}

func TestSpeechToTextRefusesWhatIsNotAudio(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	env := openAIEnv(t, fake, redistest.URL(t))
	env["MAX_UPLOAD_BYTES"] = "65536"
	s := start(t, "serve", env)
	status, body := upload(t, s.url+"/background/speech_to_text", nil, []byte("#!/bin/sh\nrm -rf /\n"))
	require.Equal(t, http.StatusUnsupportedMediaType, status, "%s", body)
	require.Contains(t, string(body), "audio/wav")

	status, body = upload(t, s.url+"/background/speech_to_text", nil, providertest.WAV(200_000))
	require.Equal(t, http.StatusRequestEntityTooLarge, status, "%s", body)
	require.Empty(t, fake.STTCalls())
}

func TestSpeechToTextWithoutProviderSaysWhatToSet(t *testing.T) {
	t.Parallel()
	s := start(t, "serve", map[string]string{})
	status, body := upload(t, s.url+"/background/speech_to_text", nil, providertest.WAV(4800))
	require.Equal(t, http.StatusAccepted, status, "%s", body)
	var rec record
	require.NoError(t, json.Unmarshal(body, &rec))
	final, _ := await(t, s.url, rec.TaskID, 10*time.Second)
	require.Equal(t, "FAILURE", final.Status)
	require.Equal(t, "provider_not_configured", final.Error.Code)
	require.Contains(t, final.Error.Message, "OPENAI_API_KEY")
	require.Equal(t, 1, final.Attempts)
}
