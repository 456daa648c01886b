package store_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
)

func kinds(events []store.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.Kind
		if e.Kind == store.EventStatus {
			var st store.StatusEvent
			if json.Unmarshal(e.Data, &st) == nil {
				out[i] += ":" + string(st.Status)
			}
		}
	}
	return out
}

func TestEventsTellTheWholeStoryInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.create(t, "a")
	require.NoError(t, b.store.Started(b.ctx, "a", 1, b.now))
	require.NoError(t, b.store.Report(b.ctx, "a", 1, "Hello", &task.Progress{Done: 5, Unit: "characters"}, false))
	require.NoError(t, b.store.Retrying(b.ctx, "a", task.Failure{Code: task.FailureProviderRateLimited, Message: "429"}, b.now.Add(time.Second)))
	require.ErrorIs(t, b.store.Report(b.ctx, "a", 1, "late", nil, false), store.ErrNotRunning, "a retrying task takes no text")
	require.NoError(t, b.store.Started(b.ctx, "a", 2, b.now))
	require.ErrorIs(t, b.store.Report(b.ctx, "a", 1, "stale", nil, false), store.ErrNotRunning, "an old attempt takes no text")
	require.NoError(t, b.store.Report(b.ctx, "a", 2, "Hi", nil, false))
	require.NoError(t, b.store.Succeeded(b.ctx, "a", store.Success{Provider: "fake", Result: json.RawMessage(`{"text":"Hi"}`)}, b.now))

	events, err := b.store.Events(b.ctx, "a", "", 100)
	require.NoError(t, err)
	require.Equal(t, []string{"status:PENDING", "status:STARTED", "delta", "progress", "status:RETRY", "status:STARTED", "delta", "status:SUCCESS"}, kinds(events))
	require.True(t, events[len(events)-1].Terminal())
	require.False(t, events[1].Terminal())

	var d store.DeltaEvent
	require.NoError(t, json.Unmarshal(events[6].Data, &d))
	require.Equal(t, store.DeltaEvent{TaskID: "a", Attempt: 2, Text: "Hi"}, d)

	// Reading on from an event gives only what came after it.
	rest, err := b.store.Events(b.ctx, "a", events[4].ID, 100)
	require.NoError(t, err)
	require.Equal(t, []string{"status:STARTED", "delta", "status:SUCCESS"}, kinds(rest))

	// The progress is on the record until the next attempt starts.
	rec, err := b.store.Get(b.ctx, "a")
	require.NoError(t, err)
	require.Nil(t, rec.Progress, "attempt 2 started afresh")

	// The stream expires with the record.
	ttl, err := redisTTL(b, store.EventsPrefix+"a")
	require.NoError(t, err)
	require.InDelta(t, time.Hour.Seconds(), ttl.Seconds(), 5)
}

func TestReportSetsProgressOnTheRecord(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.create(t, "p")
	require.NoError(t, b.store.Started(b.ctx, "p", 1, b.now))
	require.NoError(t, b.store.Report(b.ctx, "p", 1, "", &task.Progress{Done: 40, Total: 100, Unit: "items", Ratio: 0.4}, false))
	rec, err := b.store.Get(b.ctx, "p")
	require.NoError(t, err)
	require.Equal(t, &task.Progress{Done: 40, Total: 100, Unit: "items", Ratio: 0.4}, rec.Progress)
}

func TestWebhookOutboxGetsTheEventsAskedFor(t *testing.T) {
	t.Parallel()
	b := setup(t)
	withHook := func(id string, events ...string) {
		require.NoError(t, b.store.Create(b.ctx, &task.Record{ID: id, Type: task.TypeGenerateText, Status: task.StatusPending, CreatedAt: b.now,
			WebhookURL: "https://hooks.example/x?token=s3cret", Webhook: &task.WebhookInfo{Events: events}}, store.Limits{}))
	}
	withHook("all", task.WebhookStart, task.WebhookProgress, task.WebhookCompleted)
	withHook("end", task.WebhookCompleted)
	b.create(t, "none")
	for _, id := range []string{"all", "end", "none"} {
		require.NoError(t, b.store.Started(b.ctx, id, 1, b.now))
		require.NoError(t, b.store.Report(b.ctx, id, 1, "x", &task.Progress{Done: 1, Unit: "characters"}, true))
		require.NoError(t, b.store.Report(b.ctx, id, 1, "y", &task.Progress{Done: 2, Unit: "characters"}, false)) // throttled
		require.NoError(t, b.store.Retrying(b.ctx, id, task.Failure{Code: task.FailureTimeout}, b.now))
		require.NoError(t, b.store.Started(b.ctx, id, 2, b.now)) // a retry's start is not "start"
		require.NoError(t, b.store.Failed(b.ctx, id, task.Failure{Code: task.FailureTimeout}, b.now))
	}
	var got []string
	for {
		due, ok, err := b.store.NextWebhook(b.ctx, time.Second)
		require.NoError(t, err)
		if !ok {
			break
		}
		got = append(got, due.TaskID+" "+due.Event)
		require.NotEmpty(t, due.EventID)
		require.NoError(t, b.store.WebhookQueued(b.ctx, due))
	}
	require.Equal(t, []string{"all start", "all progress", "all completed", "end completed"}, got)

	rec, err := b.store.Get(b.ctx, "all")
	require.NoError(t, err)
	require.Equal(t, "https://hooks.example/…", rec.Webhook.URL, "the path and query, which may hold a token, are not shown")
	require.Equal(t, "https://hooks.example/x?token=s3cret", rec.WebhookURL)
}

func TestWebhooksInFlightAreRequeued(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.store.Create(b.ctx, &task.Record{ID: "w", Type: task.TypeGenerateText, Status: task.StatusPending, CreatedAt: b.now,
		WebhookURL: "https://hooks.example/x", Webhook: &task.WebhookInfo{Events: []string{task.WebhookCompleted}}}, store.Limits{}))
	require.NoError(t, b.store.Revoked(b.ctx, "w", "cancelled", b.now))
	first, ok, err := b.store.NextWebhook(b.ctx, time.Second)
	require.NoError(t, err)
	require.True(t, ok)
	// The worker dies here, before queuing it.
	n, err := b.store.RequeueWebhooks(b.ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	again, ok, err := b.store.NextWebhook(b.ctx, time.Second)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, first.EventID, again.EventID)
}

func TestListNewestFirstWithFiltersAndCursor(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// 25 tasks, some in the same millisecond, alternating types.
	var ids []string
	for i := range 25 {
		id := fmt.Sprintf("t%02d", i)
		typ := task.TypeGenerateText
		if i%2 == 1 {
			typ = task.TypeEmbed
		}
		require.NoError(t, b.store.Create(b.ctx, &task.Record{ID: id, Type: typ, Status: task.StatusPending,
			CreatedAt: b.now.Add(time.Duration(i/3) * time.Millisecond)}, store.Limits{}))
		ids = append(ids, id)
	}
	require.NoError(t, b.store.Started(b.ctx, "t20", 1, b.now))
	require.NoError(t, b.store.Succeeded(b.ctx, "t20", store.Success{Provider: "fake", Result: json.RawMessage(`{}`)}, b.now))

	var seen []string
	cur := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10)
		page, err := b.store.List(b.ctx, store.ListQuery{Limit: 7, Cursor: cur})
		require.NoError(t, err)
		require.LessOrEqual(t, len(page.Tasks), 7)
		for _, r := range page.Tasks {
			seen = append(seen, r.ID)
		}
		if page.NextCursor == "" {
			break
		}
		cur = page.NextCursor
	}
	require.Len(t, seen, 25, "every task once: %v", seen)
	require.ElementsMatch(t, ids, seen)
	for i := 1; i < len(seen); i++ {
		require.Greater(t, seen[i-1], seen[i], "newest first (ids sort as creation here)")
	}

	page, err := b.store.List(b.ctx, store.ListQuery{Limit: 100, Type: task.TypeEmbed})
	require.NoError(t, err)
	require.Len(t, page.Tasks, 12)
	require.Empty(t, page.NextCursor)

	page, err = b.store.List(b.ctx, store.ListQuery{Limit: 100, Status: task.StatusSuccess})
	require.NoError(t, err)
	require.Len(t, page.Tasks, 1)
	require.Equal(t, "t20", page.Tasks[0].ID)

	_, err = b.store.List(b.ctx, store.ListQuery{Limit: 5, Cursor: "not-ours!"})
	require.Equal(t, task.EINVALID, task.CodeOf(err))
}

func TestListAndPruneDropExpiredRecords(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.create(t, "keep")
	b.create(t, "gone")
	require.NoError(t, b.store.Delete(b.ctx, "gone")) // the index entry goes too
	b.create(t, "expired")
	require.NoError(t, rawDel(b, store.KeyPrefix+"expired")) // as if RESULT_TTL had passed

	page, err := b.store.List(b.ctx, store.ListQuery{Limit: 10})
	require.NoError(t, err)
	require.Len(t, page.Tasks, 1)
	require.Equal(t, "keep", page.Tasks[0].ID)

	b.create(t, "expired2")
	require.NoError(t, rawDel(b, store.KeyPrefix+"expired2"))
	_, removed, err := b.store.PruneIndex(b.ctx, store.IndexKey, b.now, 0, 100)
	require.NoError(t, err)
	require.Zero(t, removed, "nothing younger than RESULT_TTL is looked at")
	next, removed, err := b.store.PruneIndex(b.ctx, store.IndexKey, b.now.Add(time.Hour+time.Millisecond), 0, 100)
	require.NoError(t, err)
	require.Equal(t, 1, removed)
	require.Zero(t, next)
	n, err := b.rdb.ZCard(b.ctx, store.IndexKey).Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
}

func TestReturnedWebhookGoesBackToTheOutbox(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.store.Create(b.ctx, &task.Record{ID: "r", Type: task.TypeGenerateText, Status: task.StatusPending, CreatedAt: b.now,
		WebhookURL: "https://hooks.example/x", Webhook: &task.WebhookInfo{Events: []string{task.WebhookCompleted}}}, store.Limits{}))
	require.NoError(t, b.store.Revoked(b.ctx, "r", "cancelled", b.now))
	due, ok, err := b.store.NextWebhook(b.ctx, time.Second)
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, b.store.ReturnWebhook(b.ctx, due))
	n, err := b.store.RequeueWebhooks(b.ctx)
	require.NoError(t, err)
	require.Zero(t, n, "nothing is left in flight")
	again, ok, err := b.store.NextWebhook(b.ctx, time.Second)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, due.EventID, again.EventID)
}

// A filtered page reads about as many records as it shows: each status and
// type has its own index, moved by the scripts that move a task.
func TestFilteredListingsReadWhatTheyShow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i := range 300 {
		id := fmt.Sprintf("done%03d", i)
		require.NoError(t, b.store.Create(b.ctx, &task.Record{ID: id, Type: task.TypeGenerateText, Status: task.StatusPending,
			CreatedAt: b.now.Add(time.Duration(i) * time.Millisecond), Owner: "k1"}, store.Limits{}))
		require.NoError(t, b.store.Started(b.ctx, id, 1, b.now))
		require.NoError(t, b.store.Succeeded(b.ctx, id, store.Success{Provider: "fake", Result: json.RawMessage(`{}`)}, b.now))
	}
	// The oldest tasks, behind 300 newer ones: a scan would read them all.
	for i, st := range []string{"RETRY", "FAILURE", "PENDING"} {
		id := "old-" + st
		require.NoError(t, b.store.Create(b.ctx, &task.Record{ID: id, Type: task.TypeEmbed, Status: task.StatusPending,
			CreatedAt: b.now.Add(-time.Duration(i+1) * time.Hour), Owner: "k1"}, store.Limits{}))
		switch st {
		case "RETRY":
			require.NoError(t, b.store.Started(b.ctx, id, 1, b.now))
			require.NoError(t, b.store.Retrying(b.ctx, id, task.Failure{Code: task.FailureTimeout}, b.now))
		case "FAILURE":
			require.NoError(t, b.store.Started(b.ctx, id, 1, b.now))
			require.NoError(t, b.store.Failed(b.ctx, id, task.Failure{Code: task.FailureTimeout}, b.now))
		}
	}
	for _, tc := range []struct {
		q    store.ListQuery
		want []string
	}{
		{store.ListQuery{Status: task.StatusRetry}, []string{"old-RETRY"}},
		{store.ListQuery{Status: task.StatusFailure}, []string{"old-FAILURE"}},
		{store.ListQuery{Status: task.StatusPending}, []string{"old-PENDING"}},
		{store.ListQuery{Type: task.TypeEmbed}, []string{"old-RETRY", "old-FAILURE", "old-PENDING"}},
		{store.ListQuery{Type: task.TypeEmbed, Status: task.StatusFailure}, []string{"old-FAILURE"}},
		{store.ListQuery{Owner: "k1", Status: task.StatusRetry}, []string{"old-RETRY"}},
		{store.ListQuery{Owner: "k2", Status: task.StatusRetry}, nil},
	} {
		tc.q.Limit = 10
		if tc.q.Owner == "" {
			tc.q.All = true
		}
		_, err := b.store.List(b.ctx, tc.q) // warm: a new connection's handshake is not the listing's
		require.NoError(t, err)
		b.trips.Reset()
		page, err := b.store.List(b.ctx, tc.q)
		require.NoError(t, err)
		var got []string
		for _, r := range page.Tasks {
			got = append(got, r.ID)
			if tc.q.Status != "" {
				require.Equal(t, tc.q.Status, r.Status)
			}
		}
		require.Equal(t, tc.want, got, "%+v", tc.q)
		require.Empty(t, page.NextCursor)
		require.LessOrEqual(t, b.trips.Commands(), int64(len(tc.want)+2), "%+v: one index read and the records shown", tc.q)
	}
	page, err := b.store.List(b.ctx, store.ListQuery{All: true, Status: task.StatusSuccess, Limit: 5})
	require.NoError(t, err)
	require.Len(t, page.Tasks, 5)
	require.NotEmpty(t, page.NextCursor)
}
