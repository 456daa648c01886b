package auth_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/auth"
	"github.com/siganteng/siganteng/internal/redistest"
)

func TestKeysParseAndChecksumsCatchTypos(t *testing.T) {
	t.Parallel()
	raw, key, err := auth.NewKey()
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(raw, "sgk_"))
	require.Len(t, raw, 54)
	require.Equal(t, raw[:16], key.ID)
	again, err := auth.ParseKey(raw)
	require.NoError(t, err)
	require.Equal(t, key, again)

	other, _, err := auth.NewKey()
	require.NoError(t, err)
	require.NotEqual(t, raw, other)

	// One changed character anywhere fails the checksum.
	for i := 4; i < len(raw); i++ {
		c := byte('a')
		if raw[i] == 'a' {
			c = 'b'
		}
		typo := raw[:i] + string(c) + raw[i+1:]
		_, err := auth.ParseKey(typo)
		require.ErrorIs(t, err, auth.ErrMalformed, "position %d", i)
	}
	for _, bad := range []string{"", "sgk_", raw[:len(raw)-1], raw + "x", "Bearer " + raw, strings.Replace(raw, "sgk_", "sgx_", 1), raw[:20] + "-" + raw[21:]} {
		_, err := auth.ParseKey(bad)
		require.ErrorIs(t, err, auth.ErrMalformed, bad)
	}
}

func FuzzParseKey(f *testing.F) {
	raw, _, _ := auth.NewKey()
	f.Add(raw)
	f.Add("sgk_000000000000000000000000000000000000000000000000")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := auth.ParseKey(s)
		if err != nil {
			return
		}
		// Whatever parses is a key's shape: the prefix, the length, and an
		// id that is the key's start.
		if !strings.HasPrefix(s, auth.KeyPrefix) || len(s) != 54 || !strings.HasPrefix(s, k.ID) {
			t.Fatalf("parsed %q as %+v", s, k)
		}
	})
}

func TestStoreCreatesAuthenticatesAndRevokes(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t, redistest.URL(t))
	s := auth.NewStore(rdb)
	ctx := context.Background()

	any, err := s.Any(ctx)
	require.NoError(t, err)
	require.False(t, any)

	raw, rec, err := s.Create(ctx, "app", auth.Settings{RequestsPerSecond: 7, MaxUnfinished: 9, MaxSync: 4, MaxWaiting: 5, ShareWeight: 3})
	require.NoError(t, err)
	_, admRec, err := s.Create(ctx, "ops", auth.Settings{Admin: true})
	require.NoError(t, err)

	caller, err := s.Authenticate(ctx, raw)
	require.NoError(t, err)
	require.Equal(t, auth.Caller{KeyID: rec.ID, Name: "app", RequestsPerSecond: 7, MaxUnfinished: 9, MaxSync: 4, MaxWaiting: 5, ShareWeight: 3}, caller)
	require.Equal(t, 3, caller.Weight())

	// Nothing but a hash is stored.
	vals, err := rdb.HGetAll(ctx, "{siganteng}:apikey:"+rec.ID).Result()
	require.NoError(t, err)
	for _, v := range vals {
		require.NotContains(t, v, raw[16:], "the secret part is not stored")
	}

	// A well-formed key that was never made is invalid.
	forged, _, err := auth.NewKey()
	require.NoError(t, err)
	_, err = s.Authenticate(ctx, forged)
	require.ErrorIs(t, err, auth.ErrInvalid)
	_, err = s.Authenticate(ctx, "nope")
	require.ErrorIs(t, err, auth.ErrMalformed)

	list, err := s.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 2)
	require.Equal(t, "app", list[0].Name)
	require.True(t, list[1].Admin)
	require.Equal(t, admRec.ID, list[1].ID)

	require.NoError(t, s.Revoke(ctx, rec.ID))
	_, err = s.Authenticate(ctx, raw)
	require.ErrorIs(t, err, auth.ErrInvalid, "this instance forgets the key at once")
	other := auth.NewStore(rdb)
	_, err = other.Authenticate(ctx, raw)
	require.ErrorIs(t, err, auth.ErrInvalid, "and so does any instance reading afresh")
	require.ErrorIs(t, s.Revoke(ctx, "sgk_doesnotexist"), auth.ErrNotFound)

	list, err = s.List(ctx)
	require.NoError(t, err)
	require.NotNil(t, list[0].RevokedAt, "revoked keys stay listed")
}

// A context without a caller has no rights: work that is not a request's
// must say it acts as System.
func TestNoCallerMeansNoRights(t *testing.T) {
	t.Parallel()
	nobody := auth.FromContext(context.Background())
	require.False(t, nobody.Admin)
	require.True(t, nobody.Anonymous())
	require.False(t, nobody.CanSee(""), "not even the tasks of an open API")
	require.False(t, nobody.CanSee("k1"))
	system := auth.FromContext(auth.WithCaller(context.Background(), auth.System))
	require.True(t, system.CanSee("k1"), "System is given explicitly, and sees everything")
	tenant := auth.Caller{KeyID: "k1"}
	require.True(t, tenant.CanSee("k1"))
	require.False(t, tenant.CanSee(""), "an open API's tasks are an admin's only")
}
