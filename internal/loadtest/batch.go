package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// BatchConfig is a run of the Batch API: one batch of Lines chat lines.
type BatchConfig struct {
	Config
	Lines int
	// RedisURL, when set, is the server's Redis: its memory is sampled
	// during the run.
	RedisURL string
}

// BatchReport is what a batch run measured.
type BatchReport struct {
	Lines                     int
	UploadSeconds             float64
	Seconds                   float64 // from the batch's creation to its end
	LinesPerSecond            float64
	Status                    string
	Completed, Failed         int
	PeakServerRSSBytes        float64
	RedisBaseBytes            int64 // used_memory before the batch
	RedisPeakBytes            int64 // the most used_memory seen during it
	ProviderAnswered, Refused int64
}

// Batch uploads a generated input file (streamed, never held whole),
// creates a batch over /v1/chat/completions, and polls it until it ends,
// sampling the server's memory and its Redis's on the way.
func Batch(ctx context.Context, cfg BatchConfig) (BatchReport, error) {
	rep := BatchReport{Lines: cfg.Lines}
	client := &http.Client{Timeout: 10 * time.Minute}
	var rdb *redis.Client
	if cfg.RedisURL != "" {
		opt, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return rep, fmt.Errorf("--redis: %w", err)
		}
		rdb = redis.NewClient(opt)
		defer rdb.Close()
		rep.RedisBaseBytes = usedMemory(ctx, rdb)
	}
	before := providerStats(ctx, cfg.ProviderURL)

	began := time.Now()
	fileID, err := uploadLines(ctx, client, cfg)
	if err != nil {
		return rep, err
	}
	rep.UploadSeconds = time.Since(began).Seconds()
	body := fmt.Sprintf(`{"input_file_id":%q,"endpoint":"/v1/chat/completions","completion_window":"24h"}`, fileID)
	var b struct {
		ID            string `json:"id"`
		Status        string `json:"status"`
		RequestCounts struct {
			Completed int `json:"completed"`
			Failed    int `json:"failed"`
		} `json:"request_counts"`
	}
	if err := call(ctx, client, cfg.Config, http.MethodPost, "/v1/batches", "application/json", strings.NewReader(body), &b); err != nil {
		return rep, err
	}
	created := time.Now()
	deadline := created.Add(cfg.Timeout)
	for b.Status != "completed" && b.Status != "failed" && b.Status != "cancelled" && b.Status != "expired" {
		if time.Now().After(deadline) {
			return rep, fmt.Errorf("the batch did not end within %s (%s, %d lines written)", cfg.Timeout, b.Status, b.RequestCounts.Completed+b.RequestCounts.Failed)
		}
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		if err := call(ctx, client, cfg.Config, http.MethodGet, "/v1/batches/"+b.ID, "", nil, &b); err != nil {
			return rep, err
		}
		rep.PeakServerRSSBytes = max(rep.PeakServerRSSBytes, serverRSS(ctx, client, cfg.Config))
		if rdb != nil {
			rep.RedisPeakBytes = max(rep.RedisPeakBytes, usedMemory(ctx, rdb))
		}
	}
	rep.Seconds = time.Since(created).Seconds()
	rep.LinesPerSecond = float64(cfg.Lines) / rep.Seconds
	rep.Status, rep.Completed, rep.Failed = b.Status, b.RequestCounts.Completed, b.RequestCounts.Failed
	after := providerStats(ctx, cfg.ProviderURL)
	rep.ProviderAnswered, rep.Refused = after.Answered-before.Answered, after.Refused-before.Refused
	return rep, nil
}

// uploadLines streams a generated input file of cfg.Lines lines into
// POST /v1/files.
func uploadLines(ctx context.Context, client *http.Client, cfg BatchConfig) (string, error) {
	pr, pw := io.Pipe()
	form := multipart.NewWriter(pw)
	go func() {
		err := form.WriteField("purpose", "batch")
		var part io.Writer
		if err == nil {
			part, err = form.CreateFormFile("file", "bench.jsonl")
		}
		model := ""
		if cfg.Model != "" {
			model = fmt.Sprintf(`"model":%q,`, cfg.Model)
		}
		for i := 0; err == nil && i < cfg.Lines; i++ {
			_, err = fmt.Fprintf(part, `{"custom_id":"line-%d","method":"POST","url":"/v1/chat/completions","body":{%s"messages":[{"role":"user","content":"bench %d"}],"max_tokens":16}}`+"\n", i, model, i)
		}
		if err == nil {
			err = form.Close()
		}
		pw.CloseWithError(err)
	}()
	var f struct {
		ID string `json:"id"`
	}
	if err := call(ctx, client, cfg.Config, http.MethodPost, "/v1/files", form.FormDataContentType(), pr, &f); err != nil {
		return "", err
	}
	return f.ID, nil
}

// call makes one request of the /v1 front and decodes its JSON answer.
func call(ctx context.Context, client *http.Client, cfg Config, method, path, contentType string, body io.Reader, into any) error {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(cfg.URL, "/")+path, body)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if cfg.Key != "" {
		req.Header.Set("Authorization", "Bearer "+cfg.Key)
	}
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s answered %d: %s", method, path, res.StatusCode, bytes.TrimSpace(raw))
	}
	return json.Unmarshal(raw, into)
}

// usedMemory is Redis's used_memory; 0 when it cannot be read.
func usedMemory(ctx context.Context, rdb *redis.Client) int64 {
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// Print writes the report for people.
func (r BatchReport) Print(w io.Writer) {
	fmt.Fprintf(w, "batch of %d lines: %s, %d completed, %d failed\n", r.Lines, r.Status, r.Completed, r.Failed)
	fmt.Fprintf(w, "upload:      %.2fs\n", r.UploadSeconds)
	fmt.Fprintf(w, "run:         %.2fs, %.0f lines/s (from creation to the end, output file written)\n", r.Seconds, r.LinesPerSecond)
	if r.PeakServerRSSBytes > 0 {
		fmt.Fprintf(w, "server RSS:  %.1f MB at the most\n", r.PeakServerRSSBytes/1e6)
	}
	if r.RedisPeakBytes > 0 {
		extra := r.RedisPeakBytes - r.RedisBaseBytes
		fmt.Fprintf(w, "redis:       %.1f MB before, %.1f MB at the most (%.1f MB more: %d bytes a line of the batch)\n",
			float64(r.RedisBaseBytes)/1e6, float64(r.RedisPeakBytes)/1e6, float64(extra)/1e6, extra/int64(max(r.Lines, 1)))
	}
	if r.ProviderAnswered+r.Refused > 0 {
		fmt.Fprintf(w, "provider:    %d calls answered, %d refused with 429 (%.2f%%)\n", r.ProviderAnswered, r.Refused, 100*float64(r.Refused)/float64(r.ProviderAnswered+r.Refused))
	}
}
