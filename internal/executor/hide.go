package executor

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// HideFromMain marks the executor non-dumpable. An unprivileged executor shares main's UID and
// GID, so without this main could read the executor's service-account token through
// /proc/<executor>/root. A non-dumpable process's /proc entries are closed to every process
// without CAP_SYS_PTRACE; the executor's own access to main is unaffected. Call it before
// anything reads the token.
func HideFromMain() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("marking the executor non-dumpable: %w", err)
	}
	return nil
}
