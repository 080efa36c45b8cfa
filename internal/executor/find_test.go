package executor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func testFinder(marker string) *ProcFinder {
	// The helper processes are this test's children: their parent plays the Pod's shim.
	return &ProcFinder{ProcRoot: "/proc", Marker: marker, Self: os.Getpid(), Parent: os.Getpid()}
}

func TestFindPicksMainNotItsMarkedChild(t *testing.T) {
	marker := newMarker()
	h := startHelper(t, []string{marker}, "-spawn")
	if h.childPID == 0 {
		t.Fatal("helper started no child")
	}
	s := newScanner("/proc", marker, os.Getpid(), os.Getpid())
	if !s.isMarked(h.childPID) {
		t.Fatalf("the child %d should inherit the marker", h.childPID)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pid, err := testFinder(marker).Find(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pid != h.pid {
		t.Errorf("Find = %d, want main %d (its child is %d)", pid, h.pid, h.childPID)
	}
}

func TestFindIgnoresOtherMarkers(t *testing.T) {
	marker := newMarker()
	// Same variable, another StepRun's UID; and our UID as a prefix of a longer value.
	startHelper(t, []string{marker + "-other"})
	startHelper(t, []string{"SOMETHING_ELSE=" + marker})
	pid, found, err := testFinder(marker).Scan()
	if err != nil {
		t.Fatal(err)
	}
	if found {
		t.Errorf("Scan found %d, want nothing", pid)
	}
}

func TestFindSkipsItself(t *testing.T) {
	marker := newMarker()
	// The helper plays the executor itself: the only marked process is Self.
	h := startHelper(t, []string{marker})
	f := testFinder(marker)
	f.Self = h.pid
	if pid, found, err := f.Scan(); err != nil || found {
		t.Errorf("Scan = %d, %v, %v; want nothing: the only marked process is itself", pid, found, err)
	}
}

func TestFindCallsFirstScanThenStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	_, err := testFinder(newMarker()).Find(ctx, func() error {
		calls++
		cancel() // nothing is marked: Find must return once ctx ends
		return nil
	})
	if !errors.Is(err, ErrNotFound) || !errors.Is(err, context.Canceled) {
		t.Errorf("Find error = %v, want ErrNotFound wrapping context.Canceled", err)
	}
	if calls != 1 {
		t.Errorf("firstScan called %d times, want 1", calls)
	}
}

func TestFindReturnsFirstScanError(t *testing.T) {
	boom := errors.New("boom")
	_, err := testFinder(newMarker()).Find(context.Background(), func() error { return boom })
	if !errors.Is(err, boom) {
		t.Errorf("Find error = %v, want boom", err)
	}
}

func TestFindCatchesMainStartedAfterReady(t *testing.T) {
	marker := newMarker()
	ready := make(chan struct{})
	type found struct {
		pid int
		err error
	}
	res := make(chan found, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		pid, err := testFinder(marker).Find(ctx, func() error { close(ready); return nil })
		res <- found{pid, err}
	}()
	<-ready
	h := startHelper(t, []string{marker})
	r := <-res
	if r.err != nil || r.pid != h.pid {
		t.Errorf("Find = %d, %v; want %d", r.pid, r.err, h.pid)
	}
}

func TestFindFailsWithoutProc(t *testing.T) {
	f := testFinder(newMarker())
	f.ProcRoot = t.TempDir() + "/missing"
	if _, err := f.Find(context.Background(), nil); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Find error = %v, want an error opening the proc root", err)
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name       string
		stat       string
		ppid, tick int
		wantErr    bool
	}{
		{"plain", "42 (sh) S 7 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 12345 1000 100", 7, 12345, false},
		{"comm with spaces and parens", "42 (a) (b c) R 0 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 99 1000 100", 0, 99, false},
		{"truncated", "42 (sh) S 7", 0, 0, true},
		{"no comm", "42 sh S 7", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ppid, tick, err := parseStat([]byte(tt.stat))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if ppid != tt.ppid || tick != tt.tick {
				t.Errorf("parseStat = %d, %d; want %d, %d", ppid, tick, tt.ppid, tt.tick)
			}
		})
	}
}

func TestHasEnvEntry(t *testing.T) {
	const entry = "PNSFLOW_STEPRUN_UID=abc"
	tests := []struct {
		env  string
		want bool
	}{
		{"A=1\x00PNSFLOW_STEPRUN_UID=abc\x00B=2\x00", true},
		{"PNSFLOW_STEPRUN_UID=abc", true},
		{"PNSFLOW_STEPRUN_UID=abcd\x00", false},
		{"XPNSFLOW_STEPRUN_UID=abc\x00", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := hasEnvEntry([]byte(tt.env), []byte(entry)); got != tt.want {
			t.Errorf("hasEnvEntry(%q) = %v, want %v", tt.env, got, tt.want)
		}
	}
}

// BenchmarkScan measures one look at /proc. It is syscall-bound, about 6 µs per process: on a
// busy host that is most of a millisecond, in a Pod's PID namespace (pause, the executor, main)
// about 15 µs. Try: unshare -pf --mount-proc ./executor.test -test.run - -test.bench Scan
func BenchmarkScan(b *testing.B) {
	s := newScanner("/proc", newMarker(), os.Getpid(), os.Getpid())
	for b.Loop() {
		if _, _, _, err := s.scan(); err != nil {
			b.Fatal(err)
		}
	}
}

// writeProc lays out a fake proc tree: pid → ppid and environment.
func writeProc(t *testing.T, procs map[int]fakeProcess) string {
	t.Helper()
	root := t.TempDir()
	for pid, p := range procs {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		// /proc/<pid>/stat: pid (comm) state ppid ... starttime (field 22).
		fields := make([]string, 20)
		for i := range fields {
			fields[i] = "0"
		}
		fields[0], fields[1], fields[19] = "S", strconv.Itoa(p.ppid), strconv.Itoa(pid)
		stat := fmt.Sprintf("%d (%s) %s\n", pid, p.comm, strings.Join(fields, " "))
		env := strings.Join(p.env, "\x00") + "\x00"
		for name, data := range map[string]string{"stat": stat, "environ": env} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

type fakeProcess struct {
	comm string
	ppid int
	env  []string
}

// In a Pod, runc init may run a runtime hook (kind's createContainer hook) with main's
// environment before it execs main; the hook's root is the node's. Only the process whose parent
// is outside the Pod's PID namespace (PPid 0) is main.
func TestScanTakesOnlyTheProcessWhoseParentIsOutsideThePod(t *testing.T) {
	marker := MarkerFor("uid-1")
	pod := map[int]fakeProcess{
		1:  {comm: "pause", env: []string{"PATH=/"}},
		7:  {comm: "pns-executor", env: []string{"PNSFLOW_EXECUTOR_CONFIG={}"}},
		19: {comm: "runc:[2:INIT]", env: []string{"_LIBCONTAINER_INITPIPE=3"}},
		25: {comm: "mount-product-f", ppid: 19, env: []string{"PATH=/bin", marker}},
	}
	f := &ProcFinder{ProcRoot: writeProc(t, pod), Marker: marker, Self: 7}
	if pid, found, err := f.Scan(); err != nil || found {
		t.Fatalf("Scan = %d, %v, %v: took the runtime hook for main", pid, found, err)
	}

	// runc init has exec'd main (same pid, now marked); main has started a child.
	pod[19] = fakeProcess{comm: "sh", env: []string{marker}}
	pod[30] = fakeProcess{comm: "sleep", ppid: 19, env: []string{marker}}
	delete(pod, 25)
	f.ProcRoot = writeProc(t, pod)
	if pid, found, err := f.Scan(); err != nil || !found || pid != 19 {
		t.Fatalf("Scan = %d, %v, %v; want main, pid 19", pid, found, err)
	}
}
