package routing_test

import "github.com/siganteng/siganteng/internal/task"

func routingMetered(in, out, chars int64, seconds float64) task.Metered {
	return task.Metered{InputTokens: in, OutputTokens: out, Characters: chars, AudioSeconds: seconds}
}
