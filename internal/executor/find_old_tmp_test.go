package executor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// oldProcFinder finds main's process by scanning a proc filesystem for the marker in each process's
// environment. Main is the marked process whose parent is Parent: in the Pod, main's parent is the
// runtime's shim, outside the Pod's PID namespace, so /proc shows PPid 0. "Marked and its parent
// unmarked" is not enough: main's children inherit the marker, and so does a runtime hook that
// runc init runs with main's environment before it execs main (kind's createContainer hook does):
// such a hook is marked, its parent (runc init) is not yet, and its root is the node's.
type oldProcFinder struct {
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

// NewoldProcFinder returns a finder for the StepRun with this UID, scanning procRoot ("" means
// /proc) and skipping the calling process.
func newOldProcFinder(procRoot, uid string) *oldProcFinder {
	if procRoot == "" {
		procRoot = DefaultProcRoot
	}
	return &oldProcFinder{ProcRoot: procRoot, Marker: MarkerFor(uid), Self: os.Getpid()}
}

// Find scans until main is found and returns its pid. firstScan, when not nil, is called once
// after the first complete scan (the executor is then watching /proc and may say it is ready);
// its error ends Find. Find returns ErrNotFound (wrapping ctx's error) when ctx ends first.
func (f *oldProcFinder) Find(ctx context.Context, firstScan func() error) (int, error) {
	fast, fastFor, slow := f.FastInterval, f.FastFor, f.SlowInterval
	if fast <= 0 {
		fast = DefaultFastInterval
	}
	if fastFor <= 0 {
		fastFor = (5*time.Second)
	}
	if slow <= 0 {
		slow = (10*time.Millisecond)
	}
	s := oldNewScanner(f.ProcRoot, f.Marker, f.Self, f.Parent)
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
func (f *oldProcFinder) Scan() (pid int, found bool, err error) {
	pid, found, _, err = oldNewScanner(f.ProcRoot, f.Marker, f.Self, f.Parent).scan()
	return pid, found, err
}

// scanner keeps what one scan needs between scans: a read buffer and the pids seen last time.
type oldScanner struct {
	procRoot string
	marker   []byte
	self     int
	parent   int
	buf      []byte
	seen     map[int]bool
}

func oldNewScanner(procRoot, marker string, self, parent int) *oldScanner {
	return &oldScanner{procRoot: procRoot, marker: []byte(marker), self: self, parent: parent, buf: make([]byte, 16*1024)}
}

// oldCandidate is a marked process whose parent is main's parent.
type oldCandidate struct {
	pid, startTicks int
}

// scan lists the processes once. grew reports that a process appeared since the previous scan.
func (s *oldScanner) scan() (pid int, found, grew bool, err error) {
	pids, err := oldListPIDs(s.procRoot)
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

	var best *oldCandidate
	for p := range marked {
		ppid, start, err := readStat(s.procRoot, p)
		if err != nil {
			continue // exited meanwhile
		}
		if ppid != s.parent {
			continue // a child of main, or a runtime hook running with main's environment
		}
		if best == nil || start < best.startTicks || (start == best.startTicks && p < best.pid) {
			best = &oldCandidate{pid: p, startTicks: start}
		}
	}
	if best == nil {
		return 0, false, grew, nil
	}
	return best.pid, true, grew, nil
}


func (s *oldScanner) isMarked(pid int) bool {
	env, err := os.ReadFile(filepath.Join(s.procRoot, strconv.Itoa(pid), "environ"))
	return err == nil && hasEnvEntry(env, s.marker)
}

func oldListPIDs(procRoot string) ([]int, error) {
	d, err := os.Open(procRoot)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, n := range names {
		if p, err := strconv.Atoi(n); err == nil {
			pids = append(pids, p)
		}
	}
	return pids, nil
}
