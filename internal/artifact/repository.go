package artifact

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

// The repository's defaults and the credentials' env vars. The ConfigMap that describes a
// repository is parsed by internal/executorconfig (ParseRepository), for the controller.
const (
	// DefaultRegion is used when the ConfigMap names none; S3-compatible servers ignore it but
	// SigV4 signs with it, so it must not be empty.
	DefaultRegion = "us-east-1"

	// AccessKeyEnv and SecretKeyEnv are where the executor finds the repository's credentials:
	// the kubelet fills them from the Secret named by secretName, so they never pass through the
	// API server in a Pod spec or a ConfigMap.
	AccessKeyEnv = "AWS_ACCESS_KEY_ID"
	SecretKeyEnv = "AWS_SECRET_ACCESS_KEY"
)

// Repository is an S3-compatible bucket that artifacts are stored in.
type Repository struct {
	// Endpoint is host[:port], without scheme: Insecure picks http or https.
	Endpoint string
	Bucket   string
	Region   string
	// Insecure talks plain http (an in-cluster SeaweedFS or MinIO without TLS).
	Insecure bool
	// PathStyle addresses the bucket as endpoint/bucket/key rather than bucket.endpoint/key,
	// which self-hosted servers need because they have no wildcard DNS.
	PathStyle bool
	// KeyPrefix starts every key of the repository (the Pod builder adds it); no leading or
	// trailing slash.
	KeyPrefix string
	// SecretName is the Secret (in the run's namespace) the credentials come from; the executor
	// never reads it, it gets Credentials from the environment (CredentialsFromEnv).
	SecretName  string
	Credentials Credentials
}

// Credentials are a static S3 access key pair.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
}

// String hides the secret so a logged Repository or Credentials never leaks it.
func (c Credentials) String() string {
	if c.SecretAccessKey == "" {
		return fmt.Sprintf("{%s, no secret}", c.AccessKeyID)
	}
	return fmt.Sprintf("{%s, secret redacted}", c.AccessKeyID)
}

// GoString keeps %#v from printing the secret too.
func (c Credentials) GoString() string { return c.String() }

// URL is the endpoint as the SDK wants it, with its scheme.
func (r Repository) URL() string {
	if r.Insecure {
		return "http://" + r.Endpoint
	}
	return "https://" + r.Endpoint
}

// CredentialsFromEnv reads AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. Both must be set: a
// half-configured Secret would otherwise surface later as a confusing signature error.
func CredentialsFromEnv() (Credentials, error) {
	c := Credentials{AccessKeyID: os.Getenv(AccessKeyEnv), SecretAccessKey: os.Getenv(SecretKeyEnv)}
	var missing []string
	if c.AccessKeyID == "" {
		missing = append(missing, AccessKeyEnv)
	}
	if c.SecretAccessKey == "" {
		missing = append(missing, SecretKeyEnv)
	}
	if len(missing) > 0 {
		return Credentials{}, fmt.Errorf("artifact repository credentials: %s not set (they come from the repository's Secret)", strings.Join(missing, " and "))
	}
	return c, nil
}

// ClientFromEnv connects to repo, as the Pod builder described it to the executor or the loader,
// with the credentials the kubelet put in the container's environment from the repository's
// Secret.
func ClientFromEnv(ctx context.Context, repo executorconfig.Repository) (*Client, error) {
	creds, err := CredentialsFromEnv()
	if err != nil {
		return nil, err
	}
	c, err := NewClient(ctx, RepositoryOf(repo, creds))
	if err != nil {
		return nil, fmt.Errorf("artifact repository: %w", err)
	}
	return c, nil
}

// RepositoryOf is the repository a ConfigMap describes (executorconfig.ParseRepository), with
// the credentials of its Secret.
func RepositoryOf(repo executorconfig.Repository, creds Credentials) Repository {
	return Repository{
		Endpoint: repo.Endpoint, Bucket: repo.Bucket, Region: repo.Region, Insecure: repo.Insecure,
		PathStyle: repo.PathStyle, KeyPrefix: repo.KeyPrefix, SecretName: repo.SecretName, Credentials: creds,
	}
}
