// Package artifact stores StepRun artifacts in an S3-compatible repository with the AWS SDK for
// Go v2: files and directory trees (as tar+gzip) are streamed up and down with bounded memory,
// their size and sha256 computed on the way, and archives are extracted without ever writing
// outside the destination (tar-slip is refused, not repaired).
//
// Keys are <keyPrefix>/<namespace>/<steprun>/<artifact>, made by the Pod builder. A Repository
// comes from a ConfigMap (internal/executorconfig's ParseRepository, in the controller) plus
// credentials from the environment (CredentialsFromEnv). Errors wrap ErrNotFound,
// ErrAccessDenied, ErrBucketNotFound or ErrUnreachable when they are one of those.
//
// The tests run against a real SeaweedFS (`weed`, built by hack/seaweedfs.sh; see weed_test.go).
package artifact
