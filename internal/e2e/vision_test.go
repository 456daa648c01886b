package e2e_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider/providertest"
	"github.com/siganteng/siganteng/internal/redistest"
)

func pngDataURL() string {
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(providertest.PNG1x1)
}

func TestDescribeImageFromDataURL(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	s := start(t, "serve", openAIEnv(t, fake, redistest.URL(t)))

	rec, _ := submitTo(t, s.url, "describe_image", `{"prompt":"What colour?","image_url":"`+pngDataURL()+`"}`)
	final, _ := await(t, s.url, rec.TaskID, 10*time.Second)
	require.Equal(t, "SUCCESS", final.Status)
	require.Equal(t, "echo: What colour?", final.Result.Text)
	calls := fake.Calls()
	require.Len(t, calls, 1)
	require.Equal(t, [][]byte{providertest.PNG1x1}, calls[0].Images)
	require.Equal(t, "gpt-4o-mini", calls[0].Model)
}

func TestDescribeImageFetchesURLsThroughTheGuard(t *testing.T) {
	t.Parallel()
	images := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write(providertest.PNG1x1)
	}))
	t.Cleanup(images.Close)
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)

	// By default a URL on this machine is refused: the task fails at once,
	// saying why, and the provider is never called.
	guarded := start(t, "serve", openAIEnv(t, fake, redistest.URL(t)))
	rec, _ := submitTo(t, guarded.url, "describe_image", `{"image_url":"`+images.URL+`/cat.png"}`)
	final, _ := await(t, guarded.url, rec.TaskID, 10*time.Second)
	require.Equal(t, "FAILURE", final.Status)
	require.Equal(t, "invalid_input", final.Error.Code)
	require.Equal(t, "refused: the image URL does not lead to a public address", final.Error.Message,
		"a fixed reason: the resolved address is for the log only")
	require.Equal(t, 1, final.Attempts)
	require.Empty(t, fake.Calls())

	// With FETCH_ALLOW_PRIVATE (development), the same URL is fetched.
	env := openAIEnv(t, fake, redistest.URL(t))
	env["FETCH_ALLOW_PRIVATE"] = "true"
	open := start(t, "serve", env)
	rec, _ = submitTo(t, open.url, "describe_image", `{"image_url":"`+images.URL+`/cat.png"}`)
	final, _ = await(t, open.url, rec.TaskID, 10*time.Second)
	require.Equal(t, "SUCCESS", final.Status, "%+v", final.Error)
	require.Equal(t, "echo: Describe this image.", final.Result.Text)
}

func TestDescribeImageRejectsBadImagesAtSubmit(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	env := openAIEnv(t, fake, redistest.URL(t))
	env["MAX_UPLOAD_BYTES"] = "2048"
	s := start(t, "serve", env)
	post := func(body string) (int, string) {
		res, err := http.Post(s.url+"/background/describe_image", "application/json", strings.NewReader(body))
		require.NoError(t, err)
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	html := "data:image/png;base64," + base64.StdEncoding.EncodeToString([]byte("<html><body>hi</body></html>"))
	status, body := post(`{"image_url":"` + html + `"}`)
	require.Equal(t, http.StatusUnsupportedMediaType, status, body)
	require.Contains(t, body, "image/png, image/jpeg")

	big := "data:image/png;base64," + base64.StdEncoding.EncodeToString(append(append([]byte{}, providertest.PNG1x1...), make([]byte, 4096)...))
	status, body = post(`{"image_url":"` + big + `"}`)
	require.Equal(t, http.StatusRequestEntityTooLarge, status, body)

	status, body = post(`{"image_url":"data:image/png,notbase64"}`)
	require.Equal(t, http.StatusUnprocessableEntity, status, body)
}

func TestEmbedThroughOllama(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOllamaFake()
	t.Cleanup(fake.Close)
	s := start(t, "serve", map[string]string{"REDIS_URL": redistest.URL(t), "LLM_PROVIDER": "ollama", "OLLAMA_BASE_URL": fake.URL()})
	rec, _ := submitTo(t, s.url, "embed", `{"input":["kucing","anjing"]}`)
	await(t, s.url, rec.TaskID, 10*time.Second)
	var final struct {
		Status string `json:"status"`
		Result struct {
			Vectors    [][]float64 `json:"vectors"`
			Dimensions int         `json:"dimensions"`
			Provider   string      `json:"provider"`
		} `json:"result"`
	}
	getJSON(t, s.url+"/background/tasks/"+rec.TaskID, &final)
	require.Equal(t, "SUCCESS", final.Status)
	require.Equal(t, "ollama", final.Result.Provider)
	require.Equal(t, 8, final.Result.Dimensions)
	require.Equal(t, [][]float64{providertest.Vector(0, "kucing", 8), providertest.Vector(1, "anjing", 8)}, final.Result.Vectors)
	require.Equal(t, "nomic-embed-text", fake.EmbedCalls()[0].Model)
}

func TestDescribeImageUpload(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	env := openAIEnv(t, fake, redistest.URL(t))
	env["MAX_UPLOAD_BYTES"] = "4096"
	s := start(t, "serve", env)
	form := func(fields map[string]string, fileField string, file []byte) (int, []byte) {
		var buf bytes.Buffer
		w := multipart.NewWriter(&buf)
		for k, v := range fields {
			require.NoError(t, w.WriteField(k, v))
		}
		if file != nil {
			fw, err := w.CreateFormFile(fileField, "photo.png")
			require.NoError(t, err)
			_, _ = fw.Write(file)
		}
		require.NoError(t, w.Close())
		res, err := http.Post(s.url+"/background/describe_image", w.FormDataContentType(), &buf)
		require.NoError(t, err)
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, body
	}

	status, body := form(map[string]string{"prompt": "What is it?", "max_tokens": "30"}, "image", providertest.PNG1x1)
	require.Equal(t, http.StatusAccepted, status, "%s", body)
	var rec record
	require.NoError(t, json.Unmarshal(body, &rec))
	final, _ := await(t, s.url, rec.TaskID, 10*time.Second)
	require.Equal(t, "SUCCESS", final.Status)
	require.Equal(t, "echo: What is it?", final.Result.Text)
	require.Equal(t, [][]byte{providertest.PNG1x1}, fake.Calls()[0].Images)
	require.Equal(t, 30, *fake.Calls()[0].MaxTokens)

	status, body = form(nil, "image", []byte("%PDF-1.7 not an image"))
	require.Equal(t, http.StatusUnsupportedMediaType, status, "%s", body)
	status, body = form(nil, "image", append(append([]byte{}, providertest.PNG1x1...), make([]byte, 8192)...))
	require.Equal(t, http.StatusRequestEntityTooLarge, status, "%s", body)
	status, body = form(nil, "picture", providertest.PNG1x1)
	require.Equal(t, http.StatusUnprocessableEntity, status, "%s", body)
	status, body = form(map[string]string{"max_tokens": "lots"}, "image", providertest.PNG1x1)
	require.Equal(t, http.StatusUnprocessableEntity, status, "%s", body)
	require.Contains(t, string(body), "body.max_tokens")
}

// An image sent inline in messages travels by reference, as an upload
// does: while the task waits and runs no Redis value holds its bytes; the
// provider gets them; once the task ends the stored copy is gone.
func TestImagesInMessagesTravelByReference(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAIFake(providertest.WithDelay(800 * time.Millisecond))
	t.Cleanup(fake.Close)
	redisURL := redistest.URL(t)
	env := openAIEnv(t, fake, redisURL)
	s := start(t, "serve", env)
	img := append(append([]byte{}, providertest.PNG1x1...), bytes.Repeat([]byte("SIGANTENG"), 4096)...)
	encoded := base64.StdEncoding.EncodeToString(img)
	body := `{"messages":[{"role":"user","content":[{"type":"text","text":"What is it?"},` +
		`{"type":"image_url","image_url":{"url":"data:image/png;base64,` + encoded + `"}}]}]}`
	rec, res := submit(t, s.url, body)
	require.Equal(t, http.StatusAccepted, res.StatusCode)

	require.Eventually(t, func() bool { return get(t, s.url, rec.TaskID).Status == "STARTED" }, 5*time.Second, 10*time.Millisecond)
	rdb := redistest.Client(t, redisURL)
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	needle := encoded[len(encoded)/2 : len(encoded)/2+64]
	for _, k := range keys {
		var values []string
		switch rdb.Type(ctx, k).Val() {
		case "hash":
			for _, v := range rdb.HGetAll(ctx, k).Val() {
				values = append(values, v)
			}
		case "string":
			values = append(values, rdb.Get(ctx, k).Val())
		case "list":
			values = rdb.LRange(ctx, k, 0, -1).Val()
		}
		for _, v := range values {
			require.NotContains(t, v, needle, "Redis key %s holds the image's bytes", k)
			require.NotContains(t, v, string(img[len(img)/2:len(img)/2+64]))
		}
	}
	stored, err := filepath.Glob(filepath.Join(env["ARTIFACT_DIR"], rec.TaskID+"-image-*"))
	require.NoError(t, err)
	require.Len(t, stored, 1, "the image waits in the artifact store")

	final, _ := await(t, s.url, rec.TaskID, 10*time.Second)
	require.Equal(t, "SUCCESS", final.Status)
	require.Equal(t, [][]byte{img}, fake.Calls()[0].Images, "the provider got the image inline")
	require.Eventually(t, func() bool {
		left, _ := filepath.Glob(filepath.Join(env["ARTIFACT_DIR"], rec.TaskID+"-image-*"))
		return len(left) == 0
	}, 5*time.Second, 20*time.Millisecond, "the stored copy goes once the task ends")

	// What is not an image is refused at submit, naming messages.
	bad := `{"messages":[{"role":"user","content":[{"type":"text","text":"?"},` +
		`{"type":"image_url","image_url":{"url":"data:image/png;base64,` + base64.StdEncoding.EncodeToString([]byte("%PDF-1.7")) + `"}}]}]}`
	for _, path := range []string{"/background/generate_text", "/generate_text"} {
		res, answer := rawPost(t, s.url+path, bad)
		require.Equal(t, http.StatusUnsupportedMediaType, res.StatusCode, "%s: %s", path, answer)
		require.Contains(t, answer, `"location":"body.messages"`)
	}
}
