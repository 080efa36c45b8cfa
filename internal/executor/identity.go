package executor

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// IDs are a process's user and group IDs, as the kernel's ptrace access check compares them.
type IDs struct {
	UID, GID int
	Groups   []int
}

// parseIDs reads the Uid, Gid and Groups lines of /proc/<pid>/status. The real, effective and
// saved IDs must agree: the access check wants all three equal to the reader's, so a process
// whose IDs differ (a setuid program) cannot be matched by taking them.
func parseIDs(status []byte) (IDs, error) {
	var ids IDs
	var seenUID, seenGID bool
	for line := range bytes.Lines(status) {
		key, rest, ok := bytes.Cut(bytes.TrimSpace(line), []byte(":"))
		if !ok {
			continue
		}
		fields := bytes.Fields(rest)
		switch string(key) {
		case "Uid", "Gid":
			id, err := sameIDs(fields)
			if err != nil {
				return IDs{}, fmt.Errorf("%s: %w", key, err)
			}
			if string(key) == "Uid" {
				ids.UID, seenUID = id, true
			} else {
				ids.GID, seenGID = id, true
			}
		case "Groups":
			for _, f := range fields {
				g, err := strconv.Atoi(string(f))
				if err != nil {
					return IDs{}, fmt.Errorf("Groups: %q: %w", f, err)
				}
				ids.Groups = append(ids.Groups, g)
			}
		}
	}
	if !seenUID || !seenGID {
		return IDs{}, errors.New("no Uid or Gid line")
	}
	return ids, nil
}

// sameIDs returns the ID of a status line's real, effective and saved fields (the filesystem one
// follows the effective one and is not compared by the access check).
func sameIDs(fields [][]byte) (int, error) {
	if len(fields) < 3 {
		return 0, fmt.Errorf("want at least 3 fields, got %d", len(fields))
	}
	var ids [3]int
	for i := range ids {
		id, err := strconv.Atoi(string(fields[i]))
		if err != nil {
			return 0, fmt.Errorf("%q: %w", fields[i], err)
		}
		ids[i] = id
	}
	if ids[0] != ids[1] || ids[1] != ids[2] {
		return 0, fmt.Errorf("real, effective and saved IDs differ (%d, %d, %d)", ids[0], ids[1], ids[2])
	}
	return ids[0], nil
}

// ReadIDs reads the IDs of process pid from procRoot. /proc/<pid>/status is readable by anyone.
func ReadIDs(procRoot string, pid int) (IDs, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "status"))
	if err != nil {
		return IDs{}, fmt.Errorf("reading the IDs of %d: %w", pid, err)
	}
	ids, err := parseIDs(b)
	if err != nil {
		return IDs{}, fmt.Errorf("reading the IDs of %d: %w", pid, err)
	}
	return ids, nil
}

// withFSIDs runs f on a thread whose filesystem UID and GID are uid and gid, then restores them.
// The kernel checks access to /proc/<pid>/environ and /proc/<pid>/root against the caller's
// filesystem IDs, so a root executor without CAP_SYS_PTRACE may read a non-root process's environ
// this way; unlike setresuid it is undone at once, so looking at a process that turns out not to
// be main costs nothing. It needs CAP_SETUID and CAP_SETGID. A thread that cannot be restored is
// never reused: its goroutine ends locked to it, which ends the thread.
func withFSIDs(uid, gid int, f func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		prevUID, _ := unix.SetfsuidRetUid(-1)
		prevGID, _ := unix.SetfsgidRetGid(-1)
		_, _ = unix.SetfsgidRetGid(gid)
		_, _ = unix.SetfsuidRetUid(uid)
		curUID, _ := unix.SetfsuidRetUid(-1)
		curGID, _ := unix.SetfsgidRetGid(-1)
		var err error
		if curUID == uid && curGID == gid {
			f()
		} else {
			err = fmt.Errorf("could not take filesystem IDs %d:%d (have %d:%d): the executor lacks SETUID or SETGID", uid, gid, curUID, curGID)
		}
		_, _ = unix.SetfsuidRetUid(prevUID)
		_, _ = unix.SetfsgidRetGid(prevGID)
		curUID, _ = unix.SetfsuidRetUid(-1)
		curGID, _ = unix.SetfsgidRetGid(-1)
		if curUID == prevUID && curGID == prevGID {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// AdoptIDs makes the whole executor (every thread) run as ids: groups first, then the GID, then
// the UID, since the UID change drops the capabilities the others need. It is irreversible: a
// non-root UID ends with no capability at all. Call it only on main's IDs, once main is found,
// before its root is opened; the executor is marked non-dumpable again afterwards (an ID change
// resets that flag to the system's default).
func AdoptIDs(ids IDs) error {
	if os.Geteuid() == ids.UID && os.Getegid() == ids.GID {
		if groups, err := os.Getgroups(); err == nil && slices.Equal(groups, ids.Groups) {
			return nil
		}
	}
	if err := syscall.Setgroups(ids.Groups); err != nil {
		return fmt.Errorf("taking main's groups %v: %w", ids.Groups, err)
	}
	if err := syscall.Setresgid(ids.GID, ids.GID, ids.GID); err != nil {
		return fmt.Errorf("taking main's GID %d: %w", ids.GID, err)
	}
	if err := syscall.Setresuid(ids.UID, ids.UID, ids.UID); err != nil {
		return fmt.Errorf("taking main's UID %d: %w", ids.UID, err)
	}
	return HideFromMain()
}
