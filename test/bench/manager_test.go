//go:build bench

package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/pnsflow/pnsflow/internal/manager"
)

// executorImage only names the sidecar in the Pods: no kubelet runs them.
const executorImage = "pnsflow/pns-executor:dev"

// runningManager is a manager started for one N.
type runningManager interface {
	// PID is the process whose peak RSS is the manager's.
	PID() int
	// Exited is closed when the manager has stopped, for whatever reason.
	Exited() <-chan struct{}
	// MetricsURL serves the manager's Prometheus metrics.
	MetricsURL() string
	Stop() error
}

// freeAddr returns a loopback address with a port nobody listens on right now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// reconciles reads controller_runtime_reconcile_total by controller (all results summed).
func reconciles(ctx context.Context, url string) (map[string]int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]int{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "controller_runtime_reconcile_total{") {
			continue
		}
		_, rest, _ := strings.Cut(line, `controller="`)
		name, _, _ := strings.Cut(rest, `"`)
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return nil, err
		}
		out[name] += int(v)
	}
	return out, sc.Err()
}

// idle reports whether both controllers have nothing queued and no reconcile running, from the
// manager's metrics (workqueue_depth, controller_runtime_active_workers).
func idle(ctx context.Context, url string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, nil // not serving yet
	}
	defer resp.Body.Close()
	seen := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "workqueue_depth{") && !strings.HasPrefix(line, "controller_runtime_active_workers{") {
			continue
		}
		if !strings.Contains(line, `controller="steprun"`) && !strings.Contains(line, `controller="workflowrun"`) {
			continue
		}
		seen++
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err != nil || v != 0 {
			return false, err
		}
	}
	return seen >= 4, sc.Err()
}

// binaryManager is ./cmd/manager built as `make build` builds it, run against the envtest API
// server with its own kubeconfig. Its flags are left at their defaults (manager.DefaultOptions)
// except the executor image, which has none, and the metrics and probe addresses: metrics on a
// free loopback port (the benchmark reads the work queues from it to know the manager is idle),
// probes off, so the benchmark never collides with another process on the machine.
type binaryManager struct {
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
	log     *os.File
	metrics string
}

// buildManager builds ./cmd/manager like `make build` (static, trimmed, stripped).
func buildManager(root, out string) (string, error) {
	bin := filepath.Join(out, "manager")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/manager")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the manager: %w\n%s", err, b)
	}
	return bin, nil
}

func startBinaryManager(bin, kubeconfig, logPath string, extra []string) (*binaryManager, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := append([]string{"--executor-image=" + executorImage, "--metrics-bind-address=" + addr, "--metrics-secure=false", "--health-probe-bind-address=0"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting the manager: %w", err)
	}
	m := &binaryManager{cmd: cmd, done: make(chan struct{}), log: logf, metrics: "http://" + addr + "/metrics"}
	go func() {
		m.err = cmd.Wait()
		close(m.done)
	}()
	return m, nil
}

func (m *binaryManager) PID() int { return m.cmd.Process.Pid }

func (m *binaryManager) MetricsURL() string { return m.metrics }

func (m *binaryManager) Exited() <-chan struct{} { return m.done }

func (m *binaryManager) Stop() error {
	defer m.log.Close()
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-m.done:
		return m.err
	case <-time.After(30 * time.Second):
		_ = m.cmd.Process.Kill()
		return fmt.Errorf("the manager did not stop within 30s of SIGTERM; killed")
	}
}

// inProcessManager runs manager.New in the benchmark's own process. Its peak RSS is the
// process's, benchmark included (informers on metadata only, the executor pool, the audit
// reader), after the Go heap is returned to the OS and VmHWM is reset.
type inProcessManager struct {
	cancel  context.CancelFunc
	done    chan struct{}
	err     error
	metrics string
}

func startInProcessManager(cfg *rest.Config) (*inProcessManager, error) {
	runtime.GC()
	debug.FreeOSMemory()
	if err := resetPeakRSS(os.Getpid()); err != nil {
		return nil, fmt.Errorf("resetting VmHWM: %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	o := manager.DefaultOptions()
	o.Pod.ExecutorImage = executorImage
	// Plain HTTP: the bench reads the metrics without a token.
	o.MetricsAddr, o.ProbeAddr, o.MetricsSecure = addr, "0", false
	// Each N gets a new manager in the same process.
	o.SkipNameValidation = true
	mgr, err := manager.New(cfg, o)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctrl.LoggerInto(context.Background(), ctrl.Log))
	m := &inProcessManager{cancel: cancel, done: make(chan struct{}), metrics: "http://" + addr + "/metrics"}
	go func() {
		m.err = mgr.Start(ctx)
		close(m.done)
	}()
	return m, nil
}

func (m *inProcessManager) PID() int { return os.Getpid() }

func (m *inProcessManager) MetricsURL() string { return m.metrics }

func (m *inProcessManager) Exited() <-chan struct{} { return m.done }

func (m *inProcessManager) Stop() error {
	m.cancel()
	<-m.done
	return m.err
}
