package providertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider"
)

// STTCall is a transcription request as a fake received it.
type STTCall struct {
	Path          string
	Authorization string
	Model         string
	Audio         []byte
	MediaType     string
	Filename      string
	Language      string
	Prompt        string
	Format        string
}

// STTFake is a fake that transcribes.
type STTFake interface {
	URL() string
	Close()
	Script(replies ...Reply)
	STTCalls() []STTCall
	ErrorReply(status int, message string, retryAfter time.Duration) Reply
}

// TranscriptOf is the text every fake hears in audio.
func TranscriptOf(audio []byte) string { return fmt.Sprintf("heard %d bytes", len(audio)) }

func (r *recorder) recordSTT(call STTCall) (Reply, bool) {
	return r.take(func() { r.sttCalls = append(r.sttCalls, call) })
}

// STTCalls returns the transcription requests received so far.
func (r *recorder) STTCalls() []STTCall { return snapshot(r, &r.sttCalls) }

// transcriptions answers POST /v1/audio/transcriptions, a multipart form, as
// OpenAI documents it: {"text"} for json, with language, duration and
// segments for verbose_json.
func (f *OpenAIFake) transcriptions(w http.ResponseWriter, req *http.Request) {
	if err := req.ParseMultipartForm(32 << 20); err != nil {
		write(w, req, f.ErrorReply(http.StatusBadRequest, "Could not parse multipart form", 0))
		return
	}
	file, header, err := req.FormFile("file")
	if err != nil {
		write(w, req, f.ErrorReply(http.StatusBadRequest, "you must provide a file", 0))
		return
	}
	audio, _ := io.ReadAll(file)
	call := STTCall{Path: req.URL.Path, Authorization: req.Header.Get("Authorization"), Model: req.FormValue("model"),
		Audio: audio, MediaType: header.Header.Get("Content-Type"), Filename: header.Filename,
		Language: req.FormValue("language"), Prompt: req.FormValue("prompt"), Format: req.FormValue("response_format")}
	if reply, ok := f.recordSTT(call); ok {
		write(w, req, reply)
		return
	}
	text := TranscriptOf(audio)
	if call.Format != "verbose_json" {
		write(w, req, Reply{Body: mustJSON(map[string]any{"text": text,
			"usage": map[string]any{"type": "tokens", "input_tokens": 14, "output_tokens": 45, "total_tokens": 59}})})
		return
	}
	write(w, req, Reply{Body: mustJSON(map[string]any{
		"task": "transcribe", "language": "english", "duration": 8.47, "text": text,
		"segments": []map[string]any{{
			"id": 0, "seek": 0, "start": 0.0, "end": 3.32, "text": text, "tokens": []int{50364, 440, 7534},
			"temperature": 0.0, "avg_logprob": -0.286, "compression_ratio": 1.236, "no_speech_prob": 0.0093,
		}},
		"usage": map[string]any{"type": "duration", "seconds": 9},
	})})
}

// model answers POST /models/{owner}/{name}: the real router runs the
// model's own task; the fake tells speech synthesis ({"inputs": text}) from
// speech recognition (audio bytes) by the body.
func (f *HFInferenceFake) model(w http.ResponseWriter, req *http.Request) {
	body := readBody(req)
	if strings.HasPrefix(req.Header.Get("Content-Type"), "application/json") {
		f.tts(w, req, body)
		return
	}
	f.asr(w, req, body)
}

// tts answers as the text-to-speech pipeline does: FLAC bytes.
func (f *HFInferenceFake) tts(w http.ResponseWriter, req *http.Request, body []byte) {
	var in struct {
		Inputs string `json:"inputs"`
	}
	_ = json.Unmarshal(body, &in)
	call := SpeechCall{Path: req.URL.Path, Authorization: req.Header.Get("Authorization"),
		Model: req.PathValue("owner") + "/" + req.PathValue("name"), Input: in.Inputs}
	reply, scripted := f.take(func() { f.speechCalls = append(f.speechCalls, call) })
	if !scripted {
		reply = Reply{Header: http.Header{"Content-Type": {"audio/flac"}}, Body: append([]byte("fLaC"), make([]byte, 4000)...)}
	}
	write(w, req, reply)
}

// SpeechCalls returns the speech requests received so far.
func (f *HFInferenceFake) SpeechCalls() []SpeechCall { return snapshot(&f.recorder, &f.speechCalls) }

// asr answers as the automatic-speech-recognition pipeline does.
func (f *HFInferenceFake) asr(w http.ResponseWriter, req *http.Request, audio []byte) {
	call := STTCall{Path: req.URL.Path, Authorization: req.Header.Get("Authorization"),
		Model: req.PathValue("owner") + "/" + req.PathValue("name"), Audio: audio, MediaType: req.Header.Get("Content-Type")}
	if reply, ok := f.recordSTT(call); ok {
		write(w, req, reply)
		return
	}
	write(w, req, Reply{Body: mustJSON(map[string]any{"text": " " + TranscriptOf(audio)})})
}

// STTHarness describes a speech-to-text adapter to the conformance suite.
type STTHarness struct {
	Name         string
	NewFake      func(t *testing.T) STTFake
	NewAdapter   func(baseURL, key string) provider.STT
	Key          string
	Path         func(model string) string
	DefaultModel string
}

// RunSTT runs the conformance suite for speech-to-text adapters.
func RunSTT(t *testing.T, h STTHarness) {
	t.Helper()
	setup := func(t *testing.T) (STTFake, provider.STT) {
		t.Helper()
		fake := h.NewFake(t)
		t.Cleanup(fake.Close)
		return fake, h.NewAdapter(fake.URL(), h.Key)
	}
	ctx := context.Background()
	audio := WAV(48000)

	t.Run("SendsAudioAndReadsTranscript", func(t *testing.T) {
		t.Parallel()
		fake, stt := setup(t)
		out, err := stt.Transcribe(ctx, provider.TranscribeRequest{Audio: bytes.NewReader(audio), Filename: "rapat.wav",
			MediaType: "audio/wav", Model: "owner/stt-model", Language: "id", Prompt: "SIGANTENG"})
		require.NoError(t, err)
		require.Equal(t, TranscriptOf(audio), out.Text)
		call := fake.STTCalls()[0]
		require.Equal(t, h.Path("owner/stt-model"), call.Path)
		require.Equal(t, "owner/stt-model", call.Model)
		require.Equal(t, audio, call.Audio)
		require.Equal(t, "audio/wav", call.MediaType)
		if h.Key != "" {
			require.Equal(t, "Bearer "+h.Key, call.Authorization)
		}
	})

	t.Run("DefaultModel", func(t *testing.T) {
		t.Parallel()
		fake, stt := setup(t)
		_, err := stt.Transcribe(ctx, provider.TranscribeRequest{Audio: bytes.NewReader(audio), Filename: "a.wav", MediaType: "audio/wav"})
		require.NoError(t, err)
		require.Equal(t, h.DefaultModel, fake.STTCalls()[0].Model)
	})

	for _, tc := range []struct {
		status int
		kind   provider.Kind
	}{{http.StatusTooManyRequests, provider.KindRateLimited}, {http.StatusBadGateway, provider.KindUnavailable},
		{http.StatusBadRequest, provider.KindRejected}, {http.StatusForbidden, provider.KindAuth}} {
		t.Run(fmt.Sprintf("Error%d", tc.status), func(t *testing.T) {
			t.Parallel()
			fake, stt := setup(t)
			fake.Script(fake.ErrorReply(tc.status, "Invalid file format. "+h.Key, time.Second))
			_, err := stt.Transcribe(ctx, provider.TranscribeRequest{Audio: bytes.NewReader(audio), Filename: "a.wav", MediaType: "audio/wav"})
			var perr *provider.Error
			require.ErrorAs(t, err, &perr)
			require.Equal(t, tc.kind, perr.Kind)
			require.Equal(t, h.Name, perr.Provider)
			if h.Key != "" {
				require.NotContains(t, perr.Error(), h.Key)
			}
		})
	}
}
