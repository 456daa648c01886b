package httpapi

import (
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/siganteng/siganteng/internal/task"
)

// DefaultMaxBodyBytes bounds JSON request bodies unless MAX_BODY_BYTES says
// otherwise: the largest valid generate_text body (200,000 characters of
// prompt and 50,000 of system, up to 4 bytes each) fits, and nothing much
// larger is read.
const DefaultMaxBodyBytes = 1 << 20

// registerRoutes is the whole API surface.
func registerRoutes(api huma.API, h *handlers) {
	maxJSONBody := h.deps.MaxBodyBytes
	if maxJSONBody <= 0 {
		maxJSONBody = DefaultMaxBodyBytes
	}

	huma.Register(api, huma.Operation{
		OperationID: "get-task",
		Method:      http.MethodGet,
		Path:        "/background/tasks/{task_id}",
		Summary:     "Read a task's status and result",
		Description: "One Redis read. An unknown or expired id is a 404, never a made-up PENDING.",
		Tags:        []string{"Background tasks"},
		Errors:      []int{http.StatusNotFound, http.StatusUnprocessableEntity, http.StatusServiceUnavailable},
	}, h.getTask)

	// A data: URL carries an image in base64, a third larger than the bytes;
	// messages may hold one of up to MAX_UPLOAD_BYTES besides the text.
	imageBody := h.deps.MaxUploadBytes*4/3 + 64<<10
	registerKind(api, h, kindRoutes[task.GenerateTextInput, *task.TextResult]{
		typ: task.TypeGenerateText,
		queued: [2]string{"Queue text generation",
			"Validates the request, queues it, and answers at once with the task record and a Location header naming its status URL."},
		now: [2]string{"Generate text now",
			"The same work as the background task, done within the request and bounded by SYNC_TIMEOUT. For short prompts; use the background endpoint for anything slow."},
		maxBody: maxJSONBody + imageBody,
		errors:  []int{http.StatusUnsupportedMediaType}, // an image in messages that is not one
		submit:  Tasks.SubmitGenerateText,
		call:    Tasks.GenerateText,
	})

	registerKind(api, h, kindRoutes[task.DescribeImageInput, *task.TextResult]{
		typ: task.TypeDescribeImage,
		queued: [2]string{"Queue a question about an image",
			"The image is an http(s) URL, fetched by the worker through a guarded client that refuses internal addresses, or a data: URL. " +
				"The same request may be sent as multipart/form-data with the file as `image` and the other fields as form fields. The result has the same shape as generate_text's."},
		now:     [2]string{"Ask about an image now", "The same work as the background task, within SYNC_TIMEOUT."},
		maxBody: imageBody,
		errors:  []int{http.StatusUnsupportedMediaType},
		submit:  Tasks.SubmitDescribeImage,
		call:    Tasks.DescribeImage,
	})

	// embed's inputs (up to 256 of 32,000 characters) are bounded by the
	// same MAX_BODY_BYTES in all.
	registerKind(api, h, kindRoutes[task.EmbedInput, *task.EmbedResult]{
		typ:     task.TypeEmbed,
		queued:  [2]string{"Queue embeddings", "One vector per input string, in order, in the record's result."},
		now:     [2]string{"Embed now", "The same work as the background task, within SYNC_TIMEOUT."},
		maxBody: maxJSONBody,
		submit:  Tasks.SubmitEmbed,
		call:    Tasks.Embed,
	})

	// Speech's synchronous answer is the audio itself: its own route below.
	registerKind(api, h, kindRoutes[task.TextToSpeechInput, struct{}]{
		typ: task.TypeTextToSpeech,
		queued: [2]string{"Queue text-to-speech",
			"Queues speech synthesis. On SUCCESS the record's result names an audio artifact, served at /background/tasks/{task_id}/artifact."},
		maxBody: maxJSONBody,
		submit:  Tasks.SubmitTextToSpeech,
	})

	uploadBody := h.deps.MaxUploadBytes + 64<<10
	huma.Register(api, huma.Operation{
		OperationID:   "submit-speech-to-text",
		Method:        http.MethodPost,
		Path:          "/background/speech_to_text",
		Summary:       "Queue a transcription",
		Description:   "A multipart/form-data upload. The audio is kept in the artifact store, not in Redis, until the task has read it.",
		Tags:          []string{"Background tasks"},
		DefaultStatus: http.StatusAccepted,
		MaxBodyBytes:  uploadBody,
		Errors: []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType,
			http.StatusUnprocessableEntity, http.StatusServiceUnavailable},
	}, h.submitSpeechToText)

	huma.Register(api, huma.Operation{
		OperationID:  "speech-to-text",
		Method:       http.MethodPost,
		Path:         "/speech_to_text",
		Summary:      "Transcribe now",
		Description:  "The same work as the background task, within SYNC_TIMEOUT.",
		Tags:         []string{"Synchronous"},
		MaxBodyBytes: uploadBody,
		Errors: []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType,
			http.StatusUnprocessableEntity, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout},
	}, h.speechToText)

	huma.Register(api, huma.Operation{
		OperationID: "get-task-artifact",
		Method:      http.MethodGet,
		Path:        "/background/tasks/{task_id}/artifact",
		Summary:     "Download a task's artifact",
		Description: "The bytes of a finished task's binary result (audio), with its Content-Type and Content-Length; Range requests are honoured. 409 while the task has not finished.",
		Tags:        []string{"Background tasks"},
		Responses:   binaryResponse("The artifact.", "audio/*"),
		Errors:      []int{http.StatusNotFound, http.StatusConflict, http.StatusRequestedRangeNotSatisfiable, http.StatusServiceUnavailable},
	}, h.getArtifact)

	huma.Register(api, huma.Operation{
		OperationID:  "text-to-speech",
		Method:       http.MethodPost,
		Path:         "/text_to_speech",
		Summary:      "Speak text now",
		Description:  "The same work as the background task; the answer is the audio itself, streamed, within SYNC_TIMEOUT.",
		Tags:         []string{"Synchronous"},
		MaxBodyBytes: maxJSONBody,
		Responses:    binaryResponse("The audio.", "audio/*"),
		Errors: []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity,
			http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout},
	}, h.textToSpeech)

	huma.Register(api, huma.Operation{
		OperationID: "cancel-task",
		Method:      http.MethodPost,
		Path:        "/background/tasks/{task_id}/cancel",
		Summary:     "Cancel a task",
		Description: "A task not yet started never runs; a running one has its provider call cancelled; neither is retried, and the task ends REVOKED. " +
			"Cancelling is idempotent, and a task that has already ended is left as it is. The answer is the record.",
		Tags:   []string{"Background tasks"},
		Errors: []int{http.StatusNotFound, http.StatusUnprocessableEntity, http.StatusServiceUnavailable},
	}, h.cancelTask)

	huma.Register(api, huma.Operation{
		OperationID: "list-tasks",
		Method:      http.MethodGet,
		Path:        "/background/tasks",
		Summary:     "List tasks",
		Description: "Newest first, optionally filtered by status and type, and by one metadata label (metadata[KEY]=VALUE in the query, e.g. ?metadata[customer]=acme), a page at a time: pass next_cursor as cursor until it is absent. Finished tasks drop out after RESULT_TTL.",
		Tags:        []string{"Background tasks"},
		Errors:      []int{http.StatusUnprocessableEntity, http.StatusServiceUnavailable},
	}, h.listTasks)

	registerPipelines(api, h, maxJSONBody)

	huma.Register(api, huma.Operation{
		OperationID: "list-models",
		Method:      http.MethodGet,
		Path:        "/models",
		Summary:     "List the models you may name",
		Description: "With a routing file (ROUTES_FILE): its models, each with its deployments and their circuit breakers; a request naming another model is refused. Without one: each capability's provider and default model, and any model name is passed to the provider.",
		Tags:        []string{"Models and usage"},
	}, h.listModels)

	huma.Register(api, huma.Operation{
		OperationID: "get-usage",
		Method:      http.MethodGet,
		Path:        "/usage",
		Summary:     "Your usage per day",
		Description: "What your key's successful tasks consumed, per UTC day: tasks, input and output tokens, characters spoken, seconds of audio heard, and the estimated cost where the routing file gives prices. Admin keys see every key's.",
		Tags:        []string{"Models and usage"},
		Errors:      []int{http.StatusUnprocessableEntity, http.StatusServiceUnavailable},
	}, h.usage)

	huma.Register(api, huma.Operation{
		OperationID: "task-events",
		Method:      http.MethodGet,
		Path:        "/background/tasks/{task_id}/events",
		Summary:     "Follow a task as server-sent events",
		Description: "A text/event-stream of the task's story: `status` events (data: task_id, status, attempt, error; the last one carries the whole final record), " +
			"`progress` events, and, for generate_text with `\"stream\": true`, `delta` events with the text as the provider produces it (a new attempt starts its text over). " +
			"Events are kept as long as the record, so a client that reconnects with Last-Event-ID misses nothing and one that connects after the end gets the whole story. " +
			"A comment line every 15 s keeps idle connections open through proxies; the stream ends after the terminal status event.",
		Tags: []string{"Background tasks"},
		Responses: map[string]*huma.Response{
			"200": {
				Description: "The events.",
				Content:     map[string]*huma.MediaType{"text/event-stream": {Schema: &huma.Schema{Type: huma.TypeString}}},
			},
		},
		Errors: []int{http.StatusNotFound, http.StatusUnprocessableEntity, http.StatusServiceUnavailable},
	}, h.taskEvents)

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

// binaryResponse documents a 200 answer whose body is bytes of mediaType.
func binaryResponse(description, mediaType string) map[string]*huma.Response {
	return map[string]*huma.Response{
		"200": {
			Description: description,
			Content: map[string]*huma.MediaType{
				mediaType: {Schema: &huma.Schema{Type: huma.TypeString, Format: "binary"}},
			},
		},
	}
}
