package e2e_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider/providertest"
	"github.com/siganteng/siganteng/internal/redistest"
)

// TestImageHostsThatNeverAnswerHoldNoTaskSlots is issue 16's case: image
// URLs that never answer once took every worker slot and held another
// task behind them for the fetch timeout. Downloads now have a pool of
// their own; the tasks that find it full wait, PENDING, holding no slot.
func TestImageHostsThatNeverAnswerHoldNoTaskSlots(t *testing.T) {
	t.Parallel()
	silent := make(chan struct{})
	asked := make(chan struct{}, 64)
	host := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked <- struct{}{}
		select {
		case <-silent:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(host.Close)
	t.Cleanup(func() { close(silent) })
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	env := openAIEnv(t, fake, redistest.URL(t))
	for k, v := range map[string]string{"WORKER_CONCURRENCY": "4", "FETCH_CONCURRENCY": "2", "FETCH_PER_KEY": "2",
		"FETCH_ALLOW_PRIVATE": "true", "LOG_LEVEL": "warn"} {
		env[k] = v
	}
	s := start(t, "serve", env)

	var images []string
	for i := range 8 {
		rec, _ := submitTo(t, s.url, "describe_image", fmt.Sprintf(`{"image_url":"%s/%d.png"}`, host.URL, i))
		images = append(images, rec.TaskID)
	}
	for range 2 {
		select {
		case <-asked:
		case <-time.After(10 * time.Second):
			t.Fatal("the image host was not asked twice")
		}
	}
	// The pool is full: the other image tasks wait for it, and say so.
	require.Eventually(t, func() bool {
		waiting := 0
		for _, id := range images {
			if r := get(t, s.url, id); r.Status == "PENDING" && r.Waiting != nil && r.Waiting.Reason == "downloads" {
				waiting++
			}
		}
		return waiting >= 4
	}, 10*time.Second, 50*time.Millisecond, "image tasks past the pool wait for it")
	select {
	case <-asked:
		t.Fatal("a third download began while two were under way")
	default:
	}

	began := time.Now()
	rec, _ := submit(t, s.url, `{"prompt":"not behind the images"}`)
	final, _ := await(t, s.url, rec.TaskID, 10*time.Second)
	require.Equal(t, "SUCCESS", final.Status)
	require.Less(t, time.Since(began), 2*time.Second, "another task ran at once (the fetch timeout is 30 s)")
}
