package httpapi

import (
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestClientIPBelievesOnlyTrustedProxies(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}
	for _, tc := range []struct{ remote, xff, want string }{
		{"203.0.113.9:5000", "1.2.3.4", "203.0.113.9"},              // not a proxy: its header is ignored
		{"127.0.0.1:5000", "198.51.100.7", "198.51.100.7"},          // our proxy names the client
		{"10.1.2.3:5000", "6.6.6.6, 198.51.100.7", "198.51.100.7"},  // the client forged a first hop
		{"10.1.2.3:5000", "198.51.100.7, 10.9.9.9", "198.51.100.7"}, // two proxies of ours
		{"10.1.2.3:5000", "not-an-ip", "10.1.2.3"},
		{"10.1.2.3:5000", "", "10.1.2.3"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.remote
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		require.Equal(t, tc.want, clientIP(r, trusted), "%+v", tc)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "127.0.0.1:1"
	r.Header.Set("X-Forwarded-For", "198.51.100.7")
	require.Equal(t, "127.0.0.1", clientIP(r, nil), "no trusted proxies: no header is believed")
}
