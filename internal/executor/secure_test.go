package executor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

func secureHelper(t *testing.T, marker string, h *helperProc) *MainProcess {
	t.Helper()
	p, err := ProcSecurer{ProcRoot: "/proc", Marker: marker}.Secure(h.pid)
	if err != nil {
		t.Fatalf("Secure: %v; helper stderr: %s", err, h.stderr.String())
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func ptr[T any](v T) *T { return &v }

// The whole PNS path on a real process: find, secure, wait for the exit, then read an output the
// process wrote into a root filesystem that exists only in its (now dead) mount namespace.
func TestSecureThenReadAfterMainExited(t *testing.T) {
	marker := newMarker()
	h := startHelper(t, []string{marker}, "-newroot", "-write", "/tmp/out/value=hello from main")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pid, err := testFinder(marker).Find(ctx, nil)
	if err != nil || pid != h.pid {
		t.Fatalf("Find = %d, %v; want %d", pid, err, h.pid)
	}
	p := secureHelper(t, marker, h)
	if p.Started <= 0 {
		t.Errorf("Started = %v, want main's start on the boot clock", p.Started)
	}

	h.exit(t)
	if err := (PidfdWaiter{}).Wait(ctx, p); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	h.reap(t)

	// main is gone: no /proc entry, and its tmpfs root is not on the host.
	if _, err := os.Stat("/proc/" + strconv.Itoa(h.pid) + "/root"); err == nil {
		t.Fatal("main's /proc entry is still there after it was reaped")
	}
	if _, err := os.Stat(filepath.Join(h.dir, "newroot", "tmp", "out", "value")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the output is visible on the host (%v); the test would prove nothing", err)
	}

	got := Collector{Outputs: []executorconfig.Output{{Name: "value", Path: "/tmp/out/value"}}}.Collect(p.Root)
	want := Collected{Parameters: []v1alpha1.OutputParameterValue{{Name: "value", Value: "hello from main"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Collect after exit (-want +got):\n%s", diff)
	}
}

func TestSecureRefusesUnmarkedProcess(t *testing.T) {
	marker := newMarker()
	h := startHelper(t, []string{"SOMETHING=else"})
	if _, err := (ProcSecurer{ProcRoot: "/proc", Marker: marker}).Secure(h.pid); err == nil ||
		!strings.Contains(err.Error(), "not marked") {
		t.Errorf("Secure error = %v, want not marked", err)
	}
}

func TestSecureExitedProcess(t *testing.T) {
	marker := newMarker()

	t.Run("zombie", func(t *testing.T) {
		// Exited but not reaped: the pid exists, the pidfd opens, but main is gone.
		h := startHelper(t, []string{marker}, "-exit-now")
		h.waitExited(t)
		if _, err := (ProcSecurer{ProcRoot: "/proc", Marker: marker}).Secure(h.pid); !errors.Is(err, ErrMainExited) {
			t.Errorf("Secure error = %v, want ErrMainExited", err)
		}
	})
	t.Run("reaped", func(t *testing.T) {
		h := startHelper(t, []string{marker}, "-exit-now")
		h.waitExited(t)
		h.reap(t)
		if _, err := (ProcSecurer{ProcRoot: "/proc", Marker: marker}).Secure(h.pid); !errors.Is(err, ErrMainExited) {
			t.Errorf("Secure error = %v, want ErrMainExited", err)
		}
	})
}

func TestWaitHonoursContext(t *testing.T) {
	marker := newMarker()
	h := startHelper(t, []string{marker})
	p := secureHelper(t, marker, h)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (PidfdWaiter{}).Wait(ctx, p) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Wait error = %v, want context.Canceled", err)
	}
	// main is still running: the pidfd says so.
	if alive, err := pidfdAlive(h.pidfd); err != nil || !alive {
		t.Errorf("helper alive = %v, %v; want alive", alive, err)
	}
}

// A main that exits before it is caught: outputs under a mount are still read from the
// executor's own mount; an output in the image filesystem is lost, loudly.
func TestCollectWhenMainWasNeverCaught(t *testing.T) {
	marker := newMarker()
	h := startHelper(t, []string{marker}, "-newroot", "-outputs", "-exit-now",
		"-write", "/pnsflow/outputs/safe=kept",
		"-write", "/tmp/image=lost")
	h.waitExited(t)
	h.reap(t)

	c := Collector{
		Outputs: []executorconfig.Output{
			{Name: "safe", Path: "/pnsflow/outputs/safe"},
			{Name: "image", Path: "/tmp/image", Default: ptr("a default does not hide a lost output")},
		},
		Mounts: []executorconfig.Mount{{MainPath: executorconfig.OutputsDir, ExecutorPath: filepath.Join(h.dir, "outputs")}},
	}
	got := c.Collect(nil)
	wantParams := []v1alpha1.OutputParameterValue{{Name: "safe", Value: "kept"}}
	if diff := cmp.Diff(wantParams, got.Parameters); diff != "" {
		t.Errorf("parameters (-want +got):\n%s", diff)
	}
	if got.Failure == nil || got.Failure.Phase != v1alpha1.StepRunError || got.Failure.Reason != v1alpha1.ReasonOutputsLost {
		t.Fatalf("failure = %+v, want Error/OutputsLost", got.Failure)
	}
	if !strings.Contains(got.Failure.Message, `"image"`) || !strings.Contains(got.Failure.Message, "/tmp/image") {
		t.Errorf("message %q should name the output and its path", got.Failure.Message)
	}
}

// Reading through main's root: symlinks resolve inside it, magic links are refused, and the
// usual failures have their reasons.
func TestCollectThroughRoot(t *testing.T) {
	requireRoot(t)
	// decoy is a host path; the helper's root has the same path with other content. A read that
	// escapes main's root returns "host".
	decoyDir := t.TempDir()
	decoy := filepath.Join(decoyDir, "secret")
	if err := os.WriteFile(decoy, []byte("host"), 0o600); err != nil {
		t.Fatal(err)
	}
	up := strings.Repeat("../", strings.Count(decoy, "/")+3)
	marker := newMarker()
	h := startHelper(t, []string{marker}, "-newroot", "-proc",
		"-write", decoy+"=inside",
		"-symlink", "/abs-link="+decoy,
		"-symlink", "/a/b/rel-link="+up+strings.TrimPrefix(decoy, "/"),
		"-symlink", "/magic-link=/proc/self/root"+decoy,
		"-write", "/exact="+"",
		"-big", "/at-cap="+strconv.Itoa(v1alpha1.MaxParameterValueBytes),
		"-big", "/over-cap="+strconv.Itoa(v1alpha1.MaxParameterValueBytes+1),
		"-mkdir", "/a-dir",
	)
	p := secureHelper(t, marker, h)

	// The magic link really leads out of main's root, so refusing it is what keeps "host" out.
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(h.pid) + "/root/proc/self/root" + decoy); err != nil || string(b) != "host" {
		t.Fatalf("control read through the magic link = %q, %v; want host", b, err)
	}

	tests := []struct {
		name       string
		out        executorconfig.Output
		want       string
		wantReason string
	}{
		{name: "plain file", out: executorconfig.Output{Path: decoy}, want: "inside"},
		{name: "absolute symlink stays inside", out: executorconfig.Output{Path: "/abs-link"}, want: "inside"},
		{name: "dot-dot symlink stays inside", out: executorconfig.Output{Path: "/a/b/rel-link"}, want: "inside"},
		{name: "dot-dot path stays inside", out: executorconfig.Output{Path: "/a/b/" + up + strings.TrimPrefix(decoy, "/")}, want: "inside"},
		{name: "magic link path refused", out: executorconfig.Output{Path: "/proc/self/root" + decoy}, wantReason: v1alpha1.ReasonOutputUnreadable},
		{name: "symlink to magic link refused", out: executorconfig.Output{Path: "/magic-link"}, wantReason: v1alpha1.ReasonOutputUnreadable},
		{name: "empty file", out: executorconfig.Output{Path: "/exact"}, want: ""},
		{name: "missing with default", out: executorconfig.Output{Path: "/nope", Default: ptr("dflt")}, want: "dflt"},
		{name: "missing without default", out: executorconfig.Output{Path: "/nope"}, wantReason: v1alpha1.ReasonOutputMissing},
		{name: "at the cap", out: executorconfig.Output{Path: "/at-cap"}, want: strings.Repeat("x", v1alpha1.MaxParameterValueBytes)},
		{name: "over the cap", out: executorconfig.Output{Path: "/over-cap"}, wantReason: v1alpha1.ReasonOutputTooLarge},
		{name: "directory", out: executorconfig.Output{Path: "/a-dir"}, wantReason: v1alpha1.ReasonOutputUnreadable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.out.Name = "out"
			got := Collector{Outputs: []executorconfig.Output{tt.out}}.Collect(p.Root)
			if tt.wantReason != "" {
				if got.Failure == nil || got.Failure.Reason != tt.wantReason || got.Failure.Phase != v1alpha1.StepRunFailed {
					t.Fatalf("failure = %+v, want Failed/%s", got.Failure, tt.wantReason)
				}
				if !strings.Contains(got.Failure.Message, `"out"`) || !strings.Contains(got.Failure.Message, tt.out.Path) {
					t.Errorf("message %q should name the output and its path", got.Failure.Message)
				}
				return
			}
			if got.Failure != nil {
				t.Fatalf("failure = %+v", got.Failure)
			}
			want := []v1alpha1.OutputParameterValue{{Name: "out", Value: tt.want}}
			if diff := cmp.Diff(want, got.Parameters); diff != "" {
				t.Errorf("parameters (-want +got):\n%s", diff)
			}
		})
	}
}
