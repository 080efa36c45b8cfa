package executor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"golang.org/x/sys/unix"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

// helperBin is testdata/helper, built static in TestMain so it runs chrooted with no libraries.
var helperBin string

// helperBinEnv hands helperBin to a test binary run again by a test.
const helperBinEnv = "PNSFLOW_TEST_HELPER_BIN"

func TestMain(m *testing.M) {
	os.Exit(func() int {
		if os.Geteuid() != 0 {
			fmt.Fprintln(os.Stderr, "NOT ROOT: the real-process tests (find, secure, wait, collect through main's root) WILL BE SKIPPED")
			return m.Run()
		}
		// A test run again in another process (see asContainerRoot) reuses its parent's helper.
		if bin := os.Getenv(helperBinEnv); bin != "" {
			helperBin = bin
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "pns-executor-helper-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "making helper dir:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		// Tests run the helper as non-root users too.
		if err := os.Chmod(dir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "making helper dir:", err)
			return 1
		}
		helperBin = filepath.Join(dir, "helper")
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		build := exec.Command(goTool, "build", "-o", helperBin, "./testdata/helper")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building the test helper: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}())
}

// requireRoot skips, loudly, a test that needs root (chroot, mount namespaces, tmpfs mounts).
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: THIS TEST NEEDS ROOT (chroot, unshare(CLONE_NEWNS), mount); run `go test` as root to cover the real-process steps")
	}
}

var testUIDs atomic.Int64

// newMarker returns a marker no other test (or process on the machine) uses.
func newMarker() string {
	return MarkerFor(fmt.Sprintf("test-%d-%d-%d", os.Getpid(), time.Now().UnixNano(), testUIDs.Add(1)))
}

// helperProc is a running testdata/helper.
type helperProc struct {
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	stderr   *bytes.Buffer
	pid      int
	childPID int
	// dir is the directory the helper is chrooted into; dir/outputs is bound at
	// /pnsflow/outputs in its new root with -outputs.
	dir string
	// pidfd is the test's own handle to know when the helper exited.
	pidfd int
}

// startHelper starts the helper chrooted into a fresh directory, in a new mount namespace; once it
// set up its root it execs itself with env as its whole environment. startHelper returns when it
// says ready.
func startHelper(t *testing.T, env []string, args ...string) *helperProc {
	t.Helper()
	return startHelperIn(t, t.TempDir(), env, args...)
}

// startHelperIn is startHelper in a directory of the test's choosing.
func startHelperIn(t *testing.T, dir string, env []string, args ...string) *helperProc {
	t.Helper()
	requireRoot(t)
	bin, err := os.ReadFile(helperBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "helper"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"newroot", "outputs"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	args = append([]string(nil), args...)
	for _, e := range env {
		args = append(args, "-env", e)
	}
	cmd := exec.Command("/helper", args...)
	cmd.Env = []string{} // empty, not inherited: the helper gets env only at its own exec
	// Unshareflags rather than Cloneflags: for CLONE_NEWNS in Unshareflags Go also makes every
	// mount private, so the helper's tmpfs never propagates back to the host.
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: dir, Unshareflags: syscall.CLONE_NEWNS}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helperProc{cmd: cmd, stdin: stdin, stderr: &stderr, pid: cmd.Process.Pid, dir: dir, pidfd: -1}
	fd, err := unix.PidfdOpen(h.pid, 0)
	if err != nil {
		t.Fatalf("pidfd_open: %v", err)
	}
	h.pidfd = fd
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = unix.Close(h.pidfd)
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("helper did not get ready: %v; stderr: %s", err, stderr.String())
	}
	fields := strings.Fields(line)
	if len(fields) != 2 || fields[0] != "ready" {
		t.Fatalf("helper said %q", line)
	}
	if h.childPID, err = strconv.Atoi(fields[1]); err != nil {
		t.Fatal(err)
	}
	return h
}

// exit closes the helper's stdin, which ends it (and its spawned child).
func (h *helperProc) exit(t *testing.T) {
	t.Helper()
	if err := h.stdin.Close(); err != nil {
		t.Fatal(err)
	}
}

// waitExited waits, through the test's own pidfd, until the helper exited (it stays a zombie
// until reaped).
func (h *helperProc) waitExited(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := WaitExit(ctx, h.pidfd); err != nil {
		t.Fatalf("helper did not exit: %v", err)
	}
}

// reap collects the exited helper's status, so its pid is gone from /proc.
func (h *helperProc) reap(t *testing.T) {
	t.Helper()
	_ = h.cmd.Wait()
}

// applyReport applies a report (a JSON patch) to sr as the API server does: the patch's tests
// first, then the schema's rule that a terminal phase and its exit code never change. The error
// says which refused it (the API server answers both with 422).
func applyReport(sr *v1alpha1.StepRun, body []byte) (*v1alpha1.StepRun, error) {
	doc, err := json.Marshal(sr)
	if err != nil {
		return nil, err
	}
	patch, err := jsonpatch.DecodePatch(body)
	if err != nil {
		return nil, fmt.Errorf("decoding the patch: %w", err)
	}
	out, err := patch.Apply(doc)
	if err != nil {
		return nil, fmt.Errorf("applying the patch: %w", err)
	}
	var next v1alpha1.StepRun
	if err := json.Unmarshal(out, &next); err != nil {
		return nil, err
	}
	if old := sr.Status; old.Phase.IsTerminal() &&
		(next.Status.Phase != old.Phase || !reflect.DeepEqual(next.Status.ExitCode, old.ExitCode)) {
		return nil, errors.New("a terminal phase (Succeeded, Failed, Error) and its exitCode cannot change")
	}
	return &next, nil
}

// writeStatus answers with a Kubernetes Status of code.
func writeStatus(w http.ResponseWriter, code int, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status: metav1.StatusFailure, Code: int32(code), Reason: metav1.StatusReason(http.StatusText(code)), Message: message})
}
