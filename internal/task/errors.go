package task

import (
	"errors"
	"fmt"
	"time"
)

// ErrorCode is an application error class. The HTTP layer maps each code to
// a status in exactly one place.
type ErrorCode string

// The application error codes.
const (
	ENOTFOUND    ErrorCode = "not_found"   // no such task (or not the caller's)
	EINVALID     ErrorCode = "invalid"     // the request is wrong; Field says where
	ECONFLICT    ErrorCode = "conflict"    // the task is not in a state that allows this yet
	ETOOLARGE    ErrorCode = "too_large"   // an input over its size limit
	EUNSUPPORTED ErrorCode = "unsupported" // a media type we do not take
	EUNAVAILABLE ErrorCode = "unavailable" // a dependency (Redis, a provider) cannot take the work now
	EREJECTED    ErrorCode = "rejected"    // the provider refused this request (unknown model, too long)
	EPROVIDER    ErrorCode = "provider"    // the provider failed in a way the client cannot fix
	ETIMEOUT     ErrorCode = "timeout"     // the work did not finish in time
	ELIMITED     ErrorCode = "limited"     // a per-key limit is reached; RetryAfter may say when to try again
	EINTERNAL    ErrorCode = "internal"    // a bug; details are logged, not shown
)

// Error is an application error with a message safe to show a client.
type Error struct {
	Code       ErrorCode
	Field      string        // for EINVALID: the JSON field at fault
	Message    string        // safe for clients
	RetryAfter time.Duration // for EUNAVAILABLE: a hint for the client
	Err        error         // the cause, for logs only
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Invalid returns an EINVALID error about one field.
func Invalid(field, message string) *Error {
	return &Error{Code: EINVALID, Field: field, Message: message}
}

// NotFound returns the error for an unknown task id.
func NotFound(id string) *Error {
	return &Error{Code: ENOTFOUND, Message: fmt.Sprintf("task %q not found", id)}
}

// Unavailable wraps a dependency failure the client may retry.
func Unavailable(message string, err error) *Error {
	return &Error{Code: EUNAVAILABLE, Message: message, Err: err}
}

// CodeOf returns the code of err, EINTERNAL for errors that are not ours.
func CodeOf(err error) ErrorCode {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// FieldOf is the field an EINVALID error names, or "".
func FieldOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Field
	}
	return ""
}
