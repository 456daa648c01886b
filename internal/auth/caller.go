package auth

import "context"

// Caller is who a request acts for.
type Caller struct {
	KeyID string // the key's id; "" when the API is open (no keys)
	Name  string
	Admin bool // sees and cancels every task
	// Limits of the key; zero means the server's defaults.
	RequestsPerSecond int
	MaxUnfinished     int
	// Daily budgets of the key for the UTC day; zero means none.
	DailyTokens  int64
	DailyCostUSD float64
	// Models are the routed models the key may use; empty for all.
	Models []string
}

// Owner is the owner recorded on the tasks the caller submits.
func (c Caller) Owner() string { return c.KeyID }

// CanSee reports whether the caller may see a task owned by owner. Any
// other caller's task is, to this caller, as if it did not exist.
func (c Caller) CanSee(owner string) bool { return c.Admin || c.KeyID == owner }

type callerKey struct{}

// WithCaller returns ctx carrying c.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// System is the caller of work that no request started (the worker, the
// reconciler, tests of lower layers): it sees everything.
var System = Caller{Name: "system", Admin: true}

// FromContext returns the request's caller, or System when there is none.
// The HTTP layer sets a caller on every request, so System is never what a
// client acts as.
func FromContext(ctx context.Context) Caller {
	if c, ok := ctx.Value(callerKey{}).(Caller); ok {
		return c
	}
	return System
}
