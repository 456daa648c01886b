package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/siganteng/siganteng/internal/provider"
	"github.com/siganteng/siganteng/internal/task"
)

// Verdict is what a failed call comes to, for a task's record (the worker
// retries a transient one) and for a synchronous client (syncError) alike.
type Verdict struct {
	Failure    task.Failure
	Transient  bool
	RetryAfter time.Duration
}

// Classify decides, once for every provider and for both fronts, whether a
// failure is worth retrying and how a client should see it.
func Classify(err error, providerName string) Verdict {
	var wait *provider.WaitError
	if errors.As(err, &wait) {
		return Verdict{
			Failure: task.Failure{Code: task.FailureFlowLimited, Provider: wait.Deployment,
				Message: fmt.Sprintf("deployment %s has no %s budget now; it has more at %s", wait.Deployment, wait.Reason, wait.Until.UTC().Format(time.RFC3339))},
			Transient:  true,
			RetryAfter: max(time.Until(wait.Until), 0),
		}
	}
	var perr *provider.Error
	if errors.As(err, &perr) {
		return Verdict{
			Failure:    task.Failure{Code: perr.Kind.Code(), Message: perr.Error(), Provider: perr.Provider},
			Transient:  perr.Transient(),
			RetryAfter: perr.RetryAfter,
		}
	}
	var terr *task.Error
	if errors.As(err, &terr) {
		switch terr.Code {
		case task.EINVALID, task.ETOOLARGE, task.EUNSUPPORTED:
			return Verdict{Failure: task.Failure{Code: task.FailureInvalidInput, Message: terr.Message}}
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return Verdict{
			Failure:   task.Failure{Code: task.FailureTimeout, Message: "the attempt ran past TASK_TIMEOUT", Provider: providerName},
			Transient: true,
		}
	}
	// Anything else is ours (Redis hiccup, a bug): retry, and say nothing
	// internal to the client.
	return Verdict{Failure: task.Failure{Code: task.FailureInternal, Message: "internal error; see the worker's log"}, Transient: true}
}

// syncCodes maps the failure of a synchronous call to the application error
// the HTTP layer turns into a status: the same words a task's record would
// carry, rendered for a client that waits.
var syncCodes = map[task.FailureCode]task.ErrorCode{
	task.FailureTimeout:             task.ETIMEOUT,
	task.FailureProviderRateLimited: task.ELIMITED, // a wait for budget, like the next
	task.FailureFlowLimited:         task.ELIMITED,
	task.FailureProviderUnavailable: task.EUNAVAILABLE,
	task.FailureProviderRejected:    task.EREJECTED,
	task.FailureProviderAuth:        task.EPROVIDER,
	task.FailureNotConfigured:       task.EPROVIDER,
	task.FailureResponseTooLarge:    task.EPROVIDER,
}
