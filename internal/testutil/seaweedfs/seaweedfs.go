// Package seaweedfs starts a real SeaweedFS S3 server (`weed mini`) on loopback for tests: one
// process, every port chosen here, one admin identity and one bucket. The binary is $WEED_BIN
// (the Makefile sets it) or whatever hack/seaweedfs.sh provides, building it when missing; a
// test that needs it fails when neither works, it never skips.
package seaweedfs

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
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

const (
	AccessKey = "pnsflow-test"
	SecretKey = "pnsflow-test-secret-key"
	// Bucket is created when the server starts.
	Bucket = "artifacts"
	// startTimeout bounds the wait for a fresh weed to accept CreateBucket (it is usually ready
	// within a second or two; CI machines can be much slower when busy).
	startTimeout = 60 * time.Second
)

// Server is a running weed.
type Server struct {
	// Endpoint is 127.0.0.1:port of its S3 API (plain http, path-style).
	Endpoint string
	cmd      *exec.Cmd
	exited   chan struct{}
	exitErr  error
	logPath  string
}

var (
	sharedOnce sync.Once
	shared     *Server
	sharedErr  error
)

// Shared is one server for the whole test binary, started on first use; StopShared (from
// TestMain) stops it. It fails t when weed cannot start or has died.
func Shared(t testing.TB) *Server {
	t.Helper()
	sharedOnce.Do(func() { shared, sharedErr = Start() })
	if sharedErr != nil {
		t.Fatalf("SeaweedFS for the S3 tests: %v", sharedErr)
	}
	select {
	case <-shared.exited:
		t.Fatalf("weed exited during the tests: %v; its log: %s", shared.exitErr, shared.logPath)
	default:
	}
	return shared
}

// StopShared stops the shared server if it was started.
func StopShared() {
	if shared != nil {
		shared.Stop()
	}
}

// Binary is $WEED_BIN, else hack/seaweedfs.sh's answer (which builds weed the first time).
func Binary() (string, error) {
	if b := os.Getenv("WEED_BIN"); b != "" {
		if _, err := os.Stat(b); err != nil {
			return "", fmt.Errorf("WEED_BIN=%s: %w", b, err)
		}
		return b, nil
	}
	root, err := moduleRoot()
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

// moduleRoot is the directory of the go.mod above the test's working directory (its package).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
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
func args(dir, logDir, s3Config string, p []int) []string {
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

// Start starts weed, trying again with new ports when it exits during startup: a port freed
// by freePorts can be taken (by any outbound connection) before weed binds it.
func Start() (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	for try := 1; ; try++ {
		w, err := startOnce(bin)
		if err == nil || try == 3 || !errors.Is(err, errExited) {
			return w, err
		}
		fmt.Fprintf(os.Stderr, "weed exited during startup, trying again with other ports: %v\n", err)
	}
}

var errExited = errors.New("weed exited before it was ready")

func startOnce(bin string) (w *Server, err error) {
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
		"credentials": []any{map[string]string{"accessKey": AccessKey, "secretKey": SecretKey}},
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
	cmd := exec.Command(bin, args(data, logDir, s3Config, ports)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group, so stop reaches anything it spawns; Pdeathsig so a test binary that
	// dies (timeout panic) does not leave weed holding ports.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	logFile.Close()
	w = &Server{Endpoint: "127.0.0.1:" + strconv.Itoa(ports[6]), cmd: cmd, exited: make(chan struct{}), logPath: logPath}
	go func() { w.exitErr = cmd.Wait(); close(w.exited) }()
	if err := w.CreateBucket(Bucket); err != nil {
		log := w.Tail()
		w.Stop()
		return nil, fmt.Errorf("%w; the end of weed's log:\n%s", err, log)
	}
	return w, nil
}

// CreateBucket is also the readiness probe: weed answers S3 before its filer and volume server
// are up, so the first request that can really succeed is the one to wait for. It polls with a
// bounded deadline and a short interval instead of sleeping a fixed time.
func (w *Server) CreateBucket(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	s3c := s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String("http://" + w.Endpoint), UsePathStyle: true, RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, ""),
	})
	var last error
	for {
		_, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-w.exited:
			return fmt.Errorf("%w (%v); last S3 error: %w", errExited, w.exitErr, last)
		case <-ctx.Done():
			return fmt.Errorf("weed not ready after %s: %w", startTimeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Tail is the end of weed's log, for a failure message.
func (w *Server) Tail() string {
	b, _ := os.ReadFile(w.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Stop ends weed gracefully (SIGTERM), then for good after a bounded wait, and removes its data.
func (w *Server) Stop() {
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
