package providertest

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider"
)

// SpeechCall is a text-to-speech request as a fake received it.
type SpeechCall struct {
	Path          string
	Authorization string
	Model         string
	Input         string
	Voice         string
	Format        string
	Speed         *float64
}

// speech answers POST /v1/audio/speech as OpenAI documents it: the audio
// bytes, in the asked format.
func (f *OpenAIFake) speech(w http.ResponseWriter, req *http.Request) {
	raw := readBody(req)
	f.check(req, raw)
	var in struct {
		Model          string   `json:"model"`
		Input          string   `json:"input"`
		Voice          string   `json:"voice"`
		ResponseFormat string   `json:"response_format"`
		Speed          *float64 `json:"speed"`
	}
	if err := json.Unmarshal(raw, &in); err != nil {
		write(w, req, f.ErrorReply(http.StatusBadRequest, "We could not parse the JSON body of your request.", 0))
		return
	}
	call := SpeechCall{Path: req.URL.Path, Authorization: req.Header.Get("Authorization"), Model: in.Model,
		Input: in.Input, Voice: in.Voice, Format: in.ResponseFormat, Speed: in.Speed}
	reply, scripted := f.take(func() { f.speechCalls = append(f.speechCalls, call) })
	if !scripted {
		format := in.ResponseFormat
		if format == "" {
			format = "mp3"
		}
		reply = AudioReply(format, f.speechBytes) // set once, before the server started
	}
	write(w, req, reply)
}

// SpeechCalls returns the speech requests received so far.
func (f *OpenAIFake) SpeechCalls() []SpeechCall { return snapshot(&f.recorder, &f.speechCalls) }

// WithSpeechBytes sets the size of unscripted speech answers.
func WithSpeechBytes(n int) OpenAIOption {
	return func(f *OpenAIFake) { f.speechBytes = n }
}

// AudioReply is an audio answer of about size bytes: a valid WAV of silence
// for wav, bytes with the format's media type otherwise.
func AudioReply(format string, size int) Reply {
	if size <= 0 {
		size = 4800
	}
	body := make([]byte, size)
	if format == "wav" {
		body = WAV(size)
	}
	return Reply{Header: http.Header{"Content-Type": {provider.AudioContentType(format)}}, Body: body}
}

// WAV returns a valid 16-bit mono 24 kHz WAV file of silence with dataBytes
// of samples.
func WAV(dataBytes int) []byte {
	var b bytes.Buffer
	le := binary.LittleEndian
	b.WriteString("RIFF")
	_ = binary.Write(&b, le, uint32(36+dataBytes))
	b.WriteString("WAVEfmt ")
	_ = binary.Write(&b, le, uint32(16))
	_ = binary.Write(&b, le, uint16(1))     // PCM
	_ = binary.Write(&b, le, uint16(1))     // mono
	_ = binary.Write(&b, le, uint32(24000)) // sample rate
	_ = binary.Write(&b, le, uint32(48000)) // byte rate
	_ = binary.Write(&b, le, uint16(2))     // block align
	_ = binary.Write(&b, le, uint16(16))    // bits per sample
	b.WriteString("data")
	_ = binary.Write(&b, le, uint32(dataBytes))
	b.Write(make([]byte, dataBytes))
	return b.Bytes()
}

// WAVInfo describes a parsed WAV file.
type WAVInfo struct {
	Channels   int
	SampleRate int
	Bits       int
	DataBytes  int
	Duration   time.Duration
}

// ParseWAV checks that b is a well-formed PCM WAV file whose header sizes
// agree with its length, and describes it.
func ParseWAV(b []byte) (WAVInfo, error) {
	le := binary.LittleEndian
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return WAVInfo{}, errors.New("wav: no RIFF/WAVE header")
	}
	if riff := int(le.Uint32(b[4:8])); riff != len(b)-8 {
		return WAVInfo{}, fmt.Errorf("wav: RIFF size %d, but the file has %d bytes after it", riff, len(b)-8)
	}
	var info WAVInfo
	for off := 12; off+8 <= len(b); {
		id, size := string(b[off:off+4]), int(le.Uint32(b[off+4:off+8]))
		body := off + 8
		if body+size > len(b) {
			return WAVInfo{}, fmt.Errorf("wav: chunk %q runs past the end", id)
		}
		switch id {
		case "fmt ":
			if size < 16 || le.Uint16(b[body:]) != 1 {
				return WAVInfo{}, errors.New("wav: not PCM")
			}
			info.Channels = int(le.Uint16(b[body+2:]))
			info.SampleRate = int(le.Uint32(b[body+4:]))
			info.Bits = int(le.Uint16(b[body+14:]))
		case "data":
			info.DataBytes = size
		}
		off = body + size + size%2
	}
	if info.SampleRate == 0 || info.Channels == 0 || info.Bits == 0 {
		return WAVInfo{}, errors.New("wav: no fmt chunk")
	}
	info.Duration = time.Duration(float64(info.DataBytes) / float64(info.SampleRate*info.Channels*info.Bits/8) * float64(time.Second))
	return info, nil
}

// SpeechFake is a fake that speaks.
type SpeechFake interface {
	URL() string
	Close()
	Script(replies ...Reply)
	SpeechCalls() []SpeechCall
	ErrorReply(status int, message string, retryAfter time.Duration) Reply
}

// TTSHarness describes a text-to-speech adapter to the conformance suite.
type TTSHarness struct {
	Name       string
	NewFake    func(t *testing.T) SpeechFake
	NewAdapter func(baseURL, key string) provider.TTS
	Key        string
	Path       func(model string) string
	// Voices is false for providers whose models have one voice each, and
	// Format names the one format of those that cannot choose ("" if they can).
	Voices bool
	Format string
}

// RunTTS runs the conformance suite for HTTP text-to-speech adapters.
func RunTTS(t *testing.T, h TTSHarness) {
	t.Helper()
	setup := func(t *testing.T) (SpeechFake, provider.TTS) {
		t.Helper()
		fake := h.NewFake(t)
		t.Cleanup(fake.Close)
		return fake, h.NewAdapter(fake.URL(), h.Key)
	}
	ctx := context.Background()
	speak := func(tts provider.TTS, req provider.SpeechRequest) (provider.Audio, []byte, error) {
		audio, err := tts.Synthesize(ctx, req)
		if err != nil {
			return audio, nil, err
		}
		defer audio.Body.Close()
		b, err := io.ReadAll(audio.Body)
		return audio, b, err
	}

	t.Run("SendsRequestAndStreamsAudio", func(t *testing.T) {
		t.Parallel()
		fake, tts := setup(t)
		req := provider.SpeechRequest{Text: "Halo dunia", Model: "owner/tts-x", Format: "wav", Speed: 1.5}
		if h.Voices {
			req.Voice = "nova"
		} else {
			req.Format, req.Speed = h.Format, 0
		}
		audio, body, err := speak(tts, req)
		require.NoError(t, err)
		require.NotEmpty(t, body)
		require.Equal(t, req.Format, audio.Format)
		require.Equal(t, provider.AudioContentType(req.Format), audio.ContentType)
		if audio.Format == "wav" {
			info, err := ParseWAV(body)
			require.NoError(t, err)
			require.Positive(t, info.DataBytes)
		}
		call := fake.SpeechCalls()[0]
		require.Equal(t, h.Path("owner/tts-x"), call.Path)
		require.Equal(t, "Bearer "+h.Key, call.Authorization)
		require.Equal(t, "owner/tts-x", call.Model)
		require.Equal(t, "Halo dunia", call.Input)
		if h.Voices {
			require.Equal(t, "nova", call.Voice)
			require.Equal(t, "wav", call.Format)
			require.NotNil(t, call.Speed)
			require.InDelta(t, 1.5, *call.Speed, 1e-9)
		}
	})

	if !h.Voices {
		t.Run("RefusesWhatItCannotDo", func(t *testing.T) {
			t.Parallel()
			_, tts := setup(t)
			for _, req := range []provider.SpeechRequest{{Text: "x", Voice: "nova"}, {Text: "x", Speed: 2}} {
				_, _, err := speak(tts, req)
				var perr *provider.Error
				require.ErrorAs(t, err, &perr)
				require.Equal(t, provider.KindRejected, perr.Kind)
			}
		})
	}

	t.Run("Defaults", func(t *testing.T) {
		t.Parallel()
		fake, tts := setup(t)
		audio, body, err := speak(tts, provider.SpeechRequest{Text: "hi"})
		require.NoError(t, err)
		require.NotEmpty(t, body)
		call := fake.SpeechCalls()[0]
		require.NotEmpty(t, call.Model)
		if h.Voices {
			require.NotEmpty(t, call.Voice)
			require.Equal(t, audio.Format, call.Format)
		}
		require.Nil(t, call.Speed)
	})

	for _, tc := range []struct {
		status int
		kind   provider.Kind
	}{
		{http.StatusTooManyRequests, provider.KindRateLimited},
		{http.StatusInternalServerError, provider.KindUnavailable},
		{http.StatusBadRequest, provider.KindRejected},
		{http.StatusUnauthorized, provider.KindAuth},
	} {
		t.Run(fmt.Sprintf("Error%d", tc.status), func(t *testing.T) {
			t.Parallel()
			fake, tts := setup(t)
			fake.Script(fake.ErrorReply(tc.status, "nope: "+h.Key, 3*time.Second))
			_, _, err := speak(tts, provider.SpeechRequest{Text: "hi"})
			var perr *provider.Error
			require.ErrorAs(t, err, &perr)
			require.Equal(t, tc.kind, perr.Kind)
			require.Equal(t, h.Name, perr.Provider)
			require.NotContains(t, perr.Error(), h.Key)
			if tc.status == http.StatusTooManyRequests {
				require.Equal(t, 3*time.Second, perr.RetryAfter)
			}
		})
	}

	t.Run("ConnectionRefused", func(t *testing.T) {
		t.Parallel()
		fake, tts := setup(t)
		fake.Close()
		_, _, err := speak(tts, provider.SpeechRequest{Text: "hi"})
		var perr *provider.Error
		require.ErrorAs(t, err, &perr)
		require.Equal(t, provider.KindUnavailable, perr.Kind)
	})
}
