//go:build bench

package artifact

// `make bench-artifacts`: throughput of the package against a real SeaweedFS on loopback, next to
// a plain SDK copy of the same bytes (PutObject/GetObject, one request per object, no transfer
// manager) as the reference. Each transfer runs in a fresh process of its own (this test binary,
// re-run as a child, with pns-executor's memory limit), so its peak RSS is what an executor
// uploading (or a loader downloading) those bytes would reach, not a growth hidden in a long-lived test process. Not run by
// `make test` (build tag bench); it asserts only that every transfer succeeds.
//
//	go test -tags bench ./internal/artifact -run TestBenchArtifacts -count=1 -v -timeout 30m

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
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

type benchRow struct {
	what    string
	bytes   int64
	took    time.Duration
	cpu     time.Duration // the child's user+system CPU time
	peakRSS int64         // the child's VmHWM
}

// Environment of a child transfer.
const (
	benchOpEnv       = "PNSFLOW_BENCH_OP"
	benchEndpointEnv = "PNSFLOW_BENCH_ENDPOINT"
	benchDirEnv      = "PNSFLOW_BENCH_DIR"
)

// benchOps are the transfers, each run alone in a child process.
var benchOps = map[string]func(ctx context.Context, c *Client, raw *s3.Client, dir string) error{
	// The executor uploads a file artifact from the open file, as here.
	"upload-file": func(ctx context.Context, c *Client, _ *s3.Client, dir string) error {
		f, err := os.Open(filepath.Join(dir, "big.src"))
		if err != nil {
			return err
		}
		defer f.Close()
		_, _, err = c.UploadFile(ctx, "bench/big", f)
		return err
	},
	"ref-put": func(ctx context.Context, c *Client, raw *s3.Client, dir string) error {
		f, err := os.Open(filepath.Join(dir, "big.src"))
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = raw.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(c.repo.Bucket), Key: aws.String("bench/big-ref"),
			Body: f, ContentLength: aws.Int64(benchFileSize)})
		return err
	},
	// A directory's archive is a stream of unknown length: multipart through the transfer manager.
	"upload-stream": func(ctx context.Context, c *Client, _ *s3.Client, _ string) error {
		_, _, err := c.UploadFile(ctx, "bench/big-stream", newGenReader(benchFileSize, 7))
		return err
	},
	// A loader writes what it downloads to a file in the inputs emptyDir.
	"download-file": func(ctx context.Context, c *Client, _ *s3.Client, dir string) error {
		return toFile(filepath.Join(dir, "big"), func(w io.Writer) error { _, _, err := c.Download(ctx, "bench/big", w); return err })
	},
	"ref-get": func(ctx context.Context, c *Client, raw *s3.Client, dir string) error {
		return toFile(filepath.Join(dir, "big-ref"), func(w io.Writer) error { return rawGet(ctx, raw, c.repo.Bucket, "bench/big-ref", w) })
	},
	"upload-dir": func(ctx context.Context, c *Client, _ *s3.Client, dir string) error {
		_, _, err := c.UploadDir(ctx, "bench/tree.tgz", filepath.Join(dir, "src"))
		return err
	},
	"ref-put-each": func(ctx context.Context, c *Client, raw *s3.Client, dir string) error {
		return eachFile(func(name string) error {
			b, err := os.ReadFile(filepath.Join(dir, "src", name))
			if err == nil {
				_, err = raw.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(c.repo.Bucket), Key: aws.String("bench/tree/" + name), Body: bytes.NewReader(b)})
			}
			return err
		})
	},
	"download-extract": func(ctx context.Context, c *Client, _ *s3.Client, dir string) error {
		_, _, err := c.DownloadAndExtract(ctx, "bench/tree.tgz", filepath.Join(dir, "pkg"))
		return err
	},
	"ref-get-each": func(ctx context.Context, c *Client, raw *s3.Client, dir string) error {
		return eachFile(func(name string) error {
			p := filepath.Join(dir, "ref", name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			return toFile(p, func(w io.Writer) error { return rawGet(ctx, raw, c.repo.Bucket, "bench/tree/"+name, w) })
		})
	},
}

func treeName(i int) string { return fmt.Sprintf("d%02d/f%04d", i%100, i) }

func eachFile(f func(name string) error) error {
	for i := range benchFiles {
		if err := f(treeName(i)); err != nil {
			return err
		}
	}
	return nil
}

func toFile(p string, write func(io.Writer) error) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func rawGet(ctx context.Context, raw *s3.Client, bucket, key string, w io.Writer) error {
	out, err := raw.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return err
	}
	defer out.Body.Close()
	_, err = io.Copy(w, out.Body)
	return err
}

// TestBenchChild is the child side of one transfer: it runs only when the benchmark starts this
// binary with the op in its environment, and prints its peak RSS.
func TestBenchChild(t *testing.T) {
	op := os.Getenv(benchOpEnv)
	if op == "" {
		return // not a child: TestBenchArtifacts runs the transfers
	}
	debug.SetMemoryLimit(SoftMemoryLimit) // as pns-executor sets it
	repo := Repository{Endpoint: os.Getenv(benchEndpointEnv), Bucket: testBucket, Region: DefaultRegion, Insecure: true, PathStyle: true,
		Credentials: Credentials{AccessKeyID: testAccessKey, SecretAccessKey: testSecretKey}}
	c, err := NewClient(t.Context(), repo)
	must(t, err)
	must(t, benchOps[op](t.Context(), c, rawS3(repo), os.Getenv(benchDirEnv)))
	fmt.Printf("VmHWM %d\n", procStatus(t, "VmHWM"))
}

// measure runs op in a child process and records its time, CPU and peak RSS.
func measure(t *testing.T, rows *[]benchRow, what string, n int64, op, endpoint, dir string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), benchOpEnv+"="+op, benchEndpointEnv+"="+endpoint, benchDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	start := time.Now()
	out, err := cmd.Output()
	took := time.Since(start)
	if err != nil {
		t.Fatalf("%s: %v\n%s", what, err, out)
	}
	var hwm int64
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM "); ok {
			hwm, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	if hwm == 0 {
		t.Fatalf("%s: the child reported no peak RSS: %s", what, out)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	*rows = append(*rows, benchRow{what, n, took, cpu, hwm})
	t.Logf("%s: %s", what, took.Round(time.Millisecond))
}

func TestBenchArtifacts(t *testing.T) {
	endpoint := testRepo(t).Endpoint
	dir := t.TempDir()
	var rows []benchRow
	run := func(what string, n int64, op string) { measure(t, &rows, what, n, op, endpoint, dir) }

	must(t, toFile(filepath.Join(dir, "big.src"), func(w io.Writer) error {
		_, err := io.Copy(w, newGenReader(benchFileSize, 7))
		return err
	}))
	run("1 GiB file   upload    artifact.UploadFile", benchFileSize, "upload-file")
	run("1 GiB file   upload    SDK PutObject", benchFileSize, "ref-put")
	run("1 GiB stream upload    artifact.UploadFile", benchFileSize, "upload-stream")
	run("1 GiB file   download  artifact.Download", benchFileSize, "download-file")
	run("1 GiB file   download  SDK GetObject", benchFileSize, "ref-get")
	must(t, os.Remove(filepath.Join(dir, "big")))
	must(t, os.Remove(filepath.Join(dir, "big.src")))
	must(t, os.Remove(filepath.Join(dir, "big-ref")))

	// A tree of 10 000 files of 4 KiB in 100 directories.
	gen := newGenReader(benchFiles*benchFileLen, 11)
	must(t, eachFile(func(name string) error {
		p := filepath.Join(dir, "src", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		b := make([]byte, benchFileLen)
		if _, err := io.ReadFull(gen, b); err != nil {
			return err
		}
		return os.WriteFile(p, b, 0o644)
	}))
	const treeBytes = benchFiles * benchFileLen
	run("10k files    upload    artifact.UploadDir", treeBytes, "upload-dir")
	run("10k files    upload    SDK PutObject each", treeBytes, "ref-put-each")
	run("10k files    download  artifact.DownloadAndExtract", treeBytes, "download-extract")
	run("10k files    download  SDK GetObject each", treeBytes, "ref-get-each")

	var b strings.Builder
	fmt.Fprintf(&b, "\nArtifact transfer benchmark, SeaweedFS on loopback (weed mini), %s/%s, %d CPUs (GOMAXPROCS %d)\n",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0))
	fmt.Fprintf(&b, "%-48s %8s %9s %8s %8s %13s\n", "transfer", "MiB", "seconds", "MB/s", "CPU s", "peak RSS MiB")
	for _, r := range rows {
		fmt.Fprintf(&b, "%-48s %8d %9.2f %8.1f %8.2f %13d\n", r.what, r.bytes>>20, r.took.Seconds(),
			float64(r.bytes)/1e6/r.took.Seconds(), r.cpu.Seconds(), r.peakRSS>>20)
	}
	b.WriteString("Each transfer ran in a fresh process; CPU s and peak RSS are that process's (weed's are not counted).\n" +
		"Both sides share the machine's cores with weed.\n")
	fmt.Print(b.String())
	if out := os.Getenv("BENCH_ARTIFACTS_OUT"); out != "" {
		must(t, os.MkdirAll(filepath.Dir(out), 0o755))
		must(t, os.WriteFile(out, []byte(b.String()), 0o644))
	}
}
