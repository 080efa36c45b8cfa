package artifact

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	smithy "github.com/aws/smithy-go"
)

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// onlyReader hides every method but Read, like a pipe: the upload cannot know the length.
type onlyReader struct{ io.Reader }

func TestUploadFileThenDownloadGivesTheSameBytesAndDigest(t *testing.T) {
	c := testClient(t)
	for _, tc := range []struct {
		name string
		size int
		body func([]byte) io.Reader
	}{
		{"a small file in one PUT", 1000, func(b []byte) io.Reader { return bytes.NewReader(b) }},
		// Bigger than one part: a multipart upload of a stream of unknown length.
		{"a stream of several parts", 3*partSize + 12345, func(b []byte) io.Reader { return onlyReader{bytes.NewReader(b)} }},
		{"exactly one part", partSize, func(b []byte) io.Reader { return onlyReader{bytes.NewReader(b)} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := randomBytes(t, tc.size)
			key := testKey("", "ns", "roundtrip", tc.name)
			n, sum, err := c.UploadFile(t.Context(), key, tc.body(data))
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(len(data)) || sum != sha(data) {
				t.Errorf("upload reported %d bytes sha256 %s, want %d %s", n, sum, len(data), sha(data))
			}
			var got bytes.Buffer
			n, sum, err = c.Download(t.Context(), key, &got)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), data) || n != int64(len(data)) || sum != sha(data) {
				t.Errorf("download: %d bytes sha256 %s, want %d %s (bytes equal: %v)", n, sum, len(data), sha(data), bytes.Equal(got.Bytes(), data))
			}
		})
	}
}

func TestUploadFileOfAnOpenFileUsesItsLength(t *testing.T) {
	c := testClient(t)
	data := randomBytes(t, 2*partSize+1)
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(5, io.SeekStart); err != nil { // from the current offset, not the start
		t.Fatal(err)
	}
	n, sum, err := c.UploadFile(t.Context(), "ns/sr/file", f)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(data)-5) || sum != sha(data[5:]) {
		t.Errorf("got %d %s, want %d %s", n, sum, len(data)-5, sha(data[5:]))
	}
}

func TestAnEmptyFileRoundTrips(t *testing.T) {
	c := testClient(t)
	n, sum, err := c.UploadFile(t.Context(), "ns/sr/empty", strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 || sum != sha(nil) {
		t.Errorf("upload: %d %s", n, sum)
	}
	var got bytes.Buffer
	n, sum, err = c.Download(t.Context(), "ns/sr/empty", &got)
	if err != nil || n != 0 || sum != sha(nil) || got.Len() != 0 {
		t.Errorf("download: %d %s %v (%d bytes)", n, sum, err, got.Len())
	}
}

func TestKeysWithSpacesAndUnicodeRoundTrip(t *testing.T) {
	c := testClient(t)
	key := testKey("pre fix", "ns", "sr ü", "my file é 日本 +%&?#=.txt")
	data := []byte("bonjour 🌍\n")
	if _, _, err := c.UploadFile(t.Context(), key, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, _, err := c.Download(t.Context(), key, &got); err != nil {
		t.Fatal(err)
	}
	if got.String() != string(data) {
		t.Errorf("got %q", got.String())
	}
}

func TestDownloadOfAMissingKeyIsErrNotFound(t *testing.T) {
	c := testClient(t)
	_, _, err := c.Download(t.Context(), "ns/sr/never-uploaded", io.Discard)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("error = %v, want ErrNotFound", err)
	}
	var api smithy.APIError
	if !errors.As(err, &api) || !strings.Contains(err.Error(), "s3://artifacts/ns/sr/never-uploaded") {
		t.Errorf("error %q should name the object and wrap the repository's error", err)
	}
	if _, _, err := c.DownloadAndExtract(t.Context(), "ns/sr/never-uploaded", t.TempDir()); !errors.Is(err, ErrNotFound) {
		t.Errorf("DownloadAndExtract error = %v, want ErrNotFound", err)
	}
}

func TestWrongCredentialsAreErrAccessDenied(t *testing.T) {
	repo := testRepo(t)
	repo.Credentials.SecretAccessKey = "wrong"
	c, err := NewClient(t.Context(), repo)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.UploadFile(t.Context(), "ns/sr/x", strings.NewReader("x"))
	if !errors.Is(err, ErrAccessDenied) {
		t.Fatalf("upload error = %v, want ErrAccessDenied", err)
	}
	t.Logf("upload with a wrong secret: %v", err)
	repo.Credentials.AccessKeyID = "nobody"
	c, _ = NewClient(t.Context(), repo)
	if _, _, err = c.Download(t.Context(), "ns/sr/x", io.Discard); !errors.Is(err, ErrAccessDenied) {
		t.Fatalf("download error = %v, want ErrAccessDenied", err)
	}
}

func TestAMissingBucketIsErrBucketNotFound(t *testing.T) {
	repo := testRepo(t)
	repo.Bucket = "no-such-bucket"
	c, err := NewClient(t.Context(), repo)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.UploadFile(t.Context(), "ns/sr/x", strings.NewReader("x"))
	if !errors.Is(err, ErrBucketNotFound) {
		t.Fatalf("upload error = %v, want ErrBucketNotFound", err)
	}
	t.Logf("upload to a missing bucket: %v", err)
	if _, _, err = c.Download(t.Context(), "ns/sr/x", io.Discard); !errors.Is(err, ErrBucketNotFound) {
		t.Errorf("download error = %v, want ErrBucketNotFound", err)
	}
}

func TestARepositoryThatIsDownFailsAfterBoundedRetries(t *testing.T) {
	// A port nothing listens on: every attempt is refused at once, so the time is the backoff.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	repo := Repository{Endpoint: addr, Bucket: testBucket, Region: DefaultRegion, Insecure: true, PathStyle: true,
		Credentials: Credentials{AccessKeyID: "a", SecretAccessKey: "b"}}
	c, err := NewClient(t.Context(), repo)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // a safety net, not the bound tested
	defer cancel()
	start := time.Now()
	_, _, err = c.UploadFile(ctx, "ns/sr/x", strings.NewReader("x"))
	took := time.Since(start)
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("error = %v, want ErrUnreachable", err)
	}
	if !strings.Contains(err.Error(), "exceeded maximum number of attempts, 5") || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("error %q should say it retried and why it failed", err)
	}
	var waits time.Duration // the longest the retryer may wait in all
	for i := range maxAttempts - 1 {
		waits += min(baseDelay<<i, maxBackoff)
	}
	if bound := waits + 5*time.Second; took > bound {
		t.Errorf("gave up after %s, want at most %s", took, bound)
	}
	t.Logf("gave up after %s: %v", took.Round(time.Millisecond), err)
	if _, _, err := c.Download(ctx, "ns/sr/x", io.Discard); !errors.Is(err, ErrUnreachable) {
		t.Errorf("download error = %v, want ErrUnreachable", err)
	}
}

// buildTree makes a directory with what an output directory can hold.
func buildTree(t *testing.T) string {
	dir := t.TempDir()
	files := map[string]string{
		"a.txt":                  "alpha\n",
		"empty":                  "",
		"sub/b.bin":              string(randomBytes(t, 3*partSize/2)),
		"sub/deeper/c.json":      `{"c":1}`,
		"with space/é 日本.txt":    "unicode\n",
		"sub/deeper/read-only":   "ro",
		strings.Repeat("n", 200): "a name longer than ustar's 100 bytes",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	must(t, os.Chmod(filepath.Join(dir, "sub/deeper/read-only"), 0o444))
	must(t, os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\n"), 0o755))
	must(t, os.Mkdir(filepath.Join(dir, "empty-dir"), 0o700))
	must(t, os.Symlink("sub/deeper/c.json", filepath.Join(dir, "link-to-file")))
	must(t, os.Symlink("sub", filepath.Join(dir, "link-to-dir")))
	must(t, os.Symlink("does-not-exist", filepath.Join(dir, "dangling")))
	return dir
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// treeOf describes a tree: type, permission bits, content or link target of every entry.
func treeOf(t *testing.T, dir string) map[string]string {
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		desc := info.Mode().String()
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			desc += " -> " + target
		case d.Type().IsRegular():
			b, _ := os.ReadFile(p)
			desc += " " + sha(b)
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestUploadDirThenDownloadAndExtractRecreatesTheTree(t *testing.T) {
	c := testClient(t)
	src := buildTree(t)
	n, sum, err := c.UploadDir(t.Context(), "ns/sr/tree.tgz", src)
	if err != nil {
		t.Fatal(err)
	}
	var archive bytes.Buffer
	if _, _, err := c.Download(t.Context(), "ns/sr/tree.tgz", &archive); err != nil {
		t.Fatal(err)
	}
	if n != int64(archive.Len()) || sum != sha(archive.Bytes()) {
		t.Errorf("UploadDir reported %d %s, stored object is %d %s", n, sum, archive.Len(), sha(archive.Bytes()))
	}
	dest := filepath.Join(t.TempDir(), "out")
	dn, dsum, err := c.DownloadAndExtract(t.Context(), "ns/sr/tree.tgz", dest)
	if err != nil {
		t.Fatal(err)
	}
	if dn != n || dsum != sum {
		t.Errorf("DownloadAndExtract reported %d %s, want %d %s", dn, dsum, n, sum)
	}
	want, got := treeOf(t, src), treeOf(t, dest)
	delete(want, ".")
	delete(got, ".")
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: extracted but not in the source", k)
		}
	}
}

func TestUploadDirIsDeterministic(t *testing.T) {
	c := testClient(t)
	src := buildTree(t)
	_, sum1, err := c.UploadDir(t.Context(), "ns/sr/det1.tgz", src)
	if err != nil {
		t.Fatal(err)
	}
	_, sum2, err := c.UploadDir(t.Context(), "ns/sr/det2.tgz", src)
	if err != nil {
		t.Fatal(err)
	}
	if sum1 != sum2 {
		t.Errorf("two archives of one tree differ: %s vs %s", sum1, sum2)
	}
}

func TestUploadDirRefusesASpecialFileAndStoresNothing(t *testing.T) {
	c := testClient(t)
	src := buildTree(t)
	// A FIFO stands for any special file: archiving it silently would lose it.
	must(t, syscall.Mkfifo(filepath.Join(src, "sub", "fifo"), 0o644))
	_, _, err := c.UploadDir(t.Context(), "ns/sr/special.tgz", src)
	if err == nil || !strings.Contains(err.Error(), "sub/fifo: unsupported file type") {
		t.Fatalf("error = %v, want one naming sub/fifo", err)
	}
	if _, _, err := c.Download(t.Context(), "ns/sr/special.tgz", io.Discard); !errors.Is(err, ErrNotFound) {
		t.Errorf("a failed UploadDir left an object behind (download error %v)", err)
	}
}

func TestUploadDirOfAMissingDirectoryFails(t *testing.T) {
	c := testClient(t)
	_, _, err := c.UploadDir(t.Context(), "ns/sr/missing.tgz", filepath.Join(t.TempDir(), "nope"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("error = %v, want ErrNotExist", err)
	}
}

func TestACancelledUploadReturnsTheContextError(t *testing.T) {
	c := testClient(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, _, err := c.UploadDir(ctx, "ns/sr/cancelled.tgz", buildTree(t))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want context.Canceled", err)
	}
}
