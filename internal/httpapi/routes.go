package httpapi

import (
	"net/http"

	"github.com/danielgtaylor/huma/v2"
)

// maxJSONBody bounds request bodies: the largest valid generate_text body
// (200,000 characters of prompt and 50,000 of system, up to 4 bytes each)
// fits, and nothing much larger is read.
const maxJSONBody = 1 << 20

// registerRoutes is the whole API surface.
func registerRoutes(api huma.API, h *handlers) {
	huma.Register(api, huma.Operation{
		OperationID:   "submit-generate-text",
		Method:        http.MethodPost,
		Path:          "/background/generate_text",
		Summary:       "Queue text generation",
		Description:   "Validates the request, queues it, and answers at once with the task record and a Location header naming its status URL.",
		Tags:          []string{"Background tasks"},
		DefaultStatus: http.StatusAccepted,
		MaxBodyBytes:  maxJSONBody,
		Errors:        []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity, http.StatusServiceUnavailable},
	}, h.submitGenerateText)

	huma.Register(api, huma.Operation{
		OperationID: "get-task",
		Method:      http.MethodGet,
		Path:        "/background/tasks/{task_id}",
		Summary:     "Read a task's status and result",
		Description: "One Redis read. An unknown or expired id is a 404, never a made-up PENDING.",
		Tags:        []string{"Background tasks"},
		Errors:      []int{http.StatusNotFound, http.StatusUnprocessableEntity, http.StatusServiceUnavailable},
	}, h.getTask)

	huma.Register(api, huma.Operation{
		OperationID:  "generate-text",
		Method:       http.MethodPost,
		Path:         "/generate_text",
		Summary:      "Generate text now",
		Description:  "The same work as the background task, done within the request and bounded by SYNC_TIMEOUT. For short prompts; use the background endpoint for anything slow.",
		Tags:         []string{"Synchronous"},
		MaxBodyBytes: maxJSONBody,
		Errors: []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity,
			http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout},
	}, h.generateText)

	huma.Register(api, huma.Operation{
		OperationID: "healthz",
		Method:      http.MethodGet,
		Path:        "/healthz",
		Summary:     "Liveness: the process serves HTTP",
		Tags:        []string{"Operations"},
	}, h.healthz)

	huma.Register(api, huma.Operation{
		OperationID: "readyz",
		Method:      http.MethodGet,
		Path:        "/readyz",
		Summary:     "Readiness: Redis answers",
		Tags:        []string{"Operations"},
		Errors:      []int{http.StatusServiceUnavailable},
	}, h.readyz)
}
