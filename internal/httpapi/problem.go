package httpapi

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/siganteng/siganteng/internal/task"
)

// huma echoes the offending value in each error's detail: for a body that
// is not JSON, the whole body; for a prompt over the limit, all of it. A
// request may hold secrets or large data, so problems name the field and the
// reason, never the value. huma's hook for this is a package variable, set
// once here for the whole API.
func init() {
	echoing := huma.NewError
	huma.NewError = func(status int, msg string, errs ...error) huma.StatusError {
		cleaned := make([]error, 0, len(errs))
		for _, err := range errs {
			if d, ok := err.(huma.ErrorDetailer); ok {
				detail := *d.ErrorDetail()
				detail.Value = nil
				err = &detail
			}
			cleaned = append(cleaned, err)
		}
		return echoing(status, msg, cleaned...)
	}
}

// problem maps an application error to an RFC 9457 problem. It is the only
// place that chooses HTTP statuses for errors. Causes are logged, never sent.
func (h *handlers) problem(ctx context.Context, err error) error {
	var e *task.Error
	if !errors.As(err, &e) {
		h.deps.Log.ErrorContext(ctx, "unexpected error", "err", err)
		return huma.Error500InternalServerError("internal error")
	}
	switch e.Code {
	case task.EINVALID:
		location := e.Field
		if !strings.HasPrefix(location, "header.") {
			location = "body." + location
		}
		return huma.Error422UnprocessableEntity("validation failed", &huma.ErrorDetail{
			Location: location, Message: e.Message,
		})
	case task.ETOOLARGE:
		return huma.NewError(http.StatusRequestEntityTooLarge, e.Message, &huma.ErrorDetail{Location: "body." + e.Field, Message: e.Message})
	case task.EUNSUPPORTED:
		return huma.NewError(http.StatusUnsupportedMediaType, e.Message, &huma.ErrorDetail{Location: "body." + e.Field, Message: e.Message})
	case task.ENOTFOUND:
		return huma.Error404NotFound(e.Message)
	case task.ECONFLICT:
		return huma.Error409Conflict(e.Message)
	case task.EUNAVAILABLE:
		h.deps.Log.WarnContext(ctx, "unavailable", "err", err)
		retry := max(1, int(math.Ceil(e.RetryAfter.Seconds())))
		return huma.ErrorWithHeaders(huma.Error503ServiceUnavailable(e.Message),
			http.Header{"Retry-After": {strconv.Itoa(retry)}})
	case task.ELIMITED:
		retry := max(1, int(math.Ceil(e.RetryAfter.Seconds())))
		return huma.ErrorWithHeaders(huma.Error429TooManyRequests(e.Message),
			http.Header{"Retry-After": {strconv.Itoa(retry)}})
	case task.ETIMEOUT:
		return huma.Error504GatewayTimeout(e.Message)
	case task.EREJECTED:
		return huma.Error422UnprocessableEntity(e.Message)
	case task.EPROVIDER:
		h.deps.Log.WarnContext(ctx, "provider failure", "err", err)
		return huma.Error502BadGateway(e.Message)
	}
	h.deps.Log.ErrorContext(ctx, "internal error", "err", err)
	return huma.Error500InternalServerError("internal error")
}
