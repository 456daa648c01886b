package service

import (
	"context"
	"fmt"
	"time"

	"github.com/siganteng/siganteng/internal/auth"
	"github.com/siganteng/siganteng/internal/store"
	"github.com/siganteng/siganteng/internal/task"
)

// UsageStore reads the usage the worker sums per owner and day.
type UsageStore interface {
	UsageOwners(ctx context.Context) ([]string, error)
	Usage(ctx context.Context, owners []string, from, to time.Time) ([]store.DayUsage, error)
}

// Catalog lists the models clients may name.
type Catalog func(ctx context.Context) []task.ModelInfo

// Models lists the models the caller may name.
func (s *Service) Models(ctx context.Context) []task.ModelInfo {
	if s.deps.Catalog == nil {
		return nil
	}
	return s.deps.Catalog(ctx)
}

// MaxUsageDays bounds the days one usage query reads.
const MaxUsageDays = 366

// UsageQuery asks for usage from one UTC day to another, both included.
type UsageQuery struct {
	From, To time.Time
	KeyID    string // an admin's filter; "" for every key
}

// Usage returns the caller's usage per day, or, for an admin, every key's
// (or KeyID's), oldest first.
func (s *Service) Usage(ctx context.Context, q UsageQuery) ([]store.DayUsage, error) {
	if q.To.Before(q.From) {
		return nil, task.Invalid("from", "from is after to")
	}
	if days := int(q.To.Sub(q.From).Hours()/24) + 1; days > MaxUsageDays {
		return nil, task.Invalid("from", fmt.Sprintf("at most %d days at once; this asks for %d", MaxUsageDays, days))
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	caller := auth.FromContext(ctx)
	var owners []string
	switch {
	case !caller.Admin:
		owners = []string{caller.Owner()}
	case q.KeyID != "":
		owners = []string{q.KeyID}
	default:
		all, err := s.deps.Usage.UsageOwners(ctx)
		if err != nil {
			return nil, task.Unavailable("the usage store is unavailable", err)
		}
		owners = all
	}
	rows, err := s.deps.Usage.Usage(ctx, owners, q.From, q.To)
	if err != nil {
		return nil, task.Unavailable("the usage store is unavailable", err)
	}
	return rows, nil
}
