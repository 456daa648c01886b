// Package fetch downloads untrusted URLs (images named by clients) without
// letting them reach the server's own network: server-side request forgery
// is refused where it cannot be dodged, at connect time, after DNS.
package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// ErrRefused is wrapped by every refusal, so callers can tell a refused URL
// (the client's fault) from a failed download.
var ErrRefused = errors.New("fetch: refused")

// ErrNotPublic is wrapped, with ErrRefused, by refusals of an address that
// is not public. Its detail (the address, the range) is for logs only: told
// to a client it would map the inside of the network.
var ErrNotPublic = errors.New("not a public address")

// Config bounds what a Client fetches.
type Config struct {
	MaxBytes     int64         // larger answers are refused
	Timeout      time.Duration // for the whole download
	MaxRedirects int           // each one is checked like the first
	// Accept lists the media types allowed, as sniffed from the bytes
	// (never taken from the server's Content-Type).
	Accept []string
	// AllowPrivate admits loopback and private addresses, for development
	// against local servers. Cloud metadata addresses stay refused.
	AllowPrivate bool
}

// Client fetches URLs under a Config.
type Client struct {
	cfg    Config
	client *http.Client
	allow  func(netip.Addr) error
}

// New returns a Client.
func New(cfg Config) *Client {
	allow := publicOnly
	if cfg.AllowPrivate {
		allow = notMetadata
	}
	return newWithPolicy(cfg, allow)
}

func newWithPolicy(cfg Config, allow func(netip.Addr) error) *Client {
	c := &Client{cfg: cfg, allow: allow}
	dialer := &net.Dialer{Timeout: 10 * time.Second, Control: c.control}
	transport := &http.Transport{
		Proxy:                 nil, // a proxy would connect for us, past the address check
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: cfg.Timeout,
		MaxIdleConns:          16,
		IdleConnTimeout:       30 * time.Second,
	}
	c.client = &http.Client{Transport: transport, CheckRedirect: c.checkRedirect}
	return c
}

// Result is a fetched body and its sniffed media type.
type Result struct {
	Body        []byte
	ContentType string
}

// Get downloads rawURL. Refusals wrap ErrRefused and say why.
func (c *Client) Get(ctx context.Context, rawURL string) (Result, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return Result{}, fmt.Errorf("%w: not a URL", ErrRefused)
	}
	if err := checkURL(u); err != nil {
		return Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	req.Header.Set("User-Agent", "SIGANTENG-fetch/1")
	res, err := c.client.Do(req)
	if err != nil {
		if errors.Is(err, ErrRefused) {
			return Result{}, unwrapRefusal(err)
		}
		return Result{}, fmt.Errorf("fetch: %s: %w", u.Host, transportError(err))
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return Result{}, &StatusError{Host: u.Host, Status: res.StatusCode}
	}
	if res.ContentLength > c.cfg.MaxBytes {
		return Result{}, fmt.Errorf("%w: the answer has %d bytes, more than the limit of %d", ErrRefused, res.ContentLength, c.cfg.MaxBytes)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, c.cfg.MaxBytes+1))
	if err != nil {
		return Result{}, fmt.Errorf("fetch: %s: %w", u.Host, transportError(err))
	}
	if int64(len(body)) > c.cfg.MaxBytes {
		return Result{}, fmt.Errorf("%w: the answer is larger than the limit of %d bytes", ErrRefused, c.cfg.MaxBytes)
	}
	kind := Sniff(body)
	if !accepted(kind, c.cfg.Accept) {
		return Result{}, fmt.Errorf("%w: the content is %s; accepted: %s", ErrRefused, kind, strings.Join(c.cfg.Accept, ", "))
	}
	return Result{Body: body, ContentType: kind}, nil
}

// Post sends body to rawURL with header and returns the answer's status. It
// follows no redirect (a 3xx is returned as it is) and reads at most a
// little of the answer. Refusals wrap ErrRefused.
func (c *Client) Post(ctx context.Context, rawURL string, header http.Header, body []byte) (int, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return 0, fmt.Errorf("%w: not a URL", ErrRefused)
	}
	if err := checkURL(u); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	req.Header = header.Clone()
	client := *c.client
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	res, err := client.Do(req)
	if err != nil {
		if errors.Is(err, ErrRefused) {
			return 0, unwrapRefusal(err)
		}
		return 0, fmt.Errorf("fetch: %s: %w", u.Host, transportError(err))
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10)) // lets the connection be reused
	return res.StatusCode, nil
}

// StatusError is an answer other than 200.
type StatusError struct {
	Host   string
	Status int
}

func (e *StatusError) Error() string { return fmt.Sprintf("fetch: %s answered %d", e.Host, e.Status) }

// Sniff names the media type of b from its bytes.
func Sniff(b []byte) string {
	kind := http.DetectContentType(b)
	if i := strings.IndexByte(kind, ';'); i >= 0 {
		kind = kind[:i]
	}
	return kind
}

func accepted(kind string, list []string) bool {
	for _, a := range list {
		if kind == a {
			return true
		}
	}
	return false
}

func checkURL(u *url.URL) error {
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%w: only http and https URLs are fetched, not %q", ErrRefused, u.Scheme)
	}
	if u.Host == "" {
		return fmt.Errorf("%w: the URL has no host", ErrRefused)
	}
	if u.User != nil {
		return fmt.Errorf("%w: URLs with credentials are not fetched", ErrRefused)
	}
	return nil
}

func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > c.cfg.MaxRedirects {
		return fmt.Errorf("%w: more than %d redirects", ErrRefused, c.cfg.MaxRedirects)
	}
	return checkURL(req.URL) // the address is checked again when it is dialled
}

// control runs after DNS resolution, just before connect: address is the IP
// that will really be used, so a name that resolves (or re-resolves) to an
// internal address is refused.
func (c *Client) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: unreadable address %q", ErrRefused, address)
	}
	return c.allow(ap.Addr().Unmap())
}

// metadata are the cloud instance metadata endpoints.
var metadata = []netip.Addr{
	netip.MustParseAddr("169.254.169.254"), // AWS, GCP, Azure, OpenStack
	netip.MustParseAddr("169.254.170.2"),   // AWS ECS task metadata
	netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud
	netip.MustParseAddr("fd00:ec2::254"),   // AWS over IPv6
}

// reserved are ranges that are not public Internet, beyond what netip's
// predicates cover, and IPv6 ranges that embed an IPv4 address.
var reserved = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("::/96"),          // IPv4-compatible IPv6 (deprecated): embeds any IPv4
	netip.MustParsePrefix("64:ff9b::/96"),   // NAT64: reaches any IPv4, private ones too
	netip.MustParsePrefix("64:ff9b:1::/48"), // local NAT64
	netip.MustParsePrefix("2002::/16"),      // 6to4
	netip.MustParsePrefix("2001::/32"),      // Teredo
	netip.MustParsePrefix("100::/64"),       // discard
	netip.MustParsePrefix("2001:db8::/32"),  // documentation
}

func notMetadata(a netip.Addr) error {
	for _, m := range metadata {
		if a == m {
			return fmt.Errorf("%w: %w: %s is a cloud metadata address", ErrRefused, ErrNotPublic, a)
		}
	}
	return nil
}

// publicOnly admits public unicast addresses only.
func publicOnly(a netip.Addr) error {
	if err := notMetadata(a); err != nil {
		return err
	}
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() || a == netip.IPv4Unspecified() ||
		a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return fmt.Errorf("%w: %w: %s", ErrRefused, ErrNotPublic, a)
	}
	for _, p := range reserved {
		if p.Contains(a) {
			return fmt.Errorf("%w: %w: %s is in the reserved range %s", ErrRefused, ErrNotPublic, a, p)
		}
	}
	return nil
}

// unwrapRefusal drops the URL error's wrapping, which repeats the URL.
func unwrapRefusal(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		var oe *net.OpError
		if errors.As(ue.Err, &oe) {
			return oe.Err
		}
		return ue.Err
	}
	return err
}

func transportError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
