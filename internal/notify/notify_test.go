package notify_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/notify"
	"github.com/siganteng/siganteng/internal/redistest"
)

func TestListenersHearTheirTaskEnd(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t, redistest.URL(t))
	hub := notify.New(rdb, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { hub.Run(ctx); close(done) }()
	<-hub.Ready()

	a1, stopA1 := hub.Listen("a")
	a2, stopA2 := hub.Listen("a")
	defer stopA2()
	b, stopB := hub.Listen("b")
	defer stopB()

	require.NoError(t, rdb.Publish(ctx, notify.Channel, "a").Err())
	for _, ch := range []<-chan struct{}{a1, a2} {
		select {
		case <-ch:
		case <-time.After(2 * time.Second):
			t.Fatal("a listener for a did not hear it end")
		}
	}
	select {
	case <-b:
		t.Fatal("b heard of a")
	case <-time.After(100 * time.Millisecond):
	}

	stopA1()
	require.NoError(t, rdb.Publish(ctx, notify.Channel, "a").Err())
	select {
	case <-a1:
		t.Fatal("a stopped listener still hears")
	case <-a2:
	case <-time.After(2 * time.Second):
		t.Fatal("the remaining listener did not hear")
	}

	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return when its context ended")
	}
}
