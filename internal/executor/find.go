package executor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

// Defaults of ProcFinder's polling (see Find for how they combine). A main running `true` lives
// about 0.3 ms, so a process that may still exec main is looked at every FastInterval; the
// runtime's init shows up long before it execs main (runc sets up the root and runs hooks, then
// waits for the kubelet's StartContainer: 0.2–1 s on an idle kind node, seconds on a busy one),
// so watching for new processes every IdleInterval is enough to start looking fast in time.
//
// Every wakeup costs the executor 0.1 ms of CPU or more on a busy VM (a timer, a context switch,
// the Go runtime's sysmon), so after QuietAfter without a new pid in the Pod it looks only every
// QuietInterval, and it sleeps on a waiting init's threads up to SlowInterval.
const (
	DefaultProcRoot      = "/proc"
	DefaultFastInterval  = 100 * time.Microsecond
	DefaultFastFor       = 5 * time.Second
	DefaultIdleInterval  = 10 * time.Millisecond
	DefaultQuietInterval = 50 * time.Millisecond
	DefaultQuietAfter    = 2 * time.Second
	DefaultSlowInterval  = 100 * time.Millisecond
)

// settleFor is how long every look is a full scan after a pid was allocated that is neither a
// listed process nor a thread of one: the kernel allocates a pid before the process shows in
// /proc, and a forking thread may be preempted between the two. The looks stay at the idle pace:
// a new process is main's init at most, which waits long before it execs main.
const settleFor = 50 * time.Millisecond

// maxExplained bounds how many newly allocated pids the finder explains one by one; beyond that
// it just settles.
const maxExplained = 64

// execFor is how long the finder polls fast after a watched thread of a new process ended before
// it watches that process's threads again: the process may be in execve, whose dying threads are
// still listed for a moment. (After that, a process left with one thread is polled fast anyway.)
const execFor = 5 * time.Millisecond

// armRetry is how often the finder tries again to watch the threads of a new process that has
// too few of them (it may be a Go program that has not started its threads yet).
const armRetry = time.Millisecond

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
	// FastInterval, FastFor, IdleInterval, QuietInterval, QuietAfter and SlowInterval tune the
	// polling (see Find); zero means the default.
	FastInterval  time.Duration
	FastFor       time.Duration
	IdleInterval  time.Duration
	QuietInterval time.Duration
	QuietAfter    time.Duration
	SlowInterval  time.Duration
	// Gate, when set, holds Find after its first look until it is closed: the executor's startup
	// probe has connected, so kubelet is about to start main, and not before (main starts only
	// once that probe passes). Looking while nothing can appear only costs CPU. GateTimeout (zero:
	// DefaultGateTimeout) opens it anyway, should the probe never connect.
	Gate        <-chan struct{}
	GateTimeout time.Duration

	// AsOwner: when a process's environ is refused, read it again with that process's own
	// filesystem UID and GID (see withFSIDs). A root executor without CAP_SYS_PTRACE needs it to
	// recognise a non-root main.
	AsOwner bool

	// noThreadPidfds makes Find poll fast where it would wait on threads (kernels before 6.9).
	noThreadPidfds bool
	// trace, when set, is told Find's mode after its first look and whenever it changes.
	trace func(findMode)
	// stats are the last Find's.
	stats FindStats
}

// FindStats say what a Find cost and how close it came: operators read them in the executor's
// log, and the bench compares intervals by them.
type FindStats struct {
	// Looks counts the looks, FullScans those that listed /proc; Fast, Armed and Idle count
	// the waits between looks in each mode.
	Looks, FullScans, Fast, Armed, Idle int
	// InitLead is how long main's pid had been listed, unmarked (the runtime's init), when it
	// was found marked: the window in which it had to be seen. Zero when main was found at its
	// first sight.
	InitLead time.Duration
}

// Stats are the last Find's.
func (f *ProcFinder) Stats() FindStats { return f.stats }

// findMode is how Find waits for its next look.
type findMode int

const (
	// modeIdle: IdleInterval, nothing may exec main.
	modeIdle findMode = iota
	// modeArmed: up to IdleInterval, woken early when a watched thread of a new process ends.
	modeArmed
	// modeFast: FastInterval.
	modeFast
)

func (m findMode) String() string {
	return [...]string{"idle", "armed", "fast"}[m]
}

// NewProcFinder returns a finder for the StepRun with this UID, scanning procRoot ("" means
// /proc) and skipping the calling process.
func NewProcFinder(procRoot, uid string) *ProcFinder {
	if procRoot == "" {
		procRoot = DefaultProcRoot
	}
	return &ProcFinder{ProcRoot: procRoot, Marker: MarkerFor(uid), Self: os.Getpid()}
}

// Find looks until main is found and returns its pid. firstScan, when not nil, is called once
// after the first complete scan (the executor is then watching /proc and may say it is ready);
// its error ends Find. Find returns ErrNotFound (wrapping ctx's error) when ctx ends first.
//
// Main can only be a process whose parent is Parent, and it either appears marked or appears
// unmarked (the runtime's init, PPid 0 in a Pod) and later execs main in place, keeping its pid.
// Each wakeup costs tens of microseconds of CPU on a busy node, whatever the look does, so Find
// wakes often only while such an init may exec main:
//   - idle, it reads the pid most recently allocated in its PID namespace (the last field of
//     <ProcRoot>/loadavg, one pread) every IdleInterval (every QuietInterval once no pid was
//     allocated for QuietAfter), scans fully when that changed, and at least every SlowInterval;
//   - an unmarked child of Parent other than pid 1 (pause) is pending for FastFor after it
//     first shows: Find then looks every FastInterval, re-reading only the environ of Parent's
//     children while no new pid is allocated;
//   - but when a pending process has threads (runc init is a Go program), Find holds pidfds of
//     two of them (PIDFD_THREAD) and sleeps on those instead, up to SlowInterval: execve ends
//     every thread but the caller, so one of them ends as the exec starts, and Find then looks
//     every FastInterval for execFor, before the new program runs. Such a process stays pending
//     past FastFor for as long as its threads are watched: on a busy node runc init waits
//     seconds (2–13 s measured with 20 Pods starting) for the kubelet's StartContainer;
//   - after a pid allocation that is neither a listed process nor a thread of one, every look
//     is a full scan for settleFor.
//
// When loadavg is unreadable, or is not this proc filesystem's namespace's, every look is a full
// scan, at the same intervals.
func (f *ProcFinder) Find(ctx context.Context, firstScan func() error) (int, error) {
	w := f.newWatch()
	defer w.close()
	f.stats = FindStats{}
	defer func() { f.stats.FullScans = w.s.scans }()
	var was findMode
	for first := true; ; first = false {
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		now := time.Now()
		pid, found, err := w.look(now)
		f.stats.Looks++
		if err != nil {
			return 0, err
		}
		if first && firstScan != nil {
			if err := firstScan(); err != nil {
				return 0, err
			}
		}
		if found {
			if pr := w.s.procs[pid]; pr != nil && pr.seen.Before(now) {
				f.stats.InitLead = now.Sub(pr.seen)
			}
			return pid, nil
		}
		if first && f.Gate != nil {
			if err := f.waitGate(ctx); err != nil {
				return 0, err
			}
			w.active = time.Now() // main is on its way
			continue
		}
		mode := w.mode(now)
		if f.trace != nil && (first || mode != was) {
			f.trace(mode)
		}
		was = mode
		switch mode {
		case modeFast:
			f.stats.Fast++
			nap(w.fastInterval)
		case modeArmed:
			f.stats.Armed++
			w.waitArmed()
		default:
			f.stats.Idle++
			w.waitIdle(now)
		}
	}
}

// DefaultGateTimeout opens ProcFinder.Gate when the startup probe never connected: kubelet
// restarts an executor whose probe keeps failing well before (podspec.DefaultReadyTimeout).
const DefaultGateTimeout = 30 * time.Second

// waitGate blocks until the gate opens, it times out, or ctx ends.
func (f *ProcFinder) waitGate(ctx context.Context) error {
	t := time.NewTimer(orDefault(f.GateTimeout, DefaultGateTimeout))
	defer t.Stop()
	select {
	case <-f.Gate:
	case <-t.C:
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrNotFound, ctx.Err())
	}
	return nil
}

// Scan looks once and reports main's pid if it is there.
func (f *ProcFinder) Scan() (pid int, found bool, err error) {
	s := f.scanner()
	defer s.close()
	return s.scan(time.Now())
}

// watch is Find's state between looks.
type watch struct {
	s                                                 *scanner
	fastInterval, fastFor, idleInterval, slowInterval time.Duration
	quietInterval, quietAfter                         time.Duration
	// active is when a pid was last allocated in the namespace (or the gate opened).
	active time.Time
	// loadavg is <ProcRoot>/loadavg held open, or -1 when it is not used; lastPID is its last
	// field as last read.
	loadavg     int
	lastPID     int
	lastFull    time.Time
	settleUntil time.Time
	// threadPidfds is cleared when the kernel refuses PIDFD_THREAD; a watched thread's end makes
	// Find look fast until execUntil.
	threadPidfds bool
	execUntil    time.Time
	pollFDs      []unix.PollFd
	pollPIDs     []int
	// parker holds the idle and armed waits; nil when it could not be made, and those waits
	// are raw sleeps and polls.
	parker *parker
	buf    []byte
}

func (f *ProcFinder) scanner() *scanner {
	s := newScanner(f.ProcRoot, f.Marker, f.Self, f.Parent)
	s.asOwner = f.AsOwner
	return s
}

func (f *ProcFinder) newWatch() *watch {
	w := &watch{
		s:             f.scanner(),
		fastInterval:  orDefault(f.FastInterval, DefaultFastInterval),
		fastFor:       orDefault(f.FastFor, DefaultFastFor),
		idleInterval:  orDefault(f.IdleInterval, DefaultIdleInterval),
		slowInterval:  orDefault(f.SlowInterval, DefaultSlowInterval),
		quietInterval: orDefault(f.QuietInterval, DefaultQuietInterval),
		quietAfter:    orDefault(f.QuietAfter, DefaultQuietAfter),
		active:        time.Now(),
		loadavg:       -1,
		threadPidfds:  !f.noThreadPidfds,
		buf:           make([]byte, 128),
	}
	if fd, err := unix.Open(filepath.Join(f.ProcRoot, "loadavg"), unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
		w.loadavg = fd
	}
	if p, err := newParker(); err == nil {
		w.parker = p
	}
	return w
}

// idleWait is how long an idle look waits for the next: IdleInterval while pids are being
// allocated in the Pod, QuietInterval once none was for QuietAfter.
func (w *watch) idleWait(now time.Time) time.Duration {
	if now.Sub(w.active) >= w.quietAfter {
		return w.quietInterval
	}
	return w.idleInterval
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func (w *watch) close() {
	w.dropLoadavg()
	w.s.close()
	if w.parker != nil {
		w.parker.close()
	}
}

// park adds pr's thread pidfds to the parker's set. Should that fail, the parker is dropped:
// the waits are raw polls of every armed process's pidfds from then on.
func (w *watch) park(pr *proc) {
	if w.parker == nil {
		return
	}
	for _, fd := range pr.threads {
		if err := w.parker.add(fd); err != nil {
			w.parker.close()
			w.parker = nil
			return
		}
	}
}

// waitIdle waits for the next idle look: parked once the Pod is quiet; at IdleInterval a raw
// sleep measured cheaper (13–15 against 19–22 ms of CPU per second in TestFindCPU).
func (w *watch) waitIdle(now time.Time) {
	d := w.idleWait(now)
	if w.parker == nil || d < w.quietInterval {
		nap(d)
		return
	}
	w.parker.wait(d) // nothing is armed
}

func (w *watch) dropLoadavg() {
	if w.loadavg >= 0 {
		_ = unix.Close(w.loadavg)
		w.loadavg = -1
	}
}

// look is one step of Find at time now.
func (w *watch) look(now time.Time) (pid int, found bool, err error) {
	first := !w.s.scanned
	full := first || w.loadavg < 0 || now.Sub(w.lastFull) >= w.slowInterval || now.Before(w.settleUntil)
	prev, changed := w.lastPID, false
	if w.loadavg >= 0 {
		// Read before listing: a process forked after the read changes it again.
		n, err := readLastPID(w.loadavg, w.buf)
		switch {
		case err != nil:
			w.dropLoadavg()
			full = true
		case n != prev:
			w.lastPID, changed, full = n, true, true
			w.active = now
		}
	}
	if full {
		pid, found, err = w.s.scan(now)
		if err != nil || found {
			return pid, found, err
		}
		w.lastFull = now
		switch {
		case first && w.loadavg >= 0 && w.s.maxPID > w.lastPID:
			// A listed pid above the namespace's last allocated one: loadavg counts another PID
			// namespace (the reader's, not ProcRoot's).
			w.dropLoadavg()
		case changed && !first && !w.explained(prev, w.lastPID):
			w.settleUntil = now.Add(settleFor)
		}
	} else if pid, found, err = w.s.check(now); found {
		return pid, found, err
	}
	w.arm(now)
	return 0, false, nil
}

// pending reports whether a child of Parent may still exec main: it is not the namespace's init
// (pause, in a Pod), and it was first seen less than FastFor ago, or its threads are watched
// (which costs no more than idling, so a runtime init is watched however long it waits). Being a
// child of Parent not taken for main, it is unmarked.
func (w *watch) pending(pr *proc, now time.Time) bool {
	return pr.pid != 1 && (pr.armed() || now.Sub(pr.seen) < w.fastFor)
}

// mode says how to wait for the next look.
func (w *watch) mode(now time.Time) findMode {
	if now.Before(w.execUntil) {
		return modeFast
	}
	mode := modeIdle
	for _, p := range w.s.children {
		pr := w.s.procs[p]
		if pr == nil || !w.pending(pr, now) {
			continue
		}
		if !pr.armed() {
			return modeFast
		}
		mode = modeArmed
	}
	return mode
}

// arm holds pidfds of two threads of each pending process that has them and releases those of
// processes no longer pending.
func (w *watch) arm(now time.Time) {
	for _, p := range w.s.children {
		pr := w.s.procs[p]
		if pr == nil {
			continue
		}
		if !w.pending(pr, now) {
			pr.disarm()
			continue
		}
		if !w.threadPidfds || pr.armed() || now.Before(pr.nextArm) {
			continue
		}
		err := w.s.armThreads(p, pr)
		if err == nil {
			w.park(pr)
		}
		switch {
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS):
			w.threadPidfds = false // no PIDFD_THREAD (Linux < 6.9): poll fast
		case errors.Is(err, errFewThreads):
			pr.nextArm = now.Add(armRetry)
		case err != nil:
			// A thread ended between the listing and pidfd_open: maybe an exec.
			w.execUntil = now.Add(execFor)
			pr.nextArm = w.execUntil
		}
	}
}

// waitArmed sleeps until a watched thread ends or SlowInterval passes. A process whose thread
// ended is disarmed, and Find looks fast for execFor.
func (w *watch) waitArmed() {
	w.pollFDs, w.pollPIDs = w.pollFDs[:0], w.pollPIDs[:0]
	now := time.Now()
	for _, p := range w.s.children {
		pr := w.s.procs[p]
		if pr == nil || !pr.armed() || !w.pending(pr, now) {
			continue
		}
		for _, fd := range pr.threads {
			w.pollFDs = append(w.pollFDs, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
			w.pollPIDs = append(w.pollPIDs, p)
		}
	}
	if len(w.pollFDs) == 0 {
		return
	}
	if w.parker != nil {
		fired := w.parker.wait(w.slowInterval)
		for i, fd := range w.pollFDs {
			if slices.Contains(fired, int(fd.Fd)) {
				w.pollFDs[i].Revents = unix.POLLIN
			}
		}
		if len(fired) == 0 {
			return
		}
	} else if !pollRaw(w.pollFDs, w.slowInterval) {
		return
	}
	now = time.Now()
	for i, fd := range w.pollFDs {
		if fd.Revents == 0 {
			continue
		}
		if pr := w.s.procs[w.pollPIDs[i]]; pr != nil {
			pr.disarm()
			pr.nextArm = now.Add(execFor)
		}
		w.execUntil = now.Add(execFor)
	}
}

// explained reports whether every pid allocated after from up to to is a process the last scan
// listed, or a thread of one of them or of the finder's own process (the Go runtime, in runc
// init or in the executor, starts threads as it likes).
func (w *watch) explained(from, to int) bool {
	if to < from || to-from > maxExplained {
		return false // wrapped around, or too busy to bother
	}
	for pid := from + 1; pid <= to; pid++ {
		if _, ok := w.s.procs[pid]; ok {
			continue
		}
		tgid, err := w.s.readTgid(pid)
		if err != nil || tgid == pid {
			return false // gone, or a process that was not listed yet
		}
		if _, ok := w.s.procs[tgid]; !ok && tgid != w.s.self {
			return false
		}
	}
	return true
}
