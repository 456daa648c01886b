package fetch

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// png1x1 is a 1×1 PNG.
var png1x1, _ = base64.StdEncoding.DecodeString("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=")

var imageConfig = Config{MaxBytes: 1 << 20, Timeout: 2 * time.Second, MaxRedirects: 3,
	Accept: []string{"image/png", "image/jpeg", "image/gif", "image/webp"}}

func serve(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

// onlyLoopback1 admits 127.0.0.1 and refuses every other address, so tests
// can show a refusal on a second loopback address (127.0.0.2) without
// sending anything off this machine.
func onlyLoopback1(a netip.Addr) error {
	if a == netip.MustParseAddr("127.0.0.1") {
		return nil
	}
	return publicOnly(a)
}

func TestFetchesAnImage(t *testing.T) {
	t.Parallel()
	s := serve(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream") // the header is not trusted either way
		_, _ = w.Write(png1x1)
	})
	cfg := imageConfig
	cfg.AllowPrivate = true
	res, err := New(cfg).Get(context.Background(), s.URL+"/cat.png")
	require.NoError(t, err)
	require.Equal(t, "image/png", res.ContentType)
	require.Equal(t, png1x1, res.Body)
}

func TestRefusesInternalAddressesByDefault(t *testing.T) {
	t.Parallel()
	s := serve(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(png1x1) })
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(s.URL, "http://"))
	c := New(imageConfig)
	for _, u := range []string{
		s.URL,                               // 127.0.0.1
		"http://localhost:" + port,          // a name that resolves to loopback
		"http://[::1]:" + port,              // IPv6 loopback
		"http://[::ffff:127.0.0.1]:" + port, // IPv4-mapped loopback
	} {
		_, err := c.Get(context.Background(), u)
		require.ErrorIs(t, err, ErrRefused, u)
	}
}

func TestAddressPolicy(t *testing.T) {
	t.Parallel()
	for _, a := range []string{
		"127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "169.254.1.1", "100.64.0.1",
		"0.0.0.0", "255.255.255.255", "224.0.0.1", "::1", "::", "fe80::1", "fc00::1", "fd00:ec2::254",
		"64:ff9b::a00:1", "2002:a00:1::", "100.100.100.200",
		"::7f00:1", "::a00:1", "::a9fe:a9fe", // IPv4-compatible: 127.0.0.1, 10.0.0.1, 169.254.169.254
	} {
		require.ErrorIs(t, publicOnly(netip.MustParseAddr(a)), ErrRefused, a)
		require.ErrorIs(t, publicOnly(netip.MustParseAddr(a)), ErrNotPublic, a)
	}
	for _, a := range []string{"8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "151.101.1.69"} {
		require.NoError(t, publicOnly(netip.MustParseAddr(a)), a)
	}
	// The development setting admits private addresses, never metadata.
	require.NoError(t, notMetadata(netip.MustParseAddr("10.1.2.3")))
	require.ErrorIs(t, notMetadata(netip.MustParseAddr("169.254.169.254")), ErrRefused)
	// Mapped forms are unmapped before the check.
	c := New(imageConfig)
	require.ErrorIs(t, c.control("tcp6", "[::ffff:169.254.169.254]:80", nil), ErrRefused)
	require.ErrorIs(t, c.control("tcp6", "[::ffff:10.0.0.1]:80", nil), ErrRefused)
}

func TestRedirectsAreCheckedAgain(t *testing.T) {
	t.Parallel()
	inner, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no second loopback address here: %v", err)
	}
	innerSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(png1x1) })}
	go func() { _ = innerSrv.Serve(inner) }()
	t.Cleanup(func() { _ = innerSrv.Close() })

	outer := serve(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/to-internal":
			http.Redirect(w, r, "http://"+inner.Addr().String()+"/secret", http.StatusFound)
		case "/to-file":
			http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case "/to-ok":
			http.Redirect(w, r, "/ok", http.StatusMovedPermanently)
		default:
			_, _ = w.Write(png1x1)
		}
	})
	c := newWithPolicy(imageConfig, onlyLoopback1)
	_, err = c.Get(context.Background(), outer.URL+"/to-ok")
	require.NoError(t, err, "a redirect to an allowed address is followed")
	for _, path := range []string{"/to-internal", "/to-file", "/loop"} {
		_, err := c.Get(context.Background(), outer.URL+path)
		require.ErrorIs(t, err, ErrRefused, path)
	}
	// Directly, too: the policy is applied to every connection.
	_, err = c.Get(context.Background(), "http://"+inner.Addr().String()+"/secret")
	require.ErrorIs(t, err, ErrRefused)
}

func TestSchemesAndCredentials(t *testing.T) {
	t.Parallel()
	c := New(imageConfig)
	for _, u := range []string{"file:///etc/passwd", "gopher://x", "ftp://example.com/a.png", "//example.com/a.png",
		"http://user:pass@example.com/a.png", "not a url\x7f"} {
		_, err := c.Get(context.Background(), u)
		require.ErrorIs(t, err, ErrRefused, u)
	}
}

func TestSizeIsBounded(t *testing.T) {
	t.Parallel()
	big := append(append([]byte{}, png1x1...), bytes.Repeat([]byte{0}, 2<<20)...)
	s := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/chunked" {
			w.(http.Flusher).Flush() // no Content-Length
		}
		_, _ = w.Write(big)
	})
	c := newWithPolicy(imageConfig, onlyLoopback1)
	for _, path := range []string{"/sized", "/chunked"} {
		_, err := c.Get(context.Background(), s.URL+path)
		require.ErrorIs(t, err, ErrRefused, path)
		require.ErrorContains(t, err, "limit", path)
	}
}

func TestContentIsSniffedNotBelieved(t *testing.T) {
	t.Parallel()
	s := serve(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		_, _ = fmt.Fprint(w, "<html><body>not an image</body></html>")
	})
	_, err := newWithPolicy(imageConfig, onlyLoopback1).Get(context.Background(), s.URL)
	require.ErrorIs(t, err, ErrRefused)
	require.ErrorContains(t, err, "text/html")
}

func TestTimeIsBounded(t *testing.T) {
	t.Parallel()
	s := serve(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	cfg := imageConfig
	cfg.Timeout = 200 * time.Millisecond
	start := time.Now()
	_, err := newWithPolicy(cfg, onlyLoopback1).Get(context.Background(), s.URL)
	require.Error(t, err)
	require.Less(t, time.Since(start), 2*time.Second)
}

func TestErrorAnswers(t *testing.T) {
	t.Parallel()
	s := serve(t, func(w http.ResponseWriter, _ *http.Request) { http.NotFound(w, nil) })
	_, err := newWithPolicy(imageConfig, onlyLoopback1).Get(context.Background(), s.URL)
	require.ErrorContains(t, err, "404")
	require.NotErrorIs(t, err, ErrRefused)
}
