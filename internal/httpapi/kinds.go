package httpapi

import (
	"context"
	"net/http"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/siganteng/siganteng/internal/task"
)

// kindRoutes is one kind of work on the native API: its two routes, queue
// (POST /background/<type>, 202 and the record) and now (POST /<type>, the
// result), registered from this one value by registerKind. Kinds whose
// synchronous answer is not JSON (speech) give no call and register their
// own; uploads (speech_to_text) have their own handlers.
type kindRoutes[I, R any] struct {
	typ task.Type
	// queued and now are the two operations' summary and description.
	queued, now [2]string
	maxBody     int64
	// errors are the statuses besides the ones every submit or call has.
	errors []int
	// submit and call are the service's methods for the kind (method
	// expressions such as Tasks.SubmitEmbed); call is nil when the kind
	// answers no JSON.
	submit func(t Tasks, ctx context.Context, in I) (*task.Record, error)
	call   func(t Tasks, ctx context.Context, in I) (R, error)
}

// kindInput is a submit's or call's request: the input, and the headers
// every submit takes.
type kindInput[I any] struct {
	SubmitHeaders
	Body I
}

type kindOutput[R any] struct {
	Body R
}

// optioned is an input whose submit options can be changed in place.
type optioned[I any] interface {
	*I
	OptionsRef() *task.Options
}

var (
	queueErrors = []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity, http.StatusServiceUnavailable}
	callErrors  = []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}
)

// registerKind registers k's routes.
func registerKind[I any, P optioned[I], R any](api huma.API, h *handlers, k kindRoutes[I, R]) {
	name := strings.ReplaceAll(string(k.typ), "_", "-")
	huma.Register(api, huma.Operation{
		OperationID:   "submit-" + name,
		Method:        http.MethodPost,
		Path:          "/background/" + string(k.typ),
		Summary:       k.queued[0],
		Description:   k.queued[1],
		Tags:          []string{"Background tasks"},
		DefaultStatus: http.StatusAccepted,
		MaxBodyBytes:  k.maxBody,
		Errors:        append(append([]int(nil), queueErrors...), k.errors...),
	}, func(ctx context.Context, in *kindInput[I]) (*submitOutput, error) {
		in.options(P(&in.Body).OptionsRef())
		body := in.Body
		return h.submit(ctx, in.SubmitHeaders, k.typ, body, func() (*task.Record, error) {
			return k.submit(h.deps.Tasks, ctx, body)
		})
	})
	if k.call == nil {
		return
	}
	huma.Register(api, huma.Operation{
		OperationID:  name,
		Method:       http.MethodPost,
		Path:         "/" + string(k.typ),
		Summary:      k.now[0],
		Description:  k.now[1],
		Tags:         []string{"Synchronous"},
		MaxBodyBytes: k.maxBody,
		Errors:       append(append([]int(nil), callErrors...), k.errors...),
	}, func(ctx context.Context, in *kindInput[I]) (*kindOutput[R], error) {
		out, err := k.call(h.deps.Tasks, ctx, in.Body)
		if err != nil {
			return nil, h.problem(ctx, err)
		}
		return &kindOutput[R]{Body: out}, nil
	})
}
