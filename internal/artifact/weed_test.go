package artifact

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pnsflow/pnsflow/internal/testutil/seaweedfs"
)

// The S3 tests run against a real SeaweedFS (internal/testutil/seaweedfs), started once for the
// package on first use and stopped by TestMain.

const (
	testAccessKey = seaweedfs.AccessKey
	testSecretKey = seaweedfs.SecretKey
	testBucket    = seaweedfs.Bucket
)

func TestMain(m *testing.M) {
	code := m.Run()
	seaweedfs.StopShared()
	os.Exit(code)
}

// testRepo returns the shared server's repository (with its bucket created).
func testRepo(t testing.TB) Repository {
	t.Helper()
	return Repository{
		Endpoint: seaweedfs.Shared(t).Endpoint, Bucket: testBucket, Region: DefaultRegion, Insecure: true, PathStyle: true,
		Credentials: Credentials{AccessKeyID: testAccessKey, SecretAccessKey: testSecretKey},
	}
}

func testClient(t testing.TB) *Client {
	t.Helper()
	c, err := NewClient(t.Context(), testRepo(t))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rawS3 is a plain SDK client with no retries, for the reference measurements.
func rawS3(r Repository) *s3.Client {
	return s3.New(s3.Options{
		Region: r.Region, BaseEndpoint: aws.String(r.URL()), UsePathStyle: true, RetryMaxAttempts: 1,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: r.Credentials.AccessKeyID, SecretAccessKey: r.Credentials.SecretAccessKey}, nil
		}),
	})
}

// testKey joins non-empty parts with "/", as the Pod builder makes keys.
func testKey(parts ...string) string {
	var keep []string
	for _, p := range parts {
		if p != "" {
			keep = append(keep, p)
		}
	}
	return strings.Join(keep, "/")
}
