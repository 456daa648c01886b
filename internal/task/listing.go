package task

import (
	"strconv"
	"strings"
)

// Page, DayUsage and ValidEventID are shared by the store, which makes them,
// and the fronts, which show them.

// Page is one page of a listing, newest first.
type Page struct {
	Tasks []*Record
	// NextCursor continues the listing; "" at the end. A filtered page may
	// hold fewer than Limit tasks and still have a NextCursor.
	NextCursor string
}

// DayUsage is one owner's usage on one day.
type DayUsage struct {
	Owner        string  `json:"key_id" doc:"The API key's id; \"-\" for tasks submitted while the API was open."`
	Date         string  `json:"date" format:"date"`
	Tasks        int64   `json:"tasks"`
	InputTokens  int64   `json:"input_tokens"`
	OutputTokens int64   `json:"output_tokens"`
	Characters   int64   `json:"characters"`
	AudioSeconds float64 `json:"audio_seconds"`
	CostUSD      USD     `json:"cost_usd"`
}

// ValidEventID reports whether s has the shape of an event id (a Redis
// stream entry id, "<milliseconds>-<sequence>"), so a malformed
// Last-Event-ID is refused before Redis sees it.
func ValidEventID(s string) bool {
	a, b, found := strings.Cut(s, "-")
	if !found {
		return false
	}
	ms, err1 := strconv.ParseInt(a, 10, 64)
	seq, err2 := strconv.ParseInt(b, 10, 64)
	return err1 == nil && err2 == nil && ms >= 0 && seq >= 0
}
