package worker

import (
	"context"
	"errors"
	"time"

	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/task"
)

// verdict is what the worker makes of a failed attempt.
type verdict struct {
	failure    task.Failure
	transient  bool
	retryAfter time.Duration
}

// classify decides, once for every provider, whether a failure is worth
// retrying and how a client should see it.
func classify(err error, providerName string) verdict {
	var perr *provider.Error
	if errors.As(err, &perr) {
		v := verdict{
			failure:    task.Failure{Code: failureCode(perr.Kind), Message: perr.Error(), Provider: perr.Provider},
			transient:  perr.Transient(),
			retryAfter: perr.RetryAfter,
		}
		return v
	}
	var terr *task.Error
	if errors.As(err, &terr) {
		switch terr.Code {
		case task.EINVALID, task.ETOOLARGE, task.EUNSUPPORTED:
			return verdict{failure: task.Failure{Code: task.FailureInvalidInput, Message: terr.Message}}
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return verdict{
			failure:   task.Failure{Code: task.FailureTimeout, Message: "the attempt ran past TASK_TIMEOUT", Provider: providerName},
			transient: true,
		}
	}
	// Anything else is ours (Redis hiccup, a bug): retry, and say nothing
	// internal to the client.
	return verdict{failure: task.Failure{Code: task.FailureInternal, Message: "internal error; see the worker's log"}, transient: true}
}

// failureCode is the record's word for a provider failure; provider.Kind
// spells the same words, so routed calls and records agree.
func failureCode(k provider.Kind) task.FailureCode { return task.FailureCode(k.Code()) }
