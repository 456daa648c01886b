package httpapi

import (
	"context"
	"time"

	"github.com/siganteng/siganteng/internal/service"
	"github.com/siganteng/siganteng/internal/task"
)

type modelsOutput struct {
	Body struct {
		Models []task.ModelInfo `json:"models"`
	}
}

func (h *handlers) listModels(ctx context.Context, _ *struct{}) (*modelsOutput, error) {
	out := &modelsOutput{}
	out.Body.Models = h.deps.Tasks.Models(ctx)
	if out.Body.Models == nil {
		out.Body.Models = []task.ModelInfo{}
	}
	return out, nil
}

type usageInput struct {
	From  string `query:"from" format:"date" doc:"First UTC day, YYYY-MM-DD; 29 days before to when absent."`
	To    string `query:"to" format:"date" doc:"Last UTC day, included; today when absent."`
	KeyID string `query:"key_id" maxLength:"64" doc:"Admins only: one key's usage; without it an admin sees every key's."`
}

// UsageReport is usage per API key and UTC day, and its total.
type UsageReport struct {
	From  string          `json:"from" format:"date"`
	To    string          `json:"to" format:"date"`
	Days  []task.DayUsage `json:"days" doc:"Days with usage, oldest first, per key."`
	Total task.DayUsage   `json:"total" doc:"The sum of days (its key_id and date are empty)."`
}

type usageOutput struct {
	Body UsageReport
}

func (h *handlers) usage(ctx context.Context, in *usageInput) (*usageOutput, error) {
	to := time.Now().UTC().Truncate(24 * time.Hour)
	if in.To != "" {
		t, err := time.Parse(time.DateOnly, in.To)
		if err != nil {
			return nil, h.problem(ctx, task.Invalid("to", "to must be a date, YYYY-MM-DD"))
		}
		to = t
	}
	from := to.AddDate(0, 0, -29)
	if in.From != "" {
		t, err := time.Parse(time.DateOnly, in.From)
		if err != nil {
			return nil, h.problem(ctx, task.Invalid("from", "from must be a date, YYYY-MM-DD"))
		}
		from = t
	}
	days, err := h.deps.Tasks.Usage(ctx, service.UsageQuery{From: from, To: to, KeyID: in.KeyID})
	if err != nil {
		return nil, h.problem(ctx, err)
	}
	out := &usageOutput{Body: UsageReport{From: from.Format(time.DateOnly), To: to.Format(time.DateOnly), Days: days}}
	if out.Body.Days == nil {
		out.Body.Days = []task.DayUsage{}
	}
	t := &out.Body.Total
	for _, d := range days {
		t.Tasks += d.Tasks
		t.InputTokens += d.InputTokens
		t.OutputTokens += d.OutputTokens
		t.Characters += d.Characters
		t.AudioSeconds += d.AudioSeconds
		t.CostUSD += d.CostUSD
	}
	return out, nil
}
