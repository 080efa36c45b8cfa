//go:build chaos

package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	. "github.com/pnsflow/pnsflow/internal/testutil"
)

// countedLines is how many numbered lines a counting step prints, a tenth of a second apart:
// long enough to be written across a fault.
const countedLines = 1500

// countingScript prints line-1 … line-N, a tenth of a second apart.
func countingScript() string {
	return fmt.Sprintf("i=0; while [ $i -lt %d ]; do i=$((i+1)); echo line-$i; sleep 0.1; done", countedLines)
}

// countingStep is a StepRun printing line-1 … line-N, a tenth of a second apart.
func countingStep(ns, name string) *v1alpha1.StepRun {
	return MakeStepRun(name, ns).Image(busyboxImage).PullPolicy(corev1.PullIfNotPresent).
		Command("sh", "-c", countingScript()).RunAs(uid1000, gid1000).Obj()
}

// followedLog is `kubectl-pnsflow logs -f` running in the background.
type followedLog struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    bytes.Buffer
	errOut bytes.Buffer
	done   chan error
}

// lockedWriter lets the test read what the plugin has printed so far while it runs.
type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// followLogs builds the kubectl plugin and starts `logs NAME -f` on a StepRun of ns.
func followLogs(ns, name string) *followedLog {
	dir := GinkgoT().TempDir()
	bin := filepath.Join(dir, "kubectl-pnsflow")
	build := exec.Command("go", "build", "-o", bin, "./cmd/kubectl-pnsflow")
	build.Dir = filepath.Join("..", "..")
	out, err := build.CombinedOutput()
	ExpectWithOffset(1, err).NotTo(HaveOccurred(), "building the plugin: %s", out)
	f := &followedLog{done: make(chan error, 1)}
	f.cmd = exec.CommandContext(ctx, bin, "-n", ns, "logs", name, "-f")
	f.cmd.Env = append(os.Environ(), "NO_COLOR=1")
	f.cmd.Stdout = lockedWriter{&f.mu, &f.out}
	f.cmd.Stderr = lockedWriter{&f.mu, &f.errOut}
	ExpectWithOffset(1, f.cmd.Start()).To(Succeed())
	go func() { f.done <- f.cmd.Wait() }()
	DeferCleanup(func() { _ = f.cmd.Process.Kill() })
	return f
}

// printed is what the plugin has written to stdout so far.
func (f *followedLog) printed() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.out.String()
}

// wait waits for the plugin to exit and returns its stdout and stderr.
func (f *followedLog) wait(timeout time.Duration) (stdout, stderr string, err error) {
	select {
	case err = <-f.done:
	case <-time.After(timeout):
		_ = f.cmd.Process.Kill()
		err = errors.Join(context.DeadlineExceeded, <-f.done)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.out.String(), f.errOut.String(), err
}

// expectCounted checks that the followed log holds every counted line exactly once, in order.
func expectCounted(stdout string) {
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	ExpectWithOffset(1, lines).To(HaveLen(countedLines), "the followed log has every line once")
	for i, l := range lines {
		if want := fmt.Sprintf("line-%d", i+1); l != want {
			Fail(fmt.Sprintf("line %d of the followed log is %q, want %q", i+1, l, want), 1)
		}
	}
}
