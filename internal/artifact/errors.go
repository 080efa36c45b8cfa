package artifact

import (
	"context"
	"errors"
	"fmt"
	"net"

	smithy "github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// The kinds of failure a caller acts on differently: a missing artifact may be optional, bad
// credentials or a missing bucket are configuration errors no retry fixes, an unreachable
// repository may be worth a retry later. Errors returned by Client wrap one of these (test with
// errors.Is) together with the repository's own error (errors.As reaches smithy.APIError).
var (
	ErrNotFound       = errors.New("artifact not found")
	ErrAccessDenied   = errors.New("artifact repository denied access (check the credentials and the bucket's policy)")
	ErrBucketNotFound = errors.New("artifact repository bucket does not exist")
	ErrUnreachable    = errors.New("artifact repository unreachable or failing (after retries)")
)

// wrap names the operation and the object, and adds the kind of failure when it is one of ours.
func (c *Client) wrap(op, key string, err error) error {
	if err == nil {
		return nil
	}
	where := fmt.Sprintf("%s s3://%s/%s", op, c.repo.Bucket, key)
	if kind := classify(err); kind != nil {
		return fmt.Errorf("%s: %w: %w", where, kind, err)
	}
	return fmt.Errorf("%s: %w", where, err)
}

// classify maps an SDK error to one of the sentinels, or nil when it is none of them (a
// cancelled context, a local read error, an archive refused by extraction).
func classify(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return ErrNotFound
		case "NoSuchBucket":
			return ErrBucketNotFound
		case "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch",
			"InvalidToken", "ExpiredToken", "AccountProblem", "AllAccessDisabled":
			return ErrAccessDenied
		}
	}
	// No HTTP response at all: dial, TLS or read failures that outlived the retries. Checked
	// before the status: the SDK reports them as a response error with status 0.
	var send *smithyhttp.RequestSendError
	var nerr net.Error
	if errors.As(err, &send) || errors.As(err, &nerr) {
		return ErrUnreachable
	}
	var resp *smithyhttp.ResponseError
	if errors.As(err, &resp) {
		switch code := resp.HTTPStatusCode(); {
		case code == 401 || code == 403:
			return ErrAccessDenied
		case code == 404:
			return ErrNotFound
		case code >= 500:
			// The retryer already retried 5xx; what is left is a repository that keeps failing.
			return ErrUnreachable
		}
	}
	return nil
}
