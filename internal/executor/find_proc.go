package executor

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// list returns the pids in ProcRoot, reading the directory held open since the first call from
// its start again: one lseek and a getdents or two instead of an open, a stat and a close, and
// no string per entry. The slice is reused by the next call.
func (s *scanner) list() ([]int, error) {
	if s.dir < 0 {
		fd, err := unix.Open(s.procRoot, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("opening %s: %w", s.procRoot, err)
		}
		s.dir = fd
		s.dirBuf = make([]byte, 8*1024)
	} else if _, err := unix.Seek(s.dir, 0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("rewinding %s: %w", s.procRoot, err)
	}
	s.pids = s.pids[:0]
	for {
		n, err := unix.Getdents(s.dir, s.dirBuf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", s.procRoot, err)
		}
		if n <= 0 {
			return s.pids, nil
		}
		s.pids = appendPIDs(s.pids, s.dirBuf[:n])
	}
}

// appendPIDs appends the all-digit names of the linux_dirent64 records in b: d_ino (8 bytes),
// d_off (8), d_reclen (2), d_type (1), then the NUL-terminated name.
func appendPIDs(pids []int, b []byte) []int {
	const nameOff = 19
	for len(b) > nameOff {
		reclen := int(binary.NativeEndian.Uint16(b[16:18]))
		if reclen <= nameOff || reclen > len(b) {
			break
		}
		if pid, ok := parsePID(b[nameOff:reclen]); ok {
			pids = append(pids, pid)
		}
		b = b[reclen:]
	}
	return pids
}

// parsePID parses a NUL-terminated (or unterminated) decimal name; pids fit in 22 bits.
func parsePID(name []byte) (int, bool) {
	n, digits := 0, 0
	for _, c := range name {
		if c == 0 {
			break
		}
		if c < '0' || c > '9' || digits == 9 {
			return 0, false
		}
		n = n*10 + int(c-'0')
		digits++
	}
	return n, digits > 0
}

// readLastPID reads the last field of /proc/loadavg ("0.00 0.01 0.05 1/123 4567\n"): the pid
// most recently allocated in the reader's PID namespace (the kernel's fs/proc/loadavg.c prints
// the cursor of task_active_pid_ns(current)). pread at offset 0 makes the kernel format it
// afresh, so the file stays open.
func readLastPID(fd int, buf []byte) (int, error) {
	n, err := unix.Pread(fd, buf, 0)
	for errors.Is(err, unix.EINTR) {
		n, err = unix.Pread(fd, buf, 0)
	}
	if err != nil {
		return 0, fmt.Errorf("reading loadavg: %w", err)
	}
	b := buf[:n]
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	i := len(b)
	for i > 0 && b[i-1] != ' ' {
		i--
	}
	pid, ok := parsePID(b[i:])
	if !ok || i == 0 {
		return 0, fmt.Errorf("parsing loadavg %q: no last pid", buf[:n])
	}
	return pid, nil
}

// nap blocks the calling thread for d with a raw nanosleep. Through a regular syscall the Go
// runtime, when the sleep ends, wakes its sysmon thread or another thread to run this P, which
// measured as more than the sleep itself: about 60 µs of CPU per 100 µs nap instead of 30 on a
// loaded 2-core VM (time.Sleep costs as much, and rounds sub-millisecond waits up to about a
// millisecond). A raw one keeps the P, which is harmless for a few milliseconds: other Ps run
// other goroutines, sysmon preempts this one every 10 ms, and a stop-the-world waits for the nap
// at worst. With a single P nothing else could run, so nap yields then (runtime.Gosched wakes
// an idle P too, hence not always).
func nap(d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	_, _, _ = unix.RawSyscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
	yieldIfAlone()
}

// yieldIfAlone lets other goroutines run when this one holds the only P.
func yieldIfAlone() {
	if runtime.GOMAXPROCS(0) == 1 {
		runtime.Gosched()
	}
}

// readTgid reads the thread group (process) id of a task from /proc/<tid>/status: a thread's
// directory can be opened, though it is not listed.
func (s *scanner) readTgid(tid int) (int, error) {
	b, err := s.readFile(filepath.Join(s.procRoot, strconv.Itoa(tid), "status"))
	if err != nil {
		return 0, err
	}
	_, rest, ok := bytes.Cut(b, []byte("\nTgid:"))
	if !ok {
		return 0, fmt.Errorf("no Tgid in the status of %d", tid)
	}
	rest = bytes.TrimLeft(rest, " \t")
	if i := bytes.IndexByte(rest, '\n'); i >= 0 {
		rest = rest[:i]
	}
	tgid, ok := parsePID(rest)
	if !ok {
		return 0, fmt.Errorf("parsing the Tgid of %d: %q", tid, rest)
	}
	return tgid, nil
}

// errFewThreads: a process's threads cannot be listed, or it has fewer than three, so two other
// than the leader cannot be watched (yet).
var errFewThreads = errors.New("fewer than three threads")

// armThreads opens PIDFD_THREAD pidfds of two of pid's threads other than its leader. Two,
// because the thread that calls execve survives it (taking the leader's pid): whichever thread
// it is, one of the two ends.
func (s *scanner) armThreads(pid int, pr *proc) error {
	task := filepath.Join(s.procRoot, strconv.Itoa(pid), "task")
	fd, err := unix.Open(task, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%w: opening %s: %w", errFewThreads, task, err)
	}
	defer unix.Close(fd)
	var tids [2]int
	n := 0
	for n < len(tids) {
		m, err := unix.Getdents(fd, s.buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%w: listing %s: %w", errFewThreads, task, err)
		}
		if m <= 0 {
			break
		}
		s.tids = appendPIDs(s.tids[:0], s.buf[:m])
		for _, tid := range s.tids {
			if tid != pid && n < len(tids) {
				tids[n] = tid
				n++
			}
		}
	}
	if n < len(tids) {
		return errFewThreads
	}
	for i, tid := range tids {
		pfd, err := unix.PidfdOpen(tid, pidfdThread)
		if err != nil {
			pr.disarm()
			return fmt.Errorf("pidfd_open of thread %d: %w", tid, err)
		}
		pr.threads[i] = pfd
	}
	return nil
}

// pidfdThread is PIDFD_THREAD (Linux 6.9): a pidfd that polls readable when that thread ends.
const pidfdThread = unix.O_EXCL

// pollRaw is ppoll with a raw syscall, for the reasons nap gives; it reports whether an fd is
// ready.
func pollRaw(fds []unix.PollFd, d time.Duration) bool {
	ts := unix.NsecToTimespec(int64(d))
	n, _, errno := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), uintptr(len(fds)),
		uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	yieldIfAlone()
	return errno == 0 && n > 0
}

// parker makes the finder's longer waits park its goroutine in the Go runtime's poller, on an
// epoll set of the watched threads' pidfds with a deadline. A raw sleep of that length looks
// like a goroutine running to the runtime, whose sysmon thread then wakes every 10 ms or sooner
// to preempt it: measured on the kind node, that cost more than the finder's looks.
type parker struct {
	f      *os.File
	conn   syscall.RawConn
	epfd   int
	events []unix.EpollEvent
	fired  []int
}

func newParker() (*parker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("epoll set non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(epfd), "pidfds") // non-blocking: in the runtime's poller
	conn, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return &parker{f: f, conn: conn, epfd: epfd, events: make([]unix.EpollEvent, 8)}, nil
}

// add wakes the waits when pidfd polls readable, until pidfd is closed.
func (p *parker) add(pidfd int) error {
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, pidfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(pidfd)})
}

// wait parks until a pidfd added is readable or d passes, and returns the readable ones (valid
// until the next wait).
func (p *parker) wait(d time.Duration) []int {
	p.fired = p.fired[:0]
	if err := p.f.SetReadDeadline(time.Now().Add(d)); err != nil {
		return nil
	}
	_ = p.conn.Read(func(fd uintptr) bool {
		n, err := unix.EpollWait(int(fd), p.events, 0)
		for _, ev := range p.events[:max(n, 0)] {
			p.fired = append(p.fired, int(ev.Fd))
		}
		return err == nil && n > 0
	}) // os.ErrDeadlineExceeded when nothing fired
	return p.fired
}

func (p *parker) close() { _ = p.f.Close() }
