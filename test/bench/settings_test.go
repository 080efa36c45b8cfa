//go:build bench

package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

type settings struct {
	sizes     []int
	mode      string
	executors int
	timeout   time.Duration
	out       string
	// managerArgs are extra flags for the manager binary, for tuning experiments.
	managerArgs []string
	root        string
	// profile is the sizes whose fan-out gets a kube-apiserver CPU profile.
	profile     map[int]bool
	contentType string
}

func loadSettings(t *testing.T) settings {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	s := settings{mode: envOr("BENCH_MANAGER", "binary"), root: root,
		out: envOr("BENCH_OUT", filepath.Join(root, "bin", "bench", time.Now().Format("20060102-150405")))}
	for f := range strings.SplitSeq(envOr("BENCH_N", "100,1000,5000"), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > v1alpha1.MaxStepItems {
			t.Fatalf("BENCH_N: %q is not a size between 1 and %d", f, v1alpha1.MaxStepItems)
		}
		s.sizes = append(s.sizes, n)
	}
	if s.executors, err = strconv.Atoi(envOr("BENCH_EXECUTORS", "64")); err != nil || s.executors < 1 {
		t.Fatalf("BENCH_EXECUTORS: %v", err)
	}
	if s.timeout, err = time.ParseDuration(envOr("BENCH_TIMEOUT", "10m")); err != nil {
		t.Fatalf("BENCH_TIMEOUT: %v", err)
	}
	s.managerArgs = strings.Fields(os.Getenv("BENCH_MANAGER_ARGS"))
	if len(s.managerArgs) > 0 && s.mode != "binary" {
		t.Fatal("BENCH_MANAGER_ARGS needs BENCH_MANAGER=binary")
	}
	s.profile, s.contentType = profileSizes(), os.Getenv("BENCH_CONTENT_TYPE")
	if s.contentType != "" && s.mode != "inprocess" {
		t.Fatal("BENCH_CONTENT_TYPE needs BENCH_MANAGER=inprocess (the binary reads a kubeconfig, which has no content type)")
	}
	if s.mode != "binary" && s.mode != "inprocess" {
		t.Fatalf("BENCH_MANAGER: %q is neither binary nor inprocess", s.mode)
	}
	if err := os.MkdirAll(s.out, 0o755); err != nil {
		t.Fatal(err)
	}
	return s
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// say prints progress as it happens (go test -v streams stdout).
func say(format string, args ...any) {
	fmt.Printf("bench %s  "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

func mustCreate(t *testing.T, path string) *os.File {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// envtestAssets returns kube-apiserver and etcd: KUBEBUILDER_ASSETS, else hack/envtest-assets.sh.
func envtestAssets(t *testing.T, root string) string {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	out, err := exec.Command(filepath.Join(root, "hack", "envtest-assets.sh")).Output()
	if err != nil {
		t.Fatalf("providing envtest assets: %v", err)
	}
	return strings.TrimSpace(string(out))
}
