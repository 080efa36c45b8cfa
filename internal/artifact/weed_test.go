package artifact

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// The S3 tests run against a real SeaweedFS: `weed mini`, one process serving S3 on loopback,
// started once for the package on first use and stopped by TestMain. The binary is $WEED_BIN
// (the Makefile sets it) or whatever hack/seaweedfs.sh provides, building it when missing; if
// neither works the tests fail, they never skip.

const (
	testAccessKey = "pnsflow-test"
	testSecretKey = "pnsflow-test-secret-key"
	testBucket    = "artifacts"
	// weedStartTimeout bounds the wait for a fresh weed to accept CreateBucket (it is usually
	// ready within a second or two; CI machines can be much slower when busy).
	weedStartTimeout = 60 * time.Second
)

type weedServer struct {
	endpoint string // 127.0.0.1:port of its S3 API
	cmd      *exec.Cmd
	exited   chan struct{}
	exitErr  error
	logPath  string
}

var (
	weedOnce sync.Once
	weed     *weedServer
	weedErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if weed != nil {
		weed.stop()
	}
	os.Exit(code)
}

// testRepo returns the shared server's repository (with its bucket created), starting weed on
// first use.
func testRepo(t testing.TB) Repository {
	t.Helper()
	weedOnce.Do(func() { weed, weedErr = startWeed() })
	if weedErr != nil {
		t.Fatalf("SeaweedFS for the S3 tests: %v", weedErr)
	}
	select {
	case <-weed.exited:
		t.Fatalf("weed exited during the tests: %v; its log: %s", weed.exitErr, weed.logPath)
	default:
	}
	return Repository{
		Endpoint: weed.endpoint, Bucket: testBucket, Region: DefaultRegion, Insecure: true, PathStyle: true,
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

// weedBinary is $WEED_BIN, else hack/seaweedfs.sh's answer (which builds weed the first time).
func weedBinary() (string, error) {
	if b := os.Getenv("WEED_BIN"); b != "" {
		if _, err := os.Stat(b); err != nil {
			return "", fmt.Errorf("WEED_BIN=%s: %w", b, err)
		}
		return b, nil
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return "", err
	}
	cmd := exec.Command(filepath.Join(root, "hack", "seaweedfs.sh"))
	// The script is quiet when weed is built; a first build logs its progress (many minutes:
	// run `make seaweedfs` first, or give go test a -timeout to match).
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/seaweedfs.sh could not provide weed (its output is above): %w", err)
	}
	return filepath.Join(string(bytes.TrimSpace(out)), "weed"), nil
}

// freePorts reserves n distinct loopback ports by listening on port 0, then releases them for
// weed. Every port is passed explicitly: weed mini refuses an explicit port that is taken rather
// than silently moving to another one the test would not know.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// weedArgs is the command line of a single-process S3 server on loopback with one admin identity
// (see the S3 config written by startWeed), every port chosen by the test, and nothing extra: no
// WebDAV, admin UI, Iceberg or Lance endpoints, no telemetry, no bucket auto-creation (a missing
// bucket must stay missing for the tests).
func weedArgs(dir, logDir, s3Config string, p []int) []string {
	return []string{
		// A global option, before the command: glog files go with the test's data, not to /tmp.
		"-logdir=" + logDir,
		"mini",
		"-dir=" + dir,
		"-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-master.port=" + strconv.Itoa(p[0]), "-master.port.grpc=" + strconv.Itoa(p[1]),
		"-volume.port=" + strconv.Itoa(p[2]), "-volume.port.grpc=" + strconv.Itoa(p[3]),
		"-filer.port=" + strconv.Itoa(p[4]), "-filer.port.grpc=" + strconv.Itoa(p[5]),
		"-s3.port=" + strconv.Itoa(p[6]), "-s3.port.grpc=" + strconv.Itoa(p[7]),
		"-s3.port.iceberg=0", "-s3.port.lance=0",
		// mini always runs its admin server (maintenance workers); pin it too, and drop the
		// legacy compatibility listener, so no fixed default port is ever taken.
		"-admin.port=" + strconv.Itoa(p[8]), "-admin.port.grpc=" + strconv.Itoa(p[9]), "-admin.port.legacy=0",
		"-s3.config=" + s3Config,
		"-s3.autoCreateBucket=false",
		"-webdav=false", "-admin.ui=false",
		"-master.telemetry=false",
	}
}

// startWeed starts weed, trying again with new ports when it exits during startup: a port freed
// by freePorts can be taken (by any outbound connection) before weed binds it.
func startWeed() (*weedServer, error) {
	bin, err := weedBinary()
	if err != nil {
		return nil, err
	}
	for try := 1; ; try++ {
		w, err := startWeedOnce(bin)
		if err == nil || try == 3 || !errors.Is(err, errWeedExited) {
			return w, err
		}
		fmt.Fprintf(os.Stderr, "weed exited during startup, trying again with other ports: %v\n", err)
	}
}

var errWeedExited = errors.New("weed exited before it was ready")

func startWeedOnce(bin string) (w *weedServer, err error) {
	dir, err := os.MkdirTemp("", "pnsflow-weed-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	cfg := map[string]any{"identities": []any{map[string]any{
		"name":        "pnsflow",
		"credentials": []any{map[string]string{"accessKey": testAccessKey, "secretKey": testSecretKey}},
		"actions":     []string{"Admin", "Read", "Write", "List", "Tagging"},
	}}}
	cfgJSON, _ := json.Marshal(cfg)
	s3Config := filepath.Join(dir, "s3.json")
	if err := os.WriteFile(s3Config, cfgJSON, 0o600); err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		return nil, err
	}
	ports, err := freePorts(10)
	if err != nil {
		return nil, err
	}
	logDir := filepath.Join(dir, "log")
	if err := os.Mkdir(logDir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "weed.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, weedArgs(data, logDir, s3Config, ports)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group, so stop reaches anything it spawns; Pdeathsig so a test binary that
	// dies (timeout panic) does not leave weed holding ports.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	logFile.Close()
	w = &weedServer{endpoint: "127.0.0.1:" + strconv.Itoa(ports[6]), cmd: cmd, exited: make(chan struct{}), logPath: logPath}
	go func() { w.exitErr = cmd.Wait(); close(w.exited) }()
	if err := w.createBucket(testBucket); err != nil {
		log := w.tail()
		w.stop()
		return nil, fmt.Errorf("%w; the end of weed's log:\n%s", err, log)
	}
	return w, nil
}

// createBucket is also the readiness probe: weed answers S3 before its filer and volume server
// are up, so the first request that can really succeed is the one to wait for. It polls with a
// bounded deadline and a short interval instead of sleeping a fixed time.
func (w *weedServer) createBucket(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), weedStartTimeout)
	defer cancel()
	s3c := rawS3(Repository{Endpoint: w.endpoint, Region: DefaultRegion, Insecure: true, PathStyle: true,
		Credentials: Credentials{AccessKeyID: testAccessKey, SecretAccessKey: testSecretKey}})
	var last error
	for {
		_, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-w.exited:
			return fmt.Errorf("%w (%v); last S3 error: %w", errWeedExited, w.exitErr, last)
		case <-ctx.Done():
			return fmt.Errorf("weed not ready after %s: %w", weedStartTimeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// rawS3 is a plain SDK client with no retries, for the helper and the reference measurements.
func rawS3(r Repository) *s3.Client {
	return s3.New(s3.Options{
		Region: r.Region, BaseEndpoint: aws.String(r.URL()), UsePathStyle: true, RetryMaxAttempts: 1,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: r.Credentials.AccessKeyID, SecretAccessKey: r.Credentials.SecretAccessKey}, nil
		}),
	})
}

func (w *weedServer) tail() string {
	b, _ := os.ReadFile(w.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// stop ends weed gracefully (SIGTERM), then for good after a bounded wait, and removes its data.
func (w *weedServer) stop() {
	pgid := w.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-w.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-w.exited
	}
	if err := os.RemoveAll(filepath.Dir(w.logPath)); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(os.Stderr, "removing weed's data: %v\n", err)
	}
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
