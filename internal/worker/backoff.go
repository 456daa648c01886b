package worker

import (
	"hash/fnv"
	"strconv"
	"time"
)

// Backoff computes retry delays: exponential from Base, capped at Max, with
// "equal jitter" (half fixed, half random) so that tasks failing together do
// not retry together. The jitter is derived from the task id and attempt
// rather than drawn at random, because asynq computes the delay on its own
// when an attempt times out, and both computations must agree with the
// next_attempt_at the record shows.
type Backoff struct {
	Base time.Duration
	Max  time.Duration
}

// Delay returns how long to wait after the given number of failed attempts
// (0 after the first). A provider's Retry-After wins, up to Max.
func (b Backoff) Delay(taskID string, retried int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, b.Max)
	}
	d := b.Base
	for i := 0; i < retried && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	half := d / 2
	if half <= 0 {
		return d
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(taskID))
	_, _ = h.Write([]byte(strconv.Itoa(retried)))
	return half + time.Duration(h.Sum64()%uint64(half+1))
}
