package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/siganteng/siganteng/internal/task"
)

// A kind of work is declared once, in its own file, as a kind value: its
// type, the provider that serves it, and how a queued task of it runs.
// kinds registers every one. The paths every kind shares are written once:
// submitWith records and enqueues, syncCall runs a synchronous call,
// execute decodes, runs and meters a queued task.
//
// Adding a kind: a task type and its input and result (internal/task), a
// file here with its submit, its synchronous call and its kind value, one
// line in kinds, and its two routes (internal/httpapi/routes.go).
type kind struct {
	typ task.Type
	// run executes a queued payload of this kind.
	run func(s *Service, ctx context.Context, id string, payload []byte, progress Progress) (Outcome, error)
}

// named is what every provider interface has.
type named interface{ Name() string }

// kinds is the registry: every kind of work, by type.
var kinds = registry(generateTextKind, describeImageKind, embedKind, textToSpeechKind, speechToTextKind)

func registry(list ...kind) map[task.Type]kind {
	out := make(map[task.Type]kind, len(list))
	for _, k := range list {
		out[k.typ] = k
	}
	return out
}

// runs makes a kind whose queued payload decodes as I and runs with do;
// provider is the capability's provider, named on outcomes.
func runs[I input](typ task.Type, provider func(Providers) named,
	do func(s *Service, ctx context.Context, id string, in I, progress Progress) (any, error)) kind {
	return kind{typ: typ, run: func(s *Service, ctx context.Context, id string, payload []byte, progress Progress) (Outcome, error) {
		out, err := execute(ctx, payload, typ, provider(s.deps.Providers), func(in I) (any, error) { return do(s, ctx, id, in, progress) })
		if err != nil {
			return out, err
		}
		return s.keepLarge(ctx, id, out)
	}}
}

// keepLarge moves a result larger than LARGE_RESULT_BYTES into the artifact
// store, so that Redis holds no multi-megabyte record; Get inlines it.
func (s *Service) keepLarge(ctx context.Context, id string, out Outcome) (Outcome, error) {
	if s.cfg.LargeResultBytes <= 0 || len(out.Result) <= s.cfg.LargeResultBytes {
		return out, nil
	}
	key := task.ResultKey(id)
	if _, err := s.deps.Artifacts.Put(ctx, key, bytes.NewReader(out.Result)); err != nil {
		return out, task.Unavailable("the artifact store is unavailable; the result was not kept", err)
	}
	out.Result, out.ResultKey = nil, key
	return out, nil
}

// Execute runs one queued task, telling progress (which may be nil) what it
// produces on the way. Its errors are provider errors, a task.EINVALID error
// for a payload that can never run, or ctx's error.
func (s *Service) Execute(ctx context.Context, id string, typ task.Type, payload []byte, progress Progress) (Outcome, error) {
	k, ok := kinds[typ]
	if !ok {
		return Outcome{}, &task.Error{Code: task.EINVALID, Message: fmt.Sprintf("unknown task type %q", typ)}
	}
	return k.run(s, ctx, id, payload, progress)
}

// syncCall is every synchronous call's path: the caller's slot and budget
// are held around run, which SYNC_TIMEOUT bounds; the usage is settled from
// what it returns, once, here; a failure is mapped for the client (a
// task.Error, the client's own fault, passes as it is).
func syncCall[R any](s *Service, ctx context.Context, typ task.Type, in any, run func(ctx context.Context) (R, error)) (R, error) {
	var zero R
	held, err := s.checkSync(ctx, typ, in)
	if err != nil {
		return zero, err
	}
	ctx, cancel := s.syncContext(ctx)
	defer cancel()
	out, err := run(ctx)
	if err != nil {
		s.settleSync(ctx, held, true, nil, nil, in)
		var terr *task.Error
		if errors.As(err, &terr) {
			return zero, err
		}
		return zero, s.syncError(ctx, err)
	}
	s.settleSync(ctx, held, false, routeOf(out), out, in)
	return out, nil
}
