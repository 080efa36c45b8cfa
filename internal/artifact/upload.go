package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
)

// UploadFile streams r to key and returns the number of bytes stored and their sha256 (hex),
// both computed on the way through. Input larger than one part goes up as a multipart upload of
// bounded memory; a failed one is aborted, so no partial object is ever visible under key.
func (c *Client) UploadFile(ctx context.Context, key string, r io.Reader) (size int64, sha256Hex string, err error) {
	return c.Upload(ctx, key, ArchiveNone, r)
}

// Upload is UploadFile for content stored as archive (ArchiveNone, or ArchiveTgz with r the
// archive), recorded with the object so a loader knows whether to extract it.
func (c *Client) Upload(ctx context.Context, key, archive string, r io.Reader) (size int64, sha256Hex string, err error) {
	d := newDigest()
	in := &transfermanager.UploadObjectInput{
		Bucket: aws.String(c.repo.Bucket),
		Key:    aws.String(key),
		// The tee hides r's Seek, so the transfer manager never rewinds past bytes it hashed.
		Body:     io.TeeReader(r, d),
		Metadata: map[string]string{archiveMetadata: archive},
	}
	if n, ok := remaining(r); ok {
		// Lets the SDK raise the part size for streams beyond 10 000 default parts.
		in.ContentLength = aws.Int64(n)
	}
	if _, err := c.tm.UploadObject(ctx, in); err != nil {
		return 0, "", c.wrap("upload", key, err)
	}
	return d.n, d.sum(), nil
}

// remaining is how many bytes a seekable r has left to read, when it can tell without reading.
func remaining(r io.Reader) (int64, bool) {
	s, ok := r.(io.Seeker)
	if !ok {
		return 0, false
	}
	cur, err := s.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, false
	}
	end, err := s.Seek(0, io.SeekEnd)
	if _, serr := s.Seek(cur, io.SeekStart); err != nil || serr != nil || end < cur {
		return 0, false
	}
	return end - cur, true
}

// UploadDir stores the tree at dir as one tar+gzip object at key (see writeTarGz for what goes
// in), streamed through a pipe so neither the archive nor any file is held in memory. size and
// sha256Hex describe the archive as stored.
func (c *Client) UploadDir(ctx context.Context, key, dir string) (size int64, sha256Hex string, err error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := writeTarGz(pw, dir)
		// A nil error closes the pipe with EOF, ending the upload normally.
		pw.CloseWithError(err)
		done <- err
	}()
	size, sha256Hex, upErr := c.Upload(ctx, key, ArchiveTgz, pr)
	// Unblocks the archiver if the upload stopped reading early.
	pr.CloseWithError(errUploadEnded)
	if tarErr := <-done; tarErr != nil && !errors.Is(tarErr, errUploadEnded) {
		// The archiver's failure is the cause; the upload error it provoked adds nothing.
		return 0, "", fmt.Errorf("upload s3://%s/%s: archiving %s: %w", c.repo.Bucket, key, dir, tarErr)
	}
	if upErr != nil {
		return 0, "", upErr
	}
	return size, sha256Hex, nil
}

// errUploadEnded is what the archiver sees when the upload stopped reading: then the upload's
// error is the one to report.
var errUploadEnded = errors.New("upload ended before the archive was complete")

// digest counts and hashes what is written to it.
type digest struct {
	h hash.Hash
	n int64
}

func newDigest() *digest { return &digest{h: sha256.New()} }

func (d *digest) Write(p []byte) (int, error) {
	d.n += int64(len(p))
	return d.h.Write(p)
}

func (d *digest) sum() string { return hex.EncodeToString(d.h.Sum(nil)) }
