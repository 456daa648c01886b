package service

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/task"
)

// Every task type the queue knows has its kind registered, and no other.
func TestEveryTaskTypeHasItsKind(t *testing.T) {
	t.Parallel()
	require.Len(t, kinds, len(task.Types))
	for _, typ := range task.Types {
		k, ok := kinds[typ]
		require.True(t, ok, "%s has no kind in kinds", typ)
		require.Equal(t, typ, k.typ)
	}
	_, err := (&Service{}).Execute(context.Background(), "id", "paint_picture", nil, nil)
	require.Equal(t, task.EINVALID, task.CodeOf(err), "an unknown type is refused, not run")
}
