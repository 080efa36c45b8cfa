package executor

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

func testFinder(marker string) *ProcFinder {
	return &ProcFinder{ProcRoot: "/proc", Marker: marker, Self: os.Getpid()}
}

func TestFindPicksMainNotItsMarkedChild(t *testing.T) {
	marker := newMarker()
	h := startHelper(t, []string{marker}, "-spawn")
	if h.childPID == 0 {
		t.Fatal("helper started no child")
	}
	s := newScanner("/proc", marker, os.Getpid())
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
	s := newScanner("/proc", newMarker(), os.Getpid())
	for b.Loop() {
		if _, _, _, err := s.scan(); err != nil {
			b.Fatal(err)
		}
	}
}
