package artifact

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Download streams the object at key into w and returns its size and sha256 (hex), computed on
// the way through. A connection that breaks mid-body is resumed from the last byte received
// (a ranged GET pinned to the same ETag), so a flaky network does not restart a large download.
func (c *Client) Download(ctx context.Context, key string, w io.Writer) (size int64, sha256Hex string, err error) {
	d := newDigest()
	if _, err := c.copyObject(ctx, key, io.MultiWriter(w, d)); err != nil {
		return 0, "", c.wrap("download", key, err)
	}
	return d.n, d.sum(), nil
}

// DownloadAndExtract streams the tar+gzip object at key (as UploadDir stores it) into destDir,
// never holding it whole, and returns the archive's size and sha256. Entries that would land
// outside destDir are refused with an error naming the entry (see extractTarGz); what was
// extracted before a refused entry stays in destDir, so extract into a fresh directory.
func (c *Client) DownloadAndExtract(ctx context.Context, key, destDir string) (size int64, sha256Hex string, err error) {
	pr, pw := io.Pipe()
	d := newDigest()
	done := make(chan error, 1)
	go func() {
		_, err := c.copyObject(ctx, key, io.MultiWriter(pw, d))
		pw.CloseWithError(err)
		done <- err
	}()
	exErr := extractTarGz(pr, destDir)
	// Stops the download if extraction gave up early (a refused entry).
	pr.CloseWithError(errExtractEnded)
	dlErr := <-done
	if dlErr != nil && !errors.Is(dlErr, errExtractEnded) {
		// The download's failure caused whatever extraction then saw.
		return 0, "", c.wrap("download", key, dlErr)
	}
	if exErr == nil && dlErr != nil {
		// Cannot happen with a well-formed gzip stream (its end needs the body's end), but a
		// digest of part of the object must never be returned as the object's.
		exErr = errors.New("the archive ended before the object did")
	}
	if exErr != nil {
		return 0, "", fmt.Errorf("extract s3://%s/%s into %s: %w", c.repo.Bucket, key, destDir, exErr)
	}
	return d.n, d.sum(), nil
}

var errExtractEnded = errors.New("extraction ended before the archive did")

// copyObject writes the object at key to w. The SDK retries failed requests itself; this adds
// the one thing it cannot do, resuming a body that broke after the response began.
func (c *Client) copyObject(ctx context.Context, key string, w io.Writer) (int64, error) {
	var written int64
	var etag *string
	for attempt := 1; ; attempt++ {
		in := &s3.GetObjectInput{Bucket: aws.String(c.repo.Bucket), Key: aws.String(key)}
		if written > 0 {
			in.Range = aws.String(fmt.Sprintf("bytes=%d-", written))
			// The object must not change between the pieces we glue together.
			in.IfMatch = etag
		}
		out, err := c.s3.GetObject(ctx, in)
		if err != nil {
			return written, err
		}
		if etag == nil {
			etag = out.ETag
		}
		cw := &checkedWriter{w: w}
		n, err := io.Copy(cw, out.Body)
		out.Body.Close()
		written += n
		switch {
		case err == nil:
			return written, nil
		case cw.err != nil:
			return written, cw.err // the destination failed: nothing to resume
		case ctx.Err() != nil || attempt >= maxAttempts || !resumable(err):
			return written, fmt.Errorf("reading object body after %d bytes: %w", written, err)
		}
	}
}

// resumable says whether a body read error is a broken connection (worth a ranged retry) rather
// than, say, a checksum mismatch that retrying would only hide.
func resumable(err error) bool {
	var nerr net.Error
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.As(err, &nerr)
}

// checkedWriter remembers the writer's own error, to tell it apart from the body's.
type checkedWriter struct {
	w   io.Writer
	err error
}

func (c *checkedWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if err != nil {
		c.err = err
	}
	return n, err
}
