package artifact

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

const (
	// maxAttempts bounds every S3 call (first try included): an unreachable repository fails in
	// seconds, not minutes, and the executor can report it while the Pod still exists.
	maxAttempts = 5
	// baseDelay and maxBackoff shape the SDK's jittered exponential backoff: the n-th retry
	// waits a random part of min(baseDelay*2^(n-1), maxBackoff), so the four retries wait at
	// most 0.5+1+2+4 = 7.5 s. The SDK's 50 ms base would give up on a repository that is merely
	// restarting within about a second.
	baseDelay  = 500 * time.Millisecond
	maxBackoff = 4 * time.Second

	// partSize and concurrency bound an upload's memory: the transfer manager holds at most
	// concurrency+1 pooled parts plus the first part (25 MiB) whatever the stream's length.
	// 5 MiB is S3's smallest part: it allows 50 GiB streams of unknown length (10 000 parts);
	// for a stream that can Seek, the SDK knows the length and raises the part size when it
	// needs to. 8 MiB parts were no faster on loopback and cost 10 MiB more peak RSS.
	partSize    = 5 << 20
	concurrency = 3

	// SoftMemoryLimit is the Go runtime's memory limit in the processes that transfer artifacts
	// (the executor and the loader, and the benchmark's transfers): with the default GOGC the
	// heap may reach twice the live parts before a collection, which alone would pass the
	// executor's 64 MiB; near this limit the collector runs sooner instead.
	SoftMemoryLimit = 48 << 20

	dialTimeout = 10 * time.Second
	// responseHeaderTimeout counts from the end of the request body: a server that accepted a
	// part but never answers is treated as a timeout (and retried) rather than hanging forever.
	responseHeaderTimeout = time.Minute
	// abortTimeout gives AbortMultipartUpload a fresh context when the caller's was cancelled,
	// so a cancelled upload leaves no orphan parts behind.
	abortTimeout = 30 * time.Second
)

// Client stores and fetches artifacts in one Repository. It is safe for concurrent use.
type Client struct {
	repo Repository
	s3   *s3.Client
	tm   *transfermanager.Client
}

// DialFunc opens the connection to the repository's endpoint in place of a plain TCP dial.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Option changes how NewClient reaches the repository.
type Option func(*options)

type options struct{ dial DialFunc }

// WithDial makes every connection through dial (the command line's port-forward to an in-cluster
// repository). Requests still name and sign for the endpoint, so the server checks what it
// would check for a direct request.
func WithDial(dial DialFunc) Option { return func(o *options) { o.dial = dial } }

// NewClient builds a client for repo with its static Credentials (empty ones mean anonymous
// requests). It does not contact the repository: the first call reports a bad endpoint or
// credentials, as an error wrapping ErrUnreachable or ErrAccessDenied.
func NewClient(ctx context.Context, repo Repository, opts ...Option) (*Client, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if repo.Endpoint == "" || repo.Bucket == "" {
		return nil, errors.New("artifact repository: endpoint and bucket are required")
	}
	if repo.Region == "" {
		repo.Region = DefaultRegion
	}
	var creds aws.CredentialsProvider = aws.AnonymousCredentials{}
	if repo.Credentials.AccessKeyID != "" || repo.Credentials.SecretAccessKey != "" {
		creds = credentials.NewStaticCredentialsProvider(repo.Credentials.AccessKeyID, repo.Credentials.SecretAccessKey, "")
	}
	httpClient := awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) { d.Timeout = dialTimeout }).
		WithTransportOptions(func(t *http.Transport) {
			t.ResponseHeaderTimeout = responseHeaderTimeout
			if o.dial != nil {
				t.DialContext = o.dial
			}
			if t.TLSClientConfig == nil {
				t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
			}
		})
	// s3.New rather than config.LoadDefaultConfig: the repository is fully described by its
	// ConfigMap and Secret, so nothing from ~/.aws, AWS_PROFILE or AWS_ENDPOINT_URL may leak in.
	s3c := s3.New(s3.Options{
		Region:       repo.Region,
		BaseEndpoint: aws.String(repo.URL()),
		UsePathStyle: repo.PathStyle,
		Credentials:  creds,
		HTTPClient:   httpClient,
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = maxAttempts
			o.BaseDelay = baseDelay
			o.MaxBackoff = maxBackoff
			// The default token bucket turns a burst of failures into "retry quota exceeded"
			// without even trying; maxAttempts already bounds the work.
			o.RateLimiter = ratelimit.None
		}),
		// S3-compatible servers often return objects without a checksum the SDK can verify;
		// that is expected, not worth a warning per download.
		DisableLogOutputChecksumValidationSkipped: true,
	})
	tm := transfermanager.New(s3c, func(o *transfermanager.Options) {
		o.PartSizeBytes = partSize
		o.MultipartUploadThreshold = partSize
		o.Concurrency = concurrency
		o.FailTimeout = abortTimeout
	})
	return &Client{repo: repo, s3: s3c, tm: tm}, nil
}

// Repository is the repository this client talks to.
func (c *Client) Repository() Repository { return c.repo }
