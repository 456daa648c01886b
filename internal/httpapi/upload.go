package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/danielgtaylor/huma/v2"
)

// withImageUploads accepts describe_image as a multipart/form-data upload
// too: the form (prompt, model, max_tokens, and the file as "image") becomes
// the JSON request with the image as a data: URL, so one operation, with its
// validation and limits, serves both. The image's type is sniffed later,
// like any data: URL's.
func withImageUploads(maxBytes int64, next http.Handler, paths ...string) http.Handler {
	handled := make(map[string]bool, len(paths))
	for _, p := range paths {
		handled[p] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if !handled[r.URL.Path] || mediaType != "multipart/form-data" {
			next.ServeHTTP(w, r)
			return
		}
		body, status, err := imageFormToJSON(r, maxBytes)
		if err != nil {
			writeProblem(w, status, err.Error())
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		r.Header.Set("Content-Type", "application/json")
		next.ServeHTTP(w, r)
	})
}

func imageFormToJSON(r *http.Request, maxBytes int64) ([]byte, int, error) {
	r.Body = http.MaxBytesReader(nil, r.Body, maxBytes+64<<10)
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("unreadable multipart form: %v", err)
	}
	fields := map[string]any{}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("the upload is larger than MAX_UPLOAD_BYTES (%d bytes)", maxBytes)
		}
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("unreadable multipart form: %v", err)
		}
		value, err := io.ReadAll(io.LimitReader(part, maxBytes+1))
		if errors.As(err, &tooLarge) || int64(len(value)) > maxBytes {
			return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("the upload is larger than MAX_UPLOAD_BYTES (%d bytes)", maxBytes)
		}
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("unreadable multipart form: %v", err)
		}
		switch name := part.FormName(); name {
		case "image":
			// The declared type is not believed; the service sniffs the bytes.
			fields["image_url"] = "data:application/octet-stream;base64," + base64.StdEncoding.EncodeToString(value)
		case "max_tokens", "cancel_after":
			if n, err := strconv.Atoi(string(value)); err == nil {
				fields[name] = n
			} else {
				fields[name] = string(value) // validation names the field
			}
		case "webhook_events":
			fields[name] = splitList(string(value))
		case "prompt", "model", "priority", "webhook":
			fields[name] = string(value)
		}
	}
	if _, ok := fields["image_url"]; !ok {
		return nil, http.StatusUnprocessableEntity, errors.New(`the form has no "image" file`)
	}
	body, err := json.Marshal(fields)
	return body, http.StatusInternalServerError, err
}

// splitList reads a form field that holds a list as "a,b,c".
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func writeProblem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(huma.ErrorModel{Title: http.StatusText(status), Status: status, Detail: detail})
}
