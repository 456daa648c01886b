package fetch_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/fetch"
)

func TestAPoolBoundsDownloadsInAllAndPerOwner(t *testing.T) {
	t.Parallel()
	p := fetch.NewPool(3, 2)
	a1, ok := p.TryTake("a")
	require.True(t, ok)
	_, ok = p.TryTake("a")
	require.True(t, ok)
	_, ok = p.TryTake("a")
	require.False(t, ok, "a holds its part")
	b1, ok := p.TryTake("b")
	require.True(t, ok, "b still finds room")
	_, ok = p.TryTake("c")
	require.False(t, ok, "the pool is full")
	all, own := p.InUse("a")
	require.Equal(t, 3, all)
	require.Equal(t, 2, own)

	a1()
	a1() // twice is once
	all, _ = p.InUse("a")
	require.Equal(t, 2, all)
	c, ok := p.TryTake("c")
	require.True(t, ok)
	c()
	b1()
}

func TestTakeWaitsForRoomUntilItsContextEnds(t *testing.T) {
	t.Parallel()
	p := fetch.NewPool(1, 1)
	held, ok := p.TryTake("a")
	require.True(t, ok)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := p.Take(ctx, "b")
	require.ErrorIs(t, err, context.DeadlineExceeded)

	got := make(chan error, 1)
	go func() {
		release, err := p.Take(context.Background(), "b")
		if err == nil {
			release()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("took a place while none was free: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	held()
	select {
	case err := <-got:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("a freed place was not taken")
	}
}
