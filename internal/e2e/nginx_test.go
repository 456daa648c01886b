package e2e_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider/providertest"
	"github.com/siganteng/siganteng/internal/redistest"
)

// nginxFront runs deploy/nginx/siganteng.conf, unchanged but for its listen
// ports, certificate paths and upstream servers, through a real nginx in
// front of upstreams, and returns its HTTPS and HTTP base URLs and a client
// that trusts its certificate.
func nginxFront(t *testing.T, upstreams ...string) (httpsURL, httpURL string, client *http.Client) {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin, err = exec.LookPath("/usr/sbin/nginx") // not on every user's PATH
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("nginx is not installed; .ci/run installs it")
		}
		t.Skip("nginx is not installed (apt-get install nginx)")
	}
	dir := t.TempDir()
	certPEM, keyPEM, pool := selfSigned(t)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cert.pem"), certPEM, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "key.pem"), keyPEM, 0o600))

	raw, err := os.ReadFile("../../deploy/nginx/siganteng.conf")
	require.NoError(t, err)
	conf := string(raw)
	httpsAddr, httpAddr := freeAddr(t), freeAddr(t)
	var servers strings.Builder
	for _, u := range upstreams {
		fmt.Fprintf(&servers, "    server %s;\n", strings.TrimPrefix(u, "http://"))
	}
	upstream, err := os.ReadFile("../../deploy/nginx/upstream.conf")
	require.NoError(t, err)
	const shipped = "    server 127.0.0.1:8001;\n    server 127.0.0.1:8002;\n"
	require.Contains(t, string(upstream), shipped)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "upstream.conf"), []byte(strings.Replace(string(upstream), shipped, servers.String(), 1)), 0o600))
	for old, repl := range map[string]string{
		"/etc/nginx/siganteng/upstream.conf": filepath.Join(dir, "upstream.conf"),
		"listen 80;":                         "listen " + httpAddr + ";",
		"listen 443 ssl;":                    "listen " + httpsAddr + " ssl;",
		"/etc/ssl/siganteng/fullchain.pem":   filepath.Join(dir, "cert.pem"),
		"/etc/ssl/siganteng/privkey.pem":     filepath.Join(dir, "key.pem"),
	} {
		require.Contains(t, conf, old, "the shipped file changed shape; update this test")
		conf = strings.ReplaceAll(conf, old, repl)
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "siganteng.conf"), []byte(conf), 0o600))
	main := fmt.Sprintf(`user root;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/siganteng.conf;
}
`, dir)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o600))
	out, err := exec.Command(bin, "-t", "-p", dir, "-c", filepath.Join(dir, "nginx.conf")).CombinedOutput()
	require.NoError(t, err, "nginx -t: %s", out)

	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-g", "daemon off;")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx: %s\n%s", stderr.String(), log)
		}
	})
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", httpsAddr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
	client = &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return "https://" + httpsAddr, "http://" + httpAddr, client
}

func selfSigned(t *testing.T) (certPEM, keyPEM []byte, pool *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), pool
}

func TestThroughNginx(t *testing.T) {
	t.Parallel()
	redisURL := redistest.URL(t)
	fake := providertest.NewOpenAIFake()
	t.Cleanup(fake.Close)
	env := openAIEnv(t, fake, redisURL)
	env["TRUSTED_PROXIES"] = "127.0.0.1"
	env["MAX_UPLOAD_BYTES"] = "10485760"
	apiA, apiB := start(t, "api", env), start(t, "api", env)
	start(t, "worker", env)
	base, plain, client := nginxFront(t, apiA.url, apiB.url)

	do := func(method, url, body string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(res.Body)
		return res, buf.Bytes()
	}

	// HTTP redirects to HTTPS.
	res, _ := do(http.MethodGet, plain+"/healthz", "")
	require.Equal(t, http.StatusMovedPermanently, res.StatusCode)
	require.True(t, strings.HasPrefix(res.Header.Get("Location"), "https://"), res.Header.Get("Location"))

	// HTTPS end to end: submit, poll, SUCCESS; the request id passes through.
	res, raw := do(http.MethodPost, base+"/background/generate_text", `{"prompt":"via nginx"}`)
	require.Equal(t, http.StatusAccepted, res.StatusCode, "%s", raw)
	require.NotEmpty(t, res.Header.Get("X-Request-ID"))
	require.Contains(t, res.Header.Get("Strict-Transport-Security"), "max-age=31536000", "HSTS")
	require.Equal(t, "no-store", res.Header.Get("Cache-Control"))
	var rec record
	require.NoError(t, json.Unmarshal(raw, &rec))
	require.Eventually(t, func() bool {
		_, raw := do(http.MethodGet, base+"/background/tasks/"+rec.TaskID, "")
		var got record
		return json.Unmarshal(raw, &got) == nil && got.Status == "SUCCESS"
	}, 10*time.Second, 20*time.Millisecond)

	// Both instances take requests (nginx's default round robin).
	for range 10 {
		res, _ := do(http.MethodGet, base+"/background/tasks/"+rec.TaskID, "")
		require.Equal(t, http.StatusOK, res.StatusCode)
	}
	require.Contains(t, apiA.logs.String(), `msg="http request"`)
	require.Contains(t, apiB.logs.String(), `msg="http request"`)
	require.Contains(t, apiA.logs.String()+apiB.logs.String(), "client=127.0.0.1", "the client address comes from X-Forwarded-For")

	// Server-sent events pass through as they happen.
	fake.Script(fake.TextReply("one two three four five six seven eight nine ten", "gpt-test", 3, 10))
	fake.SetStreamChunkDelay(60 * time.Millisecond)
	res, raw = do(http.MethodPost, base+"/background/generate_text", `{"prompt":"stream","stream":true}`)
	require.Equal(t, http.StatusAccepted, res.StatusCode, "%s", raw)
	require.NoError(t, json.Unmarshal(raw, &rec))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	events := followClient(t, ctx, client, base, rec.TaskID, "")
	var first, last time.Time
	for _, e := range events {
		if e.Kind == "delta" && first.IsZero() {
			first = e.At
		}
	}
	last = events[len(events)-1].At
	require.Equal(t, "SUCCESS", statusOf(t, events[len(events)-1]))
	require.False(t, first.IsZero(), "deltas came through")
	require.Greater(t, last.Sub(first), 300*time.Millisecond, "the first text arrived long before the end: not buffered")

	// The OpenAI-compatible front through nginx, with the official SDK: a
	// streamed chat is passed on piece by piece, not buffered.
	sdkClient := openai.NewClient(option.WithBaseURL(base+"/v1/"), option.WithAPIKey("sk-anything"),
		option.WithHTTPClient(client), option.WithMaxRetries(0))
	stream := sdkClient.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "gpt-test",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("a b c d e f g h")}})
	var firstPiece time.Time
	var text strings.Builder
	for stream.Next() {
		if piece := stream.Current().Choices; len(piece) > 0 && piece[0].Delta.Content != "" {
			if firstPiece.IsZero() {
				firstPiece = time.Now()
			}
			text.WriteString(piece[0].Delta.Content)
		}
	}
	require.NoError(t, stream.Err())
	require.Equal(t, "echo: a b c d e f g h", text.String())
	require.Greater(t, time.Since(firstPiece), 300*time.Millisecond, "the first piece arrived long before the end: not buffered")

	// An oversized body is refused by nginx with 413.
	res, _ = do(http.MethodPost, base+"/background/speech_to_text", strings.Repeat("x", 12<<20))
	require.Equal(t, http.StatusRequestEntityTooLarge, res.StatusCode)

	// A batch input file larger than an upload goes through to /v1/files.
	big := bytes.Repeat([]byte(`{"custom_id":"x","method":"POST","url":"/v1/embeddings","body":{"input":"padding padding"}}`+"\n"), (12<<20)/90)
	f, err := sdkClient.Files.New(ctx, openai.FileNewParams{File: openai.File(bytes.NewReader(big), "big.jsonl", "application/jsonl"), Purpose: openai.FilePurposeBatch})
	require.NoError(t, err, "a 12 MiB batch file passes nginx")
	require.EqualValues(t, len(big), f.Bytes)

	// A flood gets 429 from limit_req (20/s, bursts of 40), not 503.
	limited := 0
	for range 120 {
		res, _ := do(http.MethodGet, base+"/healthz", "")
		if res.StatusCode == http.StatusTooManyRequests {
			limited++
		} else {
			require.Equal(t, http.StatusOK, res.StatusCode)
		}
	}
	require.NotZero(t, limited)
}
