package executor

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// scanner keeps what scans need between them: the open proc directory, buffers and what it knows
// of each process listed last time.
type scanner struct {
	procRoot string
	marker   []byte
	self     int
	parent   int
	buf      []byte
	dirBuf   []byte
	dir      int // ProcRoot, opened by the first scan; -1 before
	pids     []int
	tids     []int
	maxPID   int // the highest pid of the last listing
	// procs are the processes of the last listing but Self, by pid; children are those whose
	// parent is Parent, the only ones that can be main.
	procs    map[int]*proc
	children []int
	gen      uint64
	scanned  bool
	// scans counts full scans.
	scans int
	// asOwner: see ProcFinder.AsOwner; uid and gid are the executor's own (effective, which
	// its filesystem IDs follow).
	asOwner  bool
	uid, gid int
}

// proc is what a scanner remembers of a process. Its parent and start time are read once: a
// process is only ever reparented to a reaper inside its PID namespace, never to Parent, which
// is outside it in a Pod.
type proc struct {
	pid, ppid, start int
	environ          string
	seen             time.Time // first listed
	gen              uint64
	// threads are PIDFD_THREAD pidfds of two of its threads other than the leader, or -1.
	threads [2]int
	nextArm time.Time
}

func (pr *proc) armed() bool { return pr.threads[0] >= 0 }

func (pr *proc) disarm() {
	for i, fd := range pr.threads {
		if fd >= 0 {
			_ = unix.Close(fd)
			pr.threads[i] = -1
		}
	}
}

func newScanner(procRoot, marker string, self, parent int) *scanner {
	return &scanner{
		procRoot: procRoot, marker: []byte(marker), self: self, parent: parent,
		buf: make([]byte, 16*1024), dir: -1, procs: make(map[int]*proc),
		uid: os.Geteuid(), gid: os.Getegid(),
	}
}

func (s *scanner) close() {
	if s.dir >= 0 {
		_ = unix.Close(s.dir)
		s.dir = -1
	}
	for p := range s.procs {
		s.forget(p)
	}
}

// forget drops a process that is gone.
func (s *scanner) forget(pid int) {
	if pr := s.procs[pid]; pr != nil {
		pr.disarm()
		delete(s.procs, pid)
	}
}

// candidate is a marked process whose parent is main's parent.
type candidate struct {
	pid, startTicks int
}

// scan lists the processes and looks at the environ of each child of Parent.
func (s *scanner) scan(now time.Time) (pid int, found bool, err error) {
	pids, err := s.list()
	if err != nil {
		return 0, false, err
	}
	s.gen++
	s.scans++
	s.maxPID = 0
	s.children = s.children[:0]
	for _, p := range pids {
		s.maxPID = max(s.maxPID, p)
		if p == s.self {
			continue
		}
		pr := s.procs[p]
		if pr == nil {
			ppid, start, err := readStat(s.procRoot, p)
			if err != nil {
				continue // exited meanwhile
			}
			pr = &proc{pid: p, ppid: ppid, start: start, seen: now,
				environ: filepath.Join(s.procRoot, strconv.Itoa(p), "environ"), threads: [2]int{-1, -1}}
			s.procs[p] = pr
		}
		pr.gen = s.gen
		if pr.ppid == s.parent {
			s.children = append(s.children, p)
		}
	}
	for p, pr := range s.procs {
		if pr.gen != s.gen {
			s.forget(p)
		}
	}
	s.scanned = true
	return s.check(now)
}

// check reads the environ of Parent's children only: without a new pid, main can only be one of
// them, exec'd in place.
func (s *scanner) check(now time.Time) (pid int, found bool, err error) {
	var best *candidate
	for _, p := range s.children {
		pr := s.procs[p]
		if pr == nil {
			continue
		}
		// Unreadable is not gone: while a thread other than the leader execs, taking over the
		// leader's pid, /proc/<pid> may briefly not resolve. Only a listing forgets a process.
		if !s.isMarkedAt(pr.environ) {
			continue
		}
		// Marked: read its stat again, in case the pid now is another process.
		ppid, start, err := readStat(s.procRoot, p)
		if err != nil {
			continue // exited meanwhile
		}
		if start != pr.start {
			pr.disarm()
			pr.ppid, pr.start, pr.seen = ppid, start, now
		}
		if ppid != s.parent {
			continue // a child of main, or a runtime hook running with main's environment
		}
		if best == nil || start < best.startTicks || (start == best.startTicks && p < best.pid) {
			best = &candidate{pid: p, startTicks: start}
		}
	}
	if best == nil {
		return 0, false, nil
	}
	return best.pid, true, nil
}

// isMarked reads /proc/<pid>/environ. Unreadable processes (exited, another user's, kernel
// threads, zombies with an empty environment) are not marked.
func (s *scanner) isMarked(pid int) bool {
	return s.isMarkedAt(filepath.Join(s.procRoot, strconv.Itoa(pid), "environ"))
}

// isMarkedAt is isMarked with the environ file's path.
func (s *scanner) isMarkedAt(environ string) bool {
	env, err := s.readFile(environ)
	if s.asOwner && (errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM)) {
		env, err = s.readAsOwner(environ)
	}
	return err == nil && hasEnvEntry(env, s.marker)
}

// readAsOwner reads a process's environ with its owner's filesystem IDs. The owner is read off
// /proc/<pid> itself (one stat): the kernel gives it the process's effective IDs while the process
// is dumpable, and root's otherwise. When those are the executor's own IDs nothing is retried: a
// runtime init waiting to exec main is not dumpable, so it is refused whatever the IDs, on every
// look until it execs. pid 1 is skipped: in a Pod it is the pause process, never main.
func (s *scanner) readAsOwner(environ string) ([]byte, error) {
	dir := filepath.Dir(environ)
	pid, err := strconv.Atoi(filepath.Base(dir))
	if err != nil || pid == 1 {
		return nil, unix.EACCES
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return nil, err
	}
	uid, gid := int(st.Uid), int(st.Gid)
	if uid == s.uid && gid == s.gid {
		return nil, unix.EACCES
	}
	var env []byte
	var readErr error
	if err := withFSIDs(uid, gid, func() { env, readErr = s.readFile(environ) }); err != nil {
		return nil, err
	}
	return env, readErr
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
