package executor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// ErrMainExited is returned by Secure when main exited (or its pid was reused) before its root
// could be held.
var ErrMainExited = errors.New("main exited before its root filesystem was held")

// clockTicksPerSecond is USER_HZ, the unit of /proc/<pid>/stat's starttime; it is 100 on every
// Linux architecture Kubernetes runs on.
const clockTicksPerSecond = 100

// MainProcess is main's process pinned by a pidfd, with its root filesystem held open.
type MainProcess struct {
	// PID is main's pid in the executor's PID namespace.
	PID int
	// PidFD refers to main's process for as long as it is open, whatever happens to the pid.
	PidFD *os.File
	// Root is an O_PATH directory fd on main's root filesystem. It keeps that filesystem
	// readable after main exits (volume mounts inside it vanish with main's mount namespace).
	Root *os.File
	// Started is when main's process started, on the CLOCK_BOOTTIME clock (zero when unknown):
	// the runtime's init, before it exec'd main.
	Started time.Duration
	// Found is when the finder found main, on the same clock: within a scan of main's exec.
	Found time.Duration
}

// Close releases the pidfd and the root.
func (p *MainProcess) Close() error {
	if p == nil {
		return nil
	}
	var errs []error
	if p.Root != nil {
		errs = append(errs, p.Root.Close())
	}
	if p.PidFD != nil {
		errs = append(errs, p.PidFD.Close())
	}
	return errors.Join(errs...)
}

// ProcSecurer holds main's root through a proc filesystem.
type ProcSecurer struct {
	// ProcRoot is the proc filesystem main was found in; it must show the executor's own PID
	// namespace, since pidfd_open takes a pid in that namespace.
	ProcRoot string
	// Marker is main's environ entry (see MarkerFor).
	Marker string
}

// Secure pins pid and holds its root: pidfd_open first, so the pid cannot be reused under us;
// then the marker is checked again, so the pidfd is main's; then /proc/<pid>/root is opened; then
// the pidfd says whether the process was still alive, so the root opened is main's.
func (s ProcSecurer) Secure(pid int) (*MainProcess, error) {
	pfd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil, ErrMainExited
	}
	if err != nil {
		return nil, fmt.Errorf("opening pidfd of %d: %w", pid, err)
	}
	pidfd := os.NewFile(uintptr(pfd), "pidfd:"+strconv.Itoa(pid))
	dir := filepath.Join(s.ProcRoot, strconv.Itoa(pid))

	sc := newScanner(s.ProcRoot, s.Marker, 0, 0)
	if !sc.isMarked(pid) {
		// An exited main (a zombie) has an empty environ too.
		alive, _ := pidfdAlive(pfd)
		pidfd.Close()
		if !alive {
			return nil, ErrMainExited
		}
		return nil, fmt.Errorf("process %d is not marked as main", pid)
	}
	_, startTicks, statErr := readStat(s.ProcRoot, pid)

	// A plain open: /proc/<pid>/root is a magic link, which openat2's RESOLVE flags would refuse.
	rfd, err := unix.Open(filepath.Join(dir, "root"), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		pidfd.Close()
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
			return nil, ErrMainExited
		}
		return nil, fmt.Errorf("opening root of %d: %w", pid, err)
	}
	root := os.NewFile(uintptr(rfd), filepath.Join(dir, "root"))

	alive, err := pidfdAlive(pfd)
	if err != nil || !alive {
		root.Close()
		pidfd.Close()
		if err != nil {
			return nil, fmt.Errorf("checking pidfd of %d: %w", pid, err)
		}
		return nil, ErrMainExited
	}
	p := &MainProcess{PID: pid, PidFD: pidfd, Root: root}
	if statErr == nil {
		p.Started = time.Duration(startTicks) * time.Second / clockTicksPerSecond
	}
	return p, nil
}

// pidfdAlive polls a pidfd without blocking: it is readable once the process has exited.
func pidfdAlive(pidfd int) (bool, error) {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, err
		}
		return n == 0, nil
	}
}

// bootTime reads CLOCK_BOOTTIME, the clock of /proc/<pid>/stat's starttime.
func bootTime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
