package httpapi_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/auth"
	"github.com/siganteng/siganteng/internal/httpapi"
	"github.com/siganteng/siganteng/internal/task"
)

// fakeKeys knows two keys, an admin's and a tenant's, and counts lookups:
// each one stands for a Redis read.
type fakeKeys struct {
	none    bool // no key exists
	lookups atomic.Int64
}

const (
	adminKey  = "sgk_admin"
	tenantKey = "sgk_tenant"
)

func (k *fakeKeys) Authenticate(_ context.Context, raw string) (auth.Caller, error) {
	k.lookups.Add(1)
	switch raw {
	case adminKey:
		return auth.Caller{KeyID: "k-admin", Name: "ops", Admin: true}, nil
	case tenantKey:
		return auth.Caller{KeyID: "k-tenant", Name: "alice"}, nil
	}
	return auth.Caller{}, auth.ErrInvalid
}

func (k *fakeKeys) Any(context.Context) (bool, error) {
	k.lookups.Add(1)
	return !k.none, nil
}

// guarded serves the API with keys, an operations handler that answers
// "ops" to whoever reaches it, and deps changed by edit.
func guarded(t *testing.T, keys *fakeKeys, edit func(*httpapi.Deps)) (*httptest.Server, *fakeTasks) {
	t.Helper()
	tasks := &fakeTasks{records: map[string]*task.Record{}, artifacts: map[string][]byte{}}
	deps := httpapi.Deps{
		Tasks: tasks, Ready: func(context.Context) error { return nil },
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Version: "test", MaxUploadBytes: 1 << 20,
		Auth: keys,
		Operations: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte("ops"))
		}),
	}
	if edit != nil {
		edit(&deps)
	}
	srv := httptest.NewServer(httpapi.New(deps))
	t.Cleanup(srv.Close)
	return srv, tasks
}

func send(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return res, string(raw)
}

func request(t *testing.T, method, url, key, contentType, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return req
}

// Finding 1: OPTIONS reached /metrics and the profiles with no key.
func TestOperationsRoutesAnswerAdminsOnlyWhateverTheMethod(t *testing.T) {
	t.Parallel()
	srv, _ := guarded(t, &fakeKeys{}, nil)
	paths := []string{"/metrics", "/debug/pprof/goroutine?debug=2", "/debug/pprof/heap", "/debug/pprof/profile?seconds=1",
		"/debug/pprof/trace?seconds=1", "/monitoring/", "/monitoring/api/queues"}
	for _, path := range paths {
		// The admin reaches it: the route is there to be attacked.
		res, body := send(t, request(t, http.MethodGet, srv.URL+path, adminKey, "", ""))
		require.Equal(t, http.StatusOK, res.StatusCode, "admin GET %s", path)
		require.Equal(t, "ops", body)
		for _, method := range []string{http.MethodOptions, http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
			res, body := send(t, request(t, method, srv.URL+path, "", "", ""))
			require.NotEqual(t, "ops", body, "%s %s without a key", method, path)
			require.Equal(t, http.StatusUnauthorized, res.StatusCode, "%s %s without a key", method, path)
			res, body = send(t, request(t, method, srv.URL+path, tenantKey, "", ""))
			require.NotEqual(t, "ops", body, "%s %s with a tenant's key", method, path)
			require.Contains(t, []int{http.StatusForbidden, http.StatusMethodNotAllowed}, res.StatusCode, "%s %s with a tenant's key", method, path)
		}
	}
	// Bound to their methods: an admin's OPTIONS or PUT reaches nothing.
	for _, method := range []string{http.MethodOptions, http.MethodPut} {
		res, body := send(t, request(t, method, srv.URL+"/metrics", adminKey, "", ""))
		require.Equal(t, http.StatusMethodNotAllowed, res.StatusCode, method)
		require.NotEqual(t, "ops", body)
	}
}

// A CORS preflight is answered by the CORS layer, and reaches nothing.
func TestPreflightIsAnsweredByTheCORSLayerOnly(t *testing.T) {
	t.Parallel()
	srv, _ := guarded(t, &fakeKeys{}, func(d *httpapi.Deps) { d.CORSOrigins = []string{"https://app.example.com"} })
	req := request(t, http.MethodOptions, srv.URL+"/metrics", "", "", "")
	req.Header.Set("Origin", "https://app.example.com")
	req.Header.Set("Access-Control-Request-Method", "GET")
	res, body := send(t, req)
	require.Equal(t, "https://app.example.com", res.Header.Get("Access-Control-Allow-Origin"))
	require.NotEqual(t, "ops", body)
}

// Finding 2, in the HTTP layer: with keys needed and none existing, every
// request is refused, saying how to make the first key.
func TestNoKeyYetRefusesEverything(t *testing.T) {
	t.Parallel()
	srv, tasks := guarded(t, &fakeKeys{none: true}, nil)
	for _, path := range []string{"/background/tasks", "/metrics", "/monitoring/"} {
		res, body := send(t, request(t, http.MethodGet, srv.URL+path, "", "", ""))
		require.Equal(t, http.StatusUnauthorized, res.StatusCode, path)
		require.Contains(t, body, "siganteng keys create", path)
	}
	res, _ := send(t, request(t, http.MethodPost, srv.URL+"/background/generate_text", "", "application/json", `{"prompt":"p"}`))
	require.Equal(t, http.StatusUnauthorized, res.StatusCode)
	require.Empty(t, tasks.got.Prompt, "nothing was submitted")
}

// Finding 4: a web page driving an open API.
func TestOpenAPIRefusesWhatAWebPageCanSend(t *testing.T) {
	t.Parallel()
	srv, tasks := guarded(t, &fakeKeys{none: true}, func(d *httpapi.Deps) {
		d.AuthPolicy = httpapi.AuthPolicy{Embedded: true, AllowedHosts: []string{"siganteng.test"}}
	})
	submit := srv.URL + "/background/generate_text"

	// What a local client sends works: the refusals below could have passed.
	res, body := send(t, request(t, http.MethodPost, submit, "", "application/json", `{"prompt":"from curl"}`))
	require.Equal(t, http.StatusAccepted, res.StatusCode, body)
	require.Equal(t, "from curl", tasks.got.Prompt)
	for _, host := range []string{"localhost", "localhost:8000", "127.0.0.2:9", "[::1]:8000", "siganteng.test"} {
		req := request(t, http.MethodGet, srv.URL+"/background/tasks", "", "", "")
		req.Host = host
		res, body := send(t, req)
		require.Equal(t, http.StatusOK, res.StatusCode, "%s: %s", host, body)
	}

	// DNS rebinding: the page's own name as Host.
	for _, host := range []string{"evil.example.com", "evil.example.com:8000", "127.0.0.1.evil.example", "10.0.0.1"} {
		req := request(t, http.MethodGet, srv.URL+"/background/tasks", "", "", "")
		req.Host = host
		res, body := send(t, req)
		require.Equal(t, http.StatusForbidden, res.StatusCode, "%s: %s", host, body)
		require.Contains(t, body, "ALLOWED_HOSTS")
	}
	req := request(t, http.MethodGet, srv.URL+"/healthz", "", "", "")
	req.Host = "10.1.2.3:8000" // a load balancer's probe
	res, _ = send(t, req)
	require.Equal(t, http.StatusOK, res.StatusCode)

	// "Simple" cross-origin requests: no preflight, so they must be refused
	// before they run.
	tasks.got = task.GenerateTextInput{}
	for _, tc := range []struct{ name, contentType, origin string }{
		{"JSON without a type", "", ""},
		{"JSON as text/plain", "text/plain", ""},
		{"form-encoded", "application/x-www-form-urlencoded", ""},
		{"JSON from a foreign page", "application/json", "https://evil.example"},
		{"the null origin", "application/json", "null"},
	} {
		req := request(t, http.MethodPost, submit, "", tc.contentType, `{"prompt":"from a page"}`)
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		res, body := send(t, req)
		require.Contains(t, []int{http.StatusForbidden, http.StatusUnsupportedMediaType}, res.StatusCode, "%s: %s", tc.name, body)
		require.Equal(t, "application/problem+json", res.Header.Get("Content-Type"), tc.name)
	}
	require.Empty(t, tasks.got.Prompt, "no page's request ran")

	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	fw, _ := mw.CreateFormFile("image", "x.png")
	_, _ = fw.Write([]byte("\x89PNG\r\n\x1a\n"))
	require.NoError(t, mw.Close())
	req = request(t, http.MethodPost, srv.URL+"/background/describe_image", "", mw.FormDataContentType(), form.String())
	req.Header.Set("Origin", "https://evil.example")
	res, body = send(t, req)
	require.Equal(t, http.StatusForbidden, res.StatusCode, body)

	// The docs page calls the API from its own origin.
	req = request(t, http.MethodPost, submit, "", "application/json", `{"prompt":"from /docs"}`)
	req.Header.Set("Origin", srv.URL)
	res, body = send(t, req)
	require.Equal(t, http.StatusAccepted, res.StatusCode, body)
}

func TestAllowedOriginsPassTheOriginCheck(t *testing.T) {
	t.Parallel()
	srv, tasks := guarded(t, &fakeKeys{}, func(d *httpapi.Deps) { d.CORSOrigins = []string{"https://app.example.com"} })
	req := request(t, http.MethodPost, srv.URL+"/background/generate_text", tenantKey, "application/json", `{"prompt":"from the app"}`)
	req.Header.Set("Origin", "https://app.example.com")
	res, body := send(t, req)
	require.Equal(t, http.StatusAccepted, res.StatusCode, body)
	require.Equal(t, "from the app", tasks.got.Prompt)
	req = request(t, http.MethodPost, srv.URL+"/background/generate_text", tenantKey, "application/json", `{"prompt":"p"}`)
	req.Header.Set("Origin", "https://other.example.com")
	res, _ = send(t, req)
	require.Equal(t, http.StatusForbidden, res.StatusCode, "a key does not make a foreign page's request acceptable")
}

// Finding 9: wrong keys cost a key-store read each, without limit.
func TestGuestFloodsAreRefusedBeforeTheKeyStore(t *testing.T) {
	t.Parallel()
	keys := &fakeKeys{}
	srv, _ := guarded(t, keys, func(d *httpapi.Deps) {
		d.GuestRateLimit = 5 // bursts of 10
		d.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	from := func(ip, key string) int {
		req := request(t, http.MethodGet, srv.URL+"/background/tasks", key, "", "")
		req.Header.Set("X-Forwarded-For", ip)
		res, _ := send(t, req)
		return res.StatusCode
	}
	counts := map[int]int{}
	for i := range 200 {
		counts[from("203.0.113.7", fmt.Sprintf("sgk_forged%04d", i))]++
	}
	require.Equal(t, 200, counts[http.StatusUnauthorized]+counts[http.StatusTooManyRequests], "%v", counts)
	require.LessOrEqual(t, counts[http.StatusUnauthorized], 12, "about the burst was looked up: %v", counts)
	require.GreaterOrEqual(t, counts[http.StatusTooManyRequests], 180, "%v", counts)
	require.LessOrEqual(t, keys.lookups.Load(), int64(12), "refusals past the burst read no key store")

	// Another client, with a valid key, is not held back by the flood.
	require.Equal(t, http.StatusOK, from("203.0.113.8", tenantKey))
	require.Equal(t, http.StatusOK, from("203.0.113.8", tenantKey))
}

// Finding 12: answers are never cached; problems do not echo the body.
func TestAnswersAreNotCachedAndProblemsDoNotEchoTheRequest(t *testing.T) {
	t.Parallel()
	srv, _ := guarded(t, &fakeKeys{}, nil)
	res, _ := send(t, request(t, http.MethodGet, srv.URL+"/background/tasks", tenantKey, "", ""))
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "no-store", res.Header.Get("Cache-Control"))
	res, _ = send(t, request(t, http.MethodGet, srv.URL+"/background/tasks", "", "", ""))
	require.Equal(t, "no-store", res.Header.Get("Cache-Control"), "refusals too")
	res, _ = send(t, request(t, http.MethodGet, srv.URL+"/openapi.json", "", "", ""))
	require.Empty(t, res.Header.Get("Cache-Control"), "the API's description may be cached")

	const secret = "sk-live-SECRET-IN-THE-BODY"
	for _, body := range []string{
		`{"prompt":"` + secret + `", broken`,                // 400: not JSON
		`{"prompt":"p","max_tokens":"` + secret + `"}`,      // 422: wrong type
		`{"prompt":"` + strings.Repeat(secret, 8000) + `"}`, // 422: too long
		`{"prompt":"p","priority":"` + secret + `"}`,        // 422: not in the enum
	} {
		res, raw := send(t, request(t, http.MethodPost, srv.URL+"/background/generate_text", tenantKey, "application/json", body))
		require.GreaterOrEqual(t, res.StatusCode, 400, raw)
		require.Less(t, res.StatusCode, 500, raw)
		require.NotContains(t, raw, "SECRET-IN-THE-BODY", "status %d", res.StatusCode)
	}
	res, raw := send(t, request(t, http.MethodPost, srv.URL+"/background/generate_text", tenantKey, "text/plain", `{"prompt":"`+secret+`"}`))
	require.Equal(t, http.StatusUnsupportedMediaType, res.StatusCode)
	require.NotContains(t, raw, "SECRET-IN-THE-BODY")
}
