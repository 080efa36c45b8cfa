//go:build bench

package artifact

// `make bench-artifacts`: throughput of the package against a real SeaweedFS on loopback, next to
// a plain SDK copy of the same bytes from this process (PutObject/GetObject, one request per
// object, no transfer manager), with this process's peak RSS growth for each. Not run by
// `make test` (build tag bench); it asserts only that every transfer succeeds.
//
//	go test -tags bench ./internal/artifact -run TestBenchArtifacts -count=1 -v -timeout 30m

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

const (
	benchFileSize = 1 << 30
	benchFiles    = 10000
	benchFileLen  = 4 << 10
)

// seekableGen is a genReader that can Seek (its content is a function of the offset), which the
// plain SDK PutObject needs over http to hash the payload before sending it.
type seekableGen struct{ *genReader }

func (s seekableGen) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += s.off
	case io.SeekEnd:
		off += s.n
	}
	if off < 0 {
		return 0, fmt.Errorf("negative offset")
	}
	s.off = off
	return off, nil
}

type benchRow struct {
	what          string
	bytes         int64
	took          time.Duration
	cpu           time.Duration // this process's user+system CPU time
	peakRSSGrowth int64
}

func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	must(t, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func measure(t *testing.T, rows *[]benchRow, what string, n int64, f func() error) {
	t.Helper()
	resetPeakRSS(t)
	base := procStatus(t, "VmRSS")
	start, cpu := time.Now(), cpuTime(t)
	if err := f(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	took := time.Since(start)
	*rows = append(*rows, benchRow{what, n, took, cpuTime(t) - cpu, procStatus(t, "VmHWM") - base})
	t.Logf("%s: %s", what, took.Round(time.Millisecond))
}

func TestBenchArtifacts(t *testing.T) {
	c := testClient(t)
	raw := rawS3(c.Repository())
	ctx := t.Context()
	bucket := aws.String(c.Repository().Bucket)
	var rows []benchRow

	// One 1 GiB file.
	measure(t, &rows, "1 GiB file   upload    artifact.UploadFile", benchFileSize, func() error {
		_, _, err := c.UploadFile(ctx, "bench/big", newGenReader(benchFileSize, 7))
		return err
	})
	measure(t, &rows, "1 GiB file   upload    SDK PutObject", benchFileSize, func() error {
		_, err := raw.PutObject(ctx, &s3.PutObjectInput{Bucket: bucket, Key: aws.String("bench/big-ref"),
			Body: seekableGen{newGenReader(benchFileSize, 7)}, ContentLength: aws.Int64(benchFileSize)})
		return err
	})
	measure(t, &rows, "1 GiB file   download  artifact.Download", benchFileSize, func() error {
		_, _, err := c.Download(ctx, "bench/big", io.Discard)
		return err
	})
	measure(t, &rows, "1 GiB file   download  SDK GetObject", benchFileSize, func() error {
		out, err := raw.GetObject(ctx, &s3.GetObjectInput{Bucket: bucket, Key: aws.String("bench/big-ref")})
		if err != nil {
			return err
		}
		defer out.Body.Close()
		_, err = io.Copy(io.Discard, out.Body)
		return err
	})

	// A tree of 10 000 files of 4 KiB in 100 directories.
	src := t.TempDir()
	gen := newGenReader(benchFiles*benchFileLen, 11)
	var names []string
	for i := range benchFiles {
		name := fmt.Sprintf("d%02d/f%04d", i%100, i)
		p := filepath.Join(src, name)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		b := make([]byte, benchFileLen)
		if _, err := io.ReadFull(gen, b); err != nil {
			t.Fatal(err)
		}
		must(t, os.WriteFile(p, b, 0o644))
		names = append(names, name)
	}
	const treeBytes = benchFiles * benchFileLen
	measure(t, &rows, "10k files    upload    artifact.UploadDir", treeBytes, func() error {
		_, _, err := c.UploadDir(ctx, "bench/tree.tgz", src)
		return err
	})
	measure(t, &rows, "10k files    upload    SDK PutObject each", treeBytes, func() error {
		for _, name := range names {
			b, err := os.ReadFile(filepath.Join(src, name))
			if err != nil {
				return err
			}
			if _, err := raw.PutObject(ctx, &s3.PutObjectInput{Bucket: bucket, Key: aws.String("bench/tree/" + name), Body: bytes.NewReader(b)}); err != nil {
				return err
			}
		}
		return nil
	})
	dest := t.TempDir()
	measure(t, &rows, "10k files    download  artifact.DownloadAndExtract", treeBytes, func() error {
		_, _, err := c.DownloadAndExtract(ctx, "bench/tree.tgz", filepath.Join(dest, "pkg"))
		return err
	})
	measure(t, &rows, "10k files    download  SDK GetObject each", treeBytes, func() error {
		for _, name := range names {
			out, err := raw.GetObject(ctx, &s3.GetObjectInput{Bucket: bucket, Key: aws.String("bench/tree/" + name)})
			if err != nil {
				return err
			}
			p := filepath.Join(dest, "ref", name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			f, err := os.Create(p)
			if err == nil {
				_, err = io.Copy(f, out.Body)
				f.Close()
			}
			out.Body.Close()
			if err != nil {
				return err
			}
		}
		return nil
	})

	var b strings.Builder
	fmt.Fprintf(&b, "\nArtifact transfer benchmark, SeaweedFS on loopback (weed mini), %s/%s, %d CPUs (GOMAXPROCS %d)\n",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0))
	fmt.Fprintf(&b, "%-48s %8s %9s %8s %8s %14s\n", "transfer", "MiB", "seconds", "MB/s", "CPU s", "peak RSS +MiB")
	for _, r := range rows {
		fmt.Fprintf(&b, "%-48s %8d %9.2f %8.1f %8.2f %14d\n", r.what, r.bytes>>20, r.took.Seconds(),
			float64(r.bytes)/1e6/r.took.Seconds(), r.cpu.Seconds(), r.peakRSSGrowth>>20)
	}
	b.WriteString("CPU s is this process's CPU time (weed's is not counted); both sides share the machine's cores.\n")
	fmt.Print(b.String())
	if out := os.Getenv("BENCH_ARTIFACTS_OUT"); out != "" {
		must(t, os.MkdirAll(filepath.Dir(out), 0o755))
		must(t, os.WriteFile(out, []byte(b.String()), 0o644))
	}
}
