package sealed_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/sealed"
)

func TestSealOpen(t *testing.T) {
	t.Parallel()
	box, err := sealed.New("whsec_one", "webhook url")
	require.NoError(t, err)
	url := "https://hooks.slack.com/services/T000/B000/XXXXSECRET?token=abc"
	s1, s2 := box.Seal(url), box.Seal(url)
	require.NotEqual(t, s1, s2, "a fresh nonce each time")
	require.NotContains(t, s1, "XXXXSECRET")
	require.NotContains(t, s1, "token")
	require.True(t, sealed.IsSealed(s1))
	got, err := box.Open(s1)
	require.NoError(t, err)
	require.Equal(t, url, got)

	plain, err := box.Open("https://old.example/hook")
	require.NoError(t, err, "values from before sealing pass as they are")
	require.Equal(t, "https://old.example/hook", plain)

	other, err := sealed.New("whsec_two", "webhook url")
	require.NoError(t, err)
	_, err = other.Open(s1)
	require.ErrorIs(t, err, sealed.ErrUnreadable, "another secret cannot open it")
	purpose, err := sealed.New("whsec_one", "something else")
	require.NoError(t, err)
	_, err = purpose.Open(s1)
	require.ErrorIs(t, err, sealed.ErrUnreadable, "another purpose is another key")
	_, err = box.Open(s1[:len(s1)-2] + strings.Repeat("A", 2))
	require.ErrorIs(t, err, sealed.ErrUnreadable, "tampering is caught")

	_, err = sealed.New("", "x")
	require.Error(t, err)
}
