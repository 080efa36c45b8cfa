package executor

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// PidfdWaiter waits for main through its pidfd.
type PidfdWaiter struct{}

// Wait blocks until p exits or ctx is done.
func (PidfdWaiter) Wait(ctx context.Context, p *MainProcess) error {
	if p == nil || p.PidFD == nil {
		return errors.New("waiting for main: no pidfd")
	}
	rc, err := p.PidFD.SyscallConn()
	if err != nil {
		return fmt.Errorf("waiting for main: %w", err)
	}
	var werr error
	if err := rc.Control(func(fd uintptr) { werr = WaitExit(ctx, int(fd)) }); err != nil {
		return fmt.Errorf("waiting for main: %w", err)
	}
	return werr
}

// WaitExit blocks until the process behind pidfd exits (the pidfd becomes readable) or ctx is
// done. poll(2) on a pidfd needs no privilege over the process, whatever its UID. A pipe written
// when ctx ends wakes the poll, so cancellation is immediate.
func WaitExit(ctx context.Context, pidfd int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("making wake-up pipe: %w", err)
	}
	defer r.Close()
	defer w.Close()
	// w.Write after w.Close is safe with *os.File (it fails with ErrClosed).
	stop := context.AfterFunc(ctx, func() { _, _ = w.Write([]byte{0}) })
	defer stop()

	rc, err := r.SyscallConn()
	if err != nil {
		return fmt.Errorf("polling pidfd: %w", err)
	}
	var werr error
	cerr := rc.Control(func(rfd uintptr) {
		fds := []unix.PollFd{
			{Fd: int32(pidfd), Events: unix.POLLIN},
			{Fd: int32(rfd), Events: unix.POLLIN},
		}
		for {
			_, err := unix.Poll(fds, -1)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				werr = fmt.Errorf("polling pidfd: %w", err)
				return
			}
			if fds[0].Revents != 0 {
				return // exited (POLLIN), or POLLERR/POLLHUP: the process is gone either way
			}
			if fds[1].Revents != 0 {
				werr = ctx.Err()
				return
			}
		}
	})
	if cerr != nil {
		return fmt.Errorf("polling pidfd: %w", cerr)
	}
	return werr
}
