package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

// Defaults of ProcFinder's polling. A main running `true` lives about 0.3 ms, so right after the
// executor starts, and again whenever a new process shows up in the Pod (the runtime's init
// process that is about to exec main, for instance), it scans every FastInterval for FastFor;
// otherwise every SlowInterval.
const (
	DefaultProcRoot     = "/proc"
	DefaultFastInterval = 100 * time.Microsecond
	DefaultFastFor      = 5 * time.Second
	DefaultSlowInterval = 10 * time.Millisecond
)

// ErrNotFound is returned by Find when ctx ends before main was seen.
var ErrNotFound = errors.New("main's process was not found")

// MarkerFor is the environment entry that marks main's processes for the StepRun with this UID.
func MarkerFor(uid string) string { return executorconfig.MarkerEnv + "=" + uid }

// ProcFinder finds main's process by scanning a proc filesystem for the marker in each process's
// environment. Main is the marked process whose parent is Parent: in the Pod, main's parent is the
// runtime's shim, outside the Pod's PID namespace, so /proc shows PPid 0. "Marked and its parent
// unmarked" is not enough: main's children inherit the marker, and so does a runtime hook that
// runc init runs with main's environment before it execs main (kind's createContainer hook does):
// such a hook is marked, its parent (runc init) is not yet, and its root is the node's.
type ProcFinder struct {
	// ProcRoot is the proc filesystem to scan, in the executor's own PID namespace.
	ProcRoot string
	// Marker is the environ entry, "NAME=value", that marks main (see MarkerFor).
	Marker string
	// Self is skipped (the executor's own pid).
	Self int
	// Parent is main's parent pid as ProcRoot shows it: 0 in a Pod (the default).
	Parent int
	// FastInterval, FastFor and SlowInterval tune the polling; zero means the default.
	FastInterval time.Duration
	FastFor      time.Duration
	SlowInterval time.Duration
}

// NewProcFinder returns a finder for the StepRun with this UID, scanning procRoot ("" means
// /proc) and skipping the calling process.
func NewProcFinder(procRoot, uid string) *ProcFinder {
	if procRoot == "" {
		procRoot = DefaultProcRoot
	}
	return &ProcFinder{ProcRoot: procRoot, Marker: MarkerFor(uid), Self: os.Getpid()}
}

// Find scans until main is found and returns its pid. firstScan, when not nil, is called once
// after the first complete scan (the executor is then watching /proc and may say it is ready);
// its error ends Find. Find returns ErrNotFound (wrapping ctx's error) when ctx ends first.
func (f *ProcFinder) Find(ctx context.Context, firstScan func() error) (int, error) {
	fast, fastFor, slow := f.FastInterval, f.FastFor, f.SlowInterval
	if fast <= 0 {
		fast = DefaultFastInterval
	}
	if fastFor <= 0 {
		fastFor = DefaultFastFor
	}
	if slow <= 0 {
		slow = DefaultSlowInterval
	}
	s := newScanner(f.ProcRoot, f.Marker, f.Self, f.Parent)
	fastUntil := time.Now().Add(fastFor)
	for first := true; ; first = false {
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		pid, found, grew, err := s.scan()
		if err != nil {
			return 0, err
		}
		if first && firstScan != nil {
			if err := firstScan(); err != nil {
				return 0, err
			}
		}
		if found {
			return pid, nil
		}
		now := time.Now()
		if grew {
			fastUntil = now.Add(fastFor)
		}
		if now.Before(fastUntil) {
			// time.Sleep and timers round sub-millisecond waits up to about 1 ms; nanosleep does
			// not. It blocks this goroutine's thread for the interval, which is what we want.
			ts := unix.NsecToTimespec(int64(fast))
			_ = unix.Nanosleep(&ts, nil)
			continue
		}
		t := time.NewTimer(slow)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

// Scan looks once and reports main's pid if it is there.
func (f *ProcFinder) Scan() (pid int, found bool, err error) {
	pid, found, _, err = newScanner(f.ProcRoot, f.Marker, f.Self, f.Parent).scan()
	return pid, found, err
}

// scanner keeps what one scan needs between scans: a read buffer and the pids seen last time.
type scanner struct {
	procRoot string
	marker   []byte
	self     int
	parent   int
	buf      []byte
	seen     map[int]bool
}

func newScanner(procRoot, marker string, self, parent int) *scanner {
	return &scanner{procRoot: procRoot, marker: []byte(marker), self: self, parent: parent, buf: make([]byte, 16*1024)}
}

// candidate is a marked process whose parent is main's parent.
type candidate struct {
	pid, startTicks int
}

// scan lists the processes once. grew reports that a process appeared since the previous scan.
func (s *scanner) scan() (pid int, found, grew bool, err error) {
	pids, err := listPIDs(s.procRoot)
	if err != nil {
		return 0, false, false, err
	}
	present := make(map[int]bool, len(pids))
	marked := make(map[int]bool)
	for _, p := range pids {
		if p == s.self {
			continue
		}
		present[p] = true
		if s.seen != nil && !s.seen[p] {
			grew = true
		}
		if s.isMarked(p) {
			marked[p] = true
		}
	}
	s.seen = present

	var best *candidate
	for p := range marked {
		ppid, start, err := readStat(s.procRoot, p)
		if err != nil {
			continue // exited meanwhile
		}
		if ppid != s.parent {
			continue // a child of main, or a runtime hook running with main's environment
		}
		if best == nil || start < best.startTicks || (start == best.startTicks && p < best.pid) {
			best = &candidate{pid: p, startTicks: start}
		}
	}
	if best == nil {
		return 0, false, grew, nil
	}
	return best.pid, true, grew, nil
}

// isMarked reads /proc/<pid>/environ. Unreadable processes (exited, another user's, kernel
// threads, zombies with an empty environment) are not marked.
func (s *scanner) isMarked(pid int) bool {
	env, err := s.readFile(filepath.Join(s.procRoot, strconv.Itoa(pid), "environ"))
	if err != nil {
		return false
	}
	return hasEnvEntry(env, s.marker)
}

// readFile reads a small proc file into the scanner's buffer, growing it as needed. The result
// is only valid until the next call.
func (s *scanner) readFile(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	n := 0
	for {
		if n == len(s.buf) {
			s.buf = append(s.buf, make([]byte, len(s.buf))...)
		}
		m, err := unix.Read(fd, s.buf[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if m == 0 {
			return s.buf[:n], nil
		}
		n += m
	}
}

// hasEnvEntry reports whether the NUL-separated environment env holds exactly entry.
func hasEnvEntry(env, entry []byte) bool {
	for len(env) > 0 {
		i := bytes.IndexByte(env, 0)
		var e []byte
		if i < 0 {
			e, env = env, nil
		} else {
			e, env = env[:i], env[i+1:]
		}
		if bytes.Equal(e, entry) {
			return true
		}
	}
	return false
}

// listPIDs lists the numeric entries of a proc filesystem.
func listPIDs(procRoot string) ([]int, error) {
	d, err := os.Open(procRoot)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", procRoot, err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", procRoot, err)
	}
	pids := make([]int, 0, len(names))
	for _, n := range names {
		if n == "" || n[0] < '0' || n[0] > '9' {
			continue
		}
		if p, err := strconv.Atoi(n); err == nil {
			pids = append(pids, p)
		}
	}
	return pids, nil
}

// readStat returns a process's parent pid and start time (clock ticks since boot) from
// /proc/<pid>/stat.
func readStat(procRoot string, pid int) (ppid, startTicks int, err error) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, err
	}
	return parseStat(b)
}

// parseStat parses /proc/<pid>/stat. The command name (field 2) is in parentheses and may hold
// spaces and parentheses, so the fields are counted from the last ')'.
func parseStat(b []byte) (ppid, startTicks int, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("parsing stat %q: no ')'", b)
	}
	fields := bytes.Fields(b[i+1:])
	// fields[0] is field 3 (state); ppid is field 4, starttime field 22.
	if len(fields) < 20 {
		return 0, 0, fmt.Errorf("parsing stat %q: %d fields", b, len(fields))
	}
	if ppid, err = strconv.Atoi(string(fields[1])); err != nil {
		return 0, 0, fmt.Errorf("parsing stat ppid: %w", err)
	}
	if startTicks, err = strconv.Atoi(string(fields[19])); err != nil {
		return 0, 0, fmt.Errorf("parsing stat starttime: %w", err)
	}
	return ppid, startTicks, nil
}
