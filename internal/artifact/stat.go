package artifact

import (
	"context"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// How an object is stored, recorded in its user metadata under archiveMetadata.
const (
	ArchiveNone = "none"
	ArchiveTgz  = "tgz"
	// archiveMetadata is sent as x-amz-meta-pnsflow-archive; S3 returns metadata keys
	// lower-cased, which this already is.
	archiveMetadata = "pnsflow-archive"
)

// Object is what Stat learns about a stored object.
type Object struct {
	Size int64
	// Archive is ArchiveTgz or ArchiveNone as recorded at upload, empty for an object stored
	// by something else.
	Archive string
}

// Stat describes the object at key without reading it; a missing object is ErrNotFound.
func (c *Client) Stat(ctx context.Context, key string) (Object, error) {
	out, err := c.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(c.repo.Bucket), Key: aws.String(key)})
	if err != nil {
		return Object{}, c.wrap("stat", key, err)
	}
	o := Object{Size: aws.ToInt64(out.ContentLength)}
	for k, v := range out.Metadata {
		if strings.EqualFold(k, archiveMetadata) && (v == ArchiveNone || v == ArchiveTgz) {
			o.Archive = v
		}
	}
	return o, nil
}
