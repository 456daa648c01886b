package provider

import (
	"errors"

	"github.com/siganteng/siganteng/internal/task"
)

// RoutedError is a routed call's failure with the calls it tried, so the
// caller can put them on the task's record; errors.As still finds the
// *Error inside.
type RoutedError struct {
	Err   error
	Calls []task.Call
}

func (e *RoutedError) Error() string { return e.Err.Error() }
func (e *RoutedError) Unwrap() error { return e.Err }

// CallsOf returns the calls a failed routed call tried; nil otherwise.
func CallsOf(err error) []task.Call {
	var re *RoutedError
	if errors.As(err, &re) {
		return re.Calls
	}
	return nil
}
