package executor

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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

// BenchmarkScan measures a full scan of /proc after the first: a listing of the directory held
// open, and the environ of the benchmark's own children. It is syscall-bound: on a loaded 2-core
// VM, 22–31 µs in a PID namespace of its own (100–150 µs before the listing and the environ reads
// were cut down) and 0.3 ms on the host with ~110 processes (15 ms before). Try:
// unshare -pf --mount-proc ./executor.test -test.run - -test.bench Scan
func BenchmarkScan(b *testing.B) {
	s := newScanner("/proc", newMarker(), os.Getpid(), os.Getpid())
	defer s.close()
	for b.Loop() {
		if _, _, err := s.scan(time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}

// writeProc lays out a fake proc tree: pid → ppid and environment.
func writeProc(t *testing.T, procs map[int]fakeProcess) string {
	t.Helper()
	root := t.TempDir()
	for pid, p := range procs {
		writeFakeProcess(t, root, pid, p)
	}
	return root
}

// writeFakeProcess writes (or rewrites) one process of a fake proc tree; its start time is its
// pid.
func writeFakeProcess(t *testing.T, root string, pid int, p fakeProcess) {
	t.Helper()
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

// writeLoadavg writes a fake /proc/loadavg whose last field, the last pid allocated, is lastPID.
func writeLoadavg(t *testing.T, root string, lastPID int) {
	t.Helper()
	data := fmt.Sprintf("0.52 0.58 0.59 1/%d %d\n", lastPID, lastPID)
	if err := os.WriteFile(filepath.Join(root, "loadavg"), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
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

// fakeProcPod is a fake proc tree of a Pod before main starts: pause (1) and the executor (7, Self),
// with a loadavg; lookAt drives Find's watch through it on a made-up clock.
type fakeProcPod struct {
	t    *testing.T
	root string
	w    *watch
	t0   time.Time
}

const (
	fakeFastFor = time.Second
	fakeSelf    = 7
)

func newFakeProcPod(t *testing.T, marker string, withLoadavg bool) *fakeProcPod {
	root := writeProc(t, map[int]fakeProcess{
		1:        {comm: "pause", env: []string{"PATH=/"}},
		fakeSelf: {comm: "pns-executor", env: []string{"PNSFLOW_EXECUTOR_CONFIG={}"}},
	})
	if withLoadavg {
		writeLoadavg(t, root, fakeSelf)
	}
	f := &ProcFinder{ProcRoot: root, Marker: marker, Self: fakeSelf, FastFor: fakeFastFor, noThreadPidfds: true}
	p := &fakeProcPod{t: t, root: root, w: f.newWatch(), t0: time.Now()}
	t.Cleanup(p.w.close)
	return p
}

// lookAt makes one look at t0+at and returns the mode Find would wait in next, or fails the test
// when main is found.
func (p *fakeProcPod) lookAt(at time.Duration) findMode {
	p.t.Helper()
	now := p.t0.Add(at)
	pid, found, err := p.w.look(now)
	if err != nil || found {
		p.t.Fatalf("look at %v = %d, %v, %v; want nothing found", at, pid, found, err)
	}
	return p.w.mode(now)
}

func (p *fakeProcPod) start(pid int, proc fakeProcess) {
	p.t.Helper()
	writeFakeProcess(p.t, p.root, pid, proc)
	writeLoadavg(p.t, p.root, pid)
}

func TestFindPollsFastOnlyWhileANewChildOfParentMayExecMain(t *testing.T) {
	marker := MarkerFor("uid-1")
	pod := newFakeProcPod(t, marker, true)
	ms := time.Millisecond
	steps := []struct {
		name string
		at   time.Duration
		do   func()
		want findMode
	}{
		{"first scan", 0, nil, modeIdle},
		{"nothing new", 2 * ms, nil, modeIdle},
		{"runc init appears, unmarked, parent outside the Pod", 4 * ms,
			func() { pod.start(8, fakeProcess{comm: "runc:[2:INIT]", env: []string{"_LIBCONTAINER_INITPIPE=3"}}) }, modeFast},
		{"its hook runs with main's environment", 6 * ms,
			func() { pod.start(9, fakeProcess{comm: "mount-product-f", ppid: 8, env: []string{marker}}) }, modeFast},
		{"still within FastFor of runc init's appearance", fakeFastFor, nil, modeFast},
		{"FastFor after it appeared, though it is still there", fakeFastFor + 5*ms, nil, modeIdle},
		{"a process whose parent is not Parent appears", fakeFastFor + 10*ms,
			func() { pod.start(10, fakeProcess{comm: "sh", ppid: 1, env: []string{"A=1"}}) }, modeIdle},
	}
	for _, s := range steps {
		if s.do != nil {
			s.do()
		}
		if got := pod.lookAt(s.at); got != s.want {
			t.Errorf("%s: mode %v, want %v", s.name, got, s.want)
		}
	}
}

// A restarted executor may find main's init already waiting to exec it.
func TestFindPollsFastForAnInitAlreadyThereAtItsStart(t *testing.T) {
	pod := newFakeProcPod(t, MarkerFor("uid-1"), true)
	pod.start(8, fakeProcess{comm: "runc:[2:INIT]", env: []string{"_LIBCONTAINER_INITPIPE=3"}})
	if got := pod.lookAt(0); got != modeFast {
		t.Errorf("first look with runc init there: mode %v, want fast", got)
	}
	if got := pod.lookAt(fakeFastFor); got != modeIdle {
		t.Errorf("FastFor later: mode %v, want idle", got)
	}
}

func TestFindCatchesAnExecInPlaceWithoutAFullScan(t *testing.T) {
	marker := MarkerFor("uid-1")
	pod := newFakeProcPod(t, marker, true)
	pod.lookAt(0)
	pod.start(8, fakeProcess{comm: "runc:[2:INIT]", env: []string{"_LIBCONTAINER_INITPIPE=3"}})
	if got := pod.lookAt(time.Millisecond); got != modeFast {
		t.Fatalf("mode %v after runc init appeared, want fast", got)
	}
	lastFull := pod.w.lastFull

	// runc init execs main: same pid, no pid allocated, so no full scan.
	writeFakeProcess(t, pod.root, 8, fakeProcess{comm: "true", env: []string{marker}})
	pid, found, err := pod.w.look(pod.t0.Add(1100 * time.Microsecond))
	if err != nil || !found || pid != 8 {
		t.Fatalf("look = %d, %v, %v; want main, pid 8", pid, found, err)
	}
	if pod.w.lastFull != lastFull {
		t.Error("the look scanned /proc fully; want only Parent's children re-read")
	}
}

func TestFindSettlesAfterAnAllocationItCannotExplain(t *testing.T) {
	pod := newFakeProcPod(t, MarkerFor("uid-1"), true)
	ms := time.Millisecond
	pod.lookAt(0)

	// Threads (not listed in a real /proc, but their status says whose they are) of the executor
	// itself and of pause: explained, stays idle.
	for tid, tgid := range map[int]int{8: fakeSelf, 9: 1} {
		status := fmt.Sprintf("Name:\tx\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t%d\nPid:\t%d\n", tgid, tid)
		if err := os.MkdirAll(filepath.Join(pod.root, strconv.Itoa(tid)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pod.root, strconv.Itoa(tid), "status"), []byte(status), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeLoadavg(t, pod.root, 9)
	if got := pod.lookAt(2 * ms); got != modeIdle {
		t.Errorf("after threads of listed processes started: mode %v, want idle", got)
	}

	// A pid nobody listed (a process not yet in /proc, or gone already): full scans for a while,
	// at the idle pace (it can only be main's init, which waits long before it execs main).
	writeLoadavg(t, pod.root, 10)
	if got := pod.lookAt(4 * ms); got != modeIdle {
		t.Errorf("after an unexplained pid: mode %v, want idle", got)
	}
	lastFull := pod.w.lastFull
	pod.lookAt(14 * ms)
	if pod.w.lastFull == lastFull {
		t.Error("while settling, a look did not scan fully")
	}
	lastFull = pod.w.lastFull
	pod.lookAt(4*ms + settleFor)
	if pod.w.lastFull != lastFull {
		t.Error("settleFor after the unexplained pid, a look still scanned fully")
	}
}

func TestFindScansFullyWithoutAUsableLoadavg(t *testing.T) {
	tests := []struct {
		name    string
		lastPID int // 0: no loadavg
	}{
		{"no loadavg", 0},
		// A pid above the last allocated one: another namespace's counter.
		{"loadavg of another PID namespace", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := newFakeProcPod(t, MarkerFor("uid-1"), false)
			if tt.lastPID != 0 {
				writeLoadavg(t, pod.root, tt.lastPID)
				pod.w.close()
				pod.w = (&ProcFinder{ProcRoot: pod.root, Marker: MarkerFor("uid-1"), Self: fakeSelf, noThreadPidfds: true}).newWatch()
			}
			pod.lookAt(0)
			if pod.w.loadavg >= 0 {
				t.Fatal("the watch kept loadavg")
			}
			for _, at := range []time.Duration{time.Millisecond, 2 * time.Millisecond} {
				pod.lookAt(at)
				if !pod.w.lastFull.Equal(pod.t0.Add(at)) {
					t.Errorf("the look at %v did not scan fully", at)
				}
			}
		})
	}
}

func TestReadLastPID(t *testing.T) {
	tests := []struct {
		loadavg string
		want    int
		wantErr bool
	}{
		{"0.00 0.01 0.05 1/123 4567\n", 4567, false},
		{"12.50 8.01 3.00 13/144 15306\n", 15306, false},
		{"0.00 0.01 0.05 1/123 \n", 0, true},
		{"0.00 0.01 0.05 1/123 45x\n", 0, true},
		{"4567", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "loadavg")
		if err := os.WriteFile(path, []byte(tt.loadavg), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := readLastPID(int(f.Fd()), make([]byte, 128))
		f.Close()
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("readLastPID(%q) = %d, %v; want %d, error %v", tt.loadavg, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestAppendPIDs(t *testing.T) {
	// linux_dirent64 records: d_ino, d_off, d_reclen, d_type, name, NUL, padding to 8 bytes.
	var b []byte
	for _, name := range []string{".", "..", "1", "self", "4194304", "12a", "7", "1234567890"} {
		reclen := (19 + len(name) + 1 + 7) &^ 7
		rec := make([]byte, reclen)
		binary.NativeEndian.PutUint16(rec[16:], uint16(reclen))
		copy(rec[19:], name)
		b = append(b, rec...)
	}
	got := appendPIDs(nil, b)
	if want := []int{1, 4194304, 7}; !slices.Equal(got, want) {
		t.Errorf("appendPIDs = %v, want %v", got, want)
	}
}

func TestFindLooksOnlyOnceUntilTheGateOpens(t *testing.T) {
	marker := MarkerFor("uid-1")
	root := writeProc(t, map[int]fakeProcess{
		1:        {comm: "pause", env: []string{"PATH=/"}},
		fakeSelf: {comm: "pns-executor", env: []string{"PNSFLOW_EXECUTOR_CONFIG={}"}},
	})
	writeLoadavg(t, root, fakeSelf)
	gate := make(chan struct{})
	f := &ProcFinder{ProcRoot: root, Marker: marker, Self: fakeSelf, Gate: gate}
	firstScans := make(chan struct{}, 1)
	type found struct {
		pid int
		err error
	}
	done := make(chan found, 1)
	go func() {
		pid, err := f.Find(testCtx(t), func() error { firstScans <- struct{}{}; return nil })
		done <- found{pid, err}
	}()
	<-firstScans
	// main appears while the gate is shut: nothing looks, so nothing finds it.
	writeFakeProcess(t, root, 8, fakeProcess{comm: "sleep", env: []string{marker}})
	writeLoadavg(t, root, 8)
	select {
	case got := <-done:
		t.Fatalf("Find returned %+v with the gate shut; want it waiting", got)
	case <-time.After(50 * time.Millisecond):
	}
	close(gate)
	select {
	case got := <-done:
		if got.err != nil || got.pid != 8 {
			t.Fatalf("Find = %d, %v; want main, pid 8", got.pid, got.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Find did not look again once the gate opened")
	}
}

func TestFindGateTimesOut(t *testing.T) {
	marker := MarkerFor("uid-1")
	root := writeProc(t, map[int]fakeProcess{
		1: {comm: "pause", env: []string{"PATH=/"}},
		8: {comm: "sleep", env: []string{marker}},
	})
	f := &ProcFinder{ProcRoot: root, Marker: marker, Self: fakeSelf, Gate: make(chan struct{}), GateTimeout: time.Millisecond}
	// main is already there at the first look: found without the gate.
	if pid, err := f.Find(testCtx(t), nil); err != nil || pid != 8 {
		t.Fatalf("Find = %d, %v; want pid 8 from the first look", pid, err)
	}
	if err := os.RemoveAll(filepath.Join(root, "8")); err != nil {
		t.Fatal(err)
	}
	// main shows up after the first look, and the gate never opens: only its timeout lets Find
	// look again.
	appear := func() error {
		writeFakeProcess(t, root, 9, fakeProcess{comm: "sleep", env: []string{marker}})
		return nil
	}
	if pid, err := f.Find(testCtx(t), appear); err != nil || pid != 9 {
		t.Fatalf("Find = %d, %v; want pid 9 after the gate timed out", pid, err)
	}
}

// Looks slow down once nothing has happened in the Pod for QuietAfter, and speed up again at the
// next pid allocated.
func TestFindLooksLessOftenWhenThePodIsQuiet(t *testing.T) {
	pod := newFakeProcPod(t, MarkerFor("uid-1"), true)
	pod.w.active = pod.t0
	steps := []struct {
		name string
		at   time.Duration
		do   func()
		want time.Duration
	}{
		{"at the start", 0, nil, DefaultIdleInterval},
		{"just before QuietAfter", DefaultQuietAfter - time.Millisecond, nil, DefaultIdleInterval},
		{"QuietAfter without a new pid", DefaultQuietAfter, nil, DefaultQuietInterval},
		{"a pid is allocated", DefaultQuietAfter + 10*time.Millisecond, func() { writeLoadavg(t, pod.root, 20) }, DefaultIdleInterval},
		{"QuietAfter after it", 2*DefaultQuietAfter + 10*time.Millisecond, nil, DefaultQuietInterval},
	}
	for _, s := range steps {
		if s.do != nil {
			s.do()
		}
		if got := pod.lookAt(s.at); got != modeIdle {
			t.Fatalf("%s: mode %v, want idle", s.name, got)
		}
		if got := pod.w.idleWait(pod.t0.Add(s.at)); got != s.want {
			t.Errorf("%s: the next look in %v, want %v", s.name, got, s.want)
		}
	}
}
