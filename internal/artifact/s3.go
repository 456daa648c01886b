package artifact

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Config configures an S3-compatible store.
type S3Config struct {
	Endpoint string // https://s3.amazonaws.com, http://127.0.0.1:9000, …
	Bucket   string
	Region   string
	Prefix   string // key prefix inside the bucket
	// AccessKey and SecretKey, when set, are used; otherwise credentials come
	// from the AWS shared credentials file or an instance or task role.
	AccessKey    string
	SecretKey    string
	SessionToken string
	// PathStyle addresses buckets as endpoint/bucket (MinIO, most
	// self-hosted servers) instead of bucket.endpoint.
	PathStyle bool
	// Transport, when set, is used for every request (a custom CA, say).
	Transport http.RoundTripper
}

// partSize bounds the buffer of an upload of unknown length: S3's smallest
// part. Audio results are usually one part.
const partSize = 5 << 20

// S3 stores artifacts in an S3-compatible bucket, for API and workers on
// different machines.
type S3 struct {
	client *minio.Client
	bucket string
	prefix string
}

// NewS3 returns a store on cfg. It does no I/O.
func NewS3(cfg S3Config) (*S3, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("artifact: S3 endpoint must be an http(s) URL, got %q", cfg.Endpoint)
	}
	creds := credentials.NewChainCredentials([]credentials.Provider{
		&credentials.FileAWSCredentials{},
		&credentials.IAM{},
	})
	if cfg.AccessKey != "" {
		creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken)
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	client, err := minio.New(u.Host, &minio.Options{Creds: creds, Secure: u.Scheme == "https", Region: cfg.Region,
		BucketLookup: lookup, Transport: cfg.Transport})
	if err != nil {
		return nil, fmt.Errorf("artifact: S3 client: %w", err)
	}
	return &S3{client: client, bucket: cfg.Bucket, prefix: cfg.Prefix}, nil
}

func (s *S3) key(key string) (string, error) {
	if !validKey.MatchString(key) {
		return "", fmt.Errorf("artifact: invalid key %q", key)
	}
	return s.prefix + key, nil
}

// Check makes sure the bucket exists and the credentials reach it.
func (s *S3) Check(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("artifact: S3 bucket %s: %w", s.bucket, err)
	}
	if !ok {
		return fmt.Errorf("artifact: S3 bucket %s does not exist", s.bucket)
	}
	return nil
}

// Put streams r into the bucket under key, holding at most one part in memory.
func (s *S3) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	name, err := s.key(key)
	if err != nil {
		return 0, err
	}
	info, err := s.client.PutObject(ctx, s.bucket, name, contextReader{ctx, r}, -1, minio.PutObjectOptions{PartSize: partSize})
	if err != nil {
		return 0, fmt.Errorf("artifact: put %s: %w", key, err)
	}
	return info.Size, nil
}

// Open returns the object under key, or ErrNotFound. Reads and seeks are
// ranged GETs, so a range request fetches only its range.
func (s *S3) Open(ctx context.Context, key string) (Object, error) {
	name, err := s.key(key)
	if err != nil {
		return nil, ErrNotFound
	}
	obj, err := s.client.GetObject(ctx, s.bucket, name, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("artifact: open %s: %w", key, err)
	}
	info, err := obj.Stat()
	if err != nil {
		_ = obj.Close()
		if isNotFound(err) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("artifact: open %s: %w", key, err)
	}
	return &s3Object{Object: obj, size: info.Size, mod: info.LastModified}, nil
}

// Delete removes the object under key; a missing one is not an error.
func (s *S3) Delete(ctx context.Context, key string) error {
	name, err := s.key(key)
	if err != nil {
		return err
	}
	if err := s.client.RemoveObject(ctx, s.bucket, name, minio.RemoveObjectOptions{}); err != nil && !isNotFound(err) {
		return fmt.Errorf("artifact: delete %s: %w", key, err)
	}
	return nil
}

// Sweep deletes objects under the prefix last written more than maxAge ago.
// For very large buckets a lifecycle rule on the prefix does the same
// without listing.
func (s *S3) Sweep(ctx context.Context, maxAge time.Duration, now time.Time) (removed int, err error) {
	for obj := range s.client.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix, Recursive: true}) {
		if obj.Err != nil {
			return removed, fmt.Errorf("artifact: sweep: %w", obj.Err)
		}
		name := strings.TrimPrefix(obj.Key, s.prefix)
		if !validKey.MatchString(name) || KeptByRecord(name) || now.Sub(obj.LastModified) <= maxAge {
			continue
		}
		if s.client.RemoveObject(ctx, s.bucket, obj.Key, minio.RemoveObjectOptions{}) == nil {
			removed++
		}
	}
	return removed, nil
}

func isNotFound(err error) bool {
	code := minio.ToErrorResponse(err).Code
	return code == "NoSuchKey" || code == "NotFound"
}

type s3Object struct {
	*minio.Object
	size int64
	mod  time.Time
}

func (o *s3Object) Size() int64        { return o.size }
func (o *s3Object) ModTime() time.Time { return o.mod }
