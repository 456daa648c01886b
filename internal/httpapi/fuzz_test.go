package httpapi_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/siganteng/siganteng/internal/httpapi"
	"github.com/siganteng/siganteng/internal/task"
)

// FuzzSubmitDecoding sends arbitrary bodies, with arbitrary content types,
// to every submit endpoint: whatever arrives, the answer is never a 5xx.
func FuzzSubmitDecoding(f *testing.F) {
	for _, seed := range []struct{ contentType, body string }{
		{"application/json", `{"prompt":"hi","max_tokens":5,"stream":true,"priority":"high"}`},
		{"application/json", `{"input":["a","b"],"dimensions":8}`},
		{"application/json", `{"image_url":"data:image/png;base64,iVBORw0KGgo=","prompt":"what"}`},
		{"application/json", `{"text":"halo","voice":"id","speed":1.5,"cancel_after":3,"webhook":"https://e.x/h","webhook_events":["start"]}`},
		{"multipart/form-data; boundary=X", "--X\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nhi\r\n--X--\r\n"},
		{"application/json", `{"prompt":"\u0000","max_tokens":-1}`},
		{"text/plain", `prompt=hi`},
	} {
		f.Add(seed.contentType, []byte(seed.body))
	}
	h := httpapi.New(httpapi.Deps{
		Tasks:          &fakeTasks{records: map[string]*task.Record{}, artifacts: map[string][]byte{}},
		Log:            slog.New(slog.NewTextHandler(io.Discard, nil)),
		Version:        "fuzz",
		MaxUploadBytes: 1 << 20,
	})
	paths := []string{"/background/generate_text", "/background/embed", "/background/describe_image",
		"/background/text_to_speech", "/background/speech_to_text", "/describe_image"}
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		for _, path := range paths {
			req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
			req.Header.Set("Content-Type", contentType)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code >= 500 {
				t.Fatalf("%s with %q answered %d: %s", path, contentType, rec.Code, rec.Body.String())
			}
		}
	})
}
