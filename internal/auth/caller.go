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
	// HighPriority lets the key submit priority high work, which goes
	// before every other key's normal work.
	HighPriority bool
	// MaxSync and MaxWaiting bound the key's synchronous calls and waiting
	// connections open at once on one API process; zero means the
	// server's defaults.
	MaxSync, MaxWaiting int
	// ShareWeight weighs the key's share of a saturated deployment's
	// budget against other keys' (2 gets twice what 1 gets); 0 means 1.
	ShareWeight int
}

// Weight is the caller's share weight, at least 1.
func (c Caller) Weight() int { return max(c.ShareWeight, 1) }

// MayUseHighPriority reports whether the caller may submit priority high
// work: a key given the right, an admin, or anyone on an open API.
func (c Caller) MayUseHighPriority() bool { return c.KeyID == "" || c.Admin || c.HighPriority }

// Owner is the owner recorded on the tasks the caller submits.
func (c Caller) Owner() string { return c.KeyID }

// CanSee reports whether the caller may see a task owned by owner. Any
// other caller's task is, to this caller, as if it did not exist; a task
// with no owner (submitted while the API was open) is an admin's only.
func (c Caller) CanSee(owner string) bool { return c.Admin || (c.KeyID != "" && c.KeyID == owner) }

// Anonymous reports whether c holds no key and no rights.
func (c Caller) Anonymous() bool { return c.KeyID == "" && !c.Admin }

type callerKey struct{}

// WithCaller returns ctx carrying c.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// System is the caller of work that no request started (the worker, the
// reconciler, tests of lower layers): it sees everything. It is given
// explicitly, with WithCaller, where it is needed; never by default.
var System = Caller{Name: "system", Admin: true}

// Nobody is who acts when no caller was set: no key, no rights. A request
// that slipped past the HTTP layer's authentication sees nothing.
var Nobody = Caller{Name: "nobody"}

// FromContext returns the request's caller, or Nobody when there is none.
func FromContext(ctx context.Context) Caller {
	if c, ok := ctx.Value(callerKey{}).(Caller); ok {
		return c
	}
	return Nobody
}
