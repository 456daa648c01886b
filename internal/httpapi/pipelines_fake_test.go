package httpapi_test

import (
	"context"
	"time"

	"github.com/siganteng/siganteng/internal/service"
	"github.com/siganteng/siganteng/internal/task"
)

// The handler tests do not cover pipelines and retries, which the service
// and end-to-end tests run against Redis: these answer as for no such one.

func (f *fakeTasks) Retry(context.Context, string) (*task.Record, bool, error) {
	return nil, false, task.NotFound("")
}

func (f *fakeTasks) CreatePipelineIdempotent(context.Context, string, task.PipelineInput) (*task.PipelineRecord, bool, error) {
	return nil, false, task.Unavailable("no pipelines here", nil)
}

func (f *fakeTasks) GetPipeline(context.Context, string) (*task.PipelineRecord, error) {
	return nil, task.NotFound("")
}

func (f *fakeTasks) CancelPipeline(context.Context, string) (*task.PipelineRecord, error) {
	return nil, task.NotFound("")
}

func (f *fakeTasks) ListPipelines(context.Context, string, int) (service.PipelinePage, error) {
	return service.PipelinePage{}, nil
}

func (f *fakeTasks) FollowPipelineEvents(context.Context, string, string, time.Duration, func(service.Event) error, func() error) error {
	return nil
}
