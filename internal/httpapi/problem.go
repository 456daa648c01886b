package httpapi

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"

	"github.com/danielgtaylor/huma/v2"

	"github.com/siganteng/siganteng/internal/task"
)

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
		return huma.Error422UnprocessableEntity("validation failed", &huma.ErrorDetail{
			Location: "body." + e.Field, Message: e.Message,
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
