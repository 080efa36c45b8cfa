// Command helper plays main in the executor's tests. The test starts it chrooted into a temporary
// directory, in its own mount namespace, with an empty environment. Like runc, it first sets up
// its root filesystem, then execs itself with the environment given by -env (the marker): so it
// is marked only once its root is final, as main is. With -newroot the root is a tmpfs that
// exists only in its mount namespace: once the helper exits, that tmpfs is reachable only through
// a held root fd. After the exec it prints "ready <child pid>" and waits for its stdin to close
// (unless -exit-now).
//
// With -exec-after it plays the runtime's init instead, unchrooted: it waits that long, then
// execs its arguments with the environment given by -env, in place, as runc init execs main.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	var writes, links, dirs, bigs, env multiFlag
	newroot := flag.Bool("newroot", false, "chroot into a tmpfs private to this mount namespace")
	proc := flag.Bool("proc", false, "with -newroot: mount procfs at /proc")
	outputs := flag.Bool("outputs", false, "with -newroot: bind /outputs at /pnsflow/outputs")
	spawn := flag.Bool("spawn", false, "start a child that inherits the environment")
	child := flag.Bool("child", false, "be the spawned child: wait for stdin to close")
	exitNow := flag.Bool("exit-now", false, "exit right after setting up")
	code := flag.Int("exit", 0, "exit code")
	flag.Var(&writes, "write", "path=content: write a file")
	flag.Var(&links, "symlink", "path=target: make a symlink")
	flag.Var(&dirs, "mkdir", "path: make a directory")
	flag.Var(&bigs, "big", "path=size: write a file of size bytes")
	flag.Var(&env, "env", "NAME=value: the environment after the exec")
	phase2 := flag.Bool("phase2", false, "run after the exec")
	execAfter := flag.Duration("exec-after", 0, "wait this long, then exec the arguments with -env")
	uid := flag.Int("uid", -1, "run as this UID (and -gid) after setting up, as runc does before it execs main")
	gid := flag.Int("gid", -1, "with -uid: the GID")
	tryRead := flag.String("try-read", "", "unchrooted: read this file, print \"ok\" or the error, and exit")
	tryPtrace := flag.Int("try-ptrace", 0, "unchrooted: PTRACE_ATTACH to this pid, print \"ok\" or the error, and exit")
	defaultCaps := flag.Bool("default-caps", false, "keep only the container runtime's default capabilities across the final exec, as runc does")
	execArgs := flag.Bool("exec", false, "unchrooted: exec the arguments with the inherited environment (with -default-caps: as a root container process)")
	flag.Parse()

	if *execArgs {
		args := flag.Args()
		if len(args) == 0 {
			must(fmt.Errorf("-exec: nothing to exec"))
		}
		if *defaultCaps {
			dropToDefaultCaps()
		}
		must(syscall.Exec(args[0], args, os.Environ()))
	}
	if *tryRead != "" {
		if _, err := os.ReadFile(*tryRead); err != nil {
			fmt.Println(err)
		} else {
			fmt.Println("ok")
		}
		return
	}
	if *tryPtrace != 0 {
		if err := syscall.PtraceAttach(*tryPtrace); err != nil {
			fmt.Println(err)
		} else {
			_ = syscall.PtraceDetach(*tryPtrace)
			fmt.Println("ok")
		}
		return
	}

	if *execAfter > 0 {
		time.Sleep(*execAfter)
		args := flag.Args()
		if len(args) == 0 {
			must(fmt.Errorf("-exec-after: nothing to exec"))
		}
		must(syscall.Exec(args[0], args, env))
	}

	if *child {
		_, _ = io.Copy(io.Discard, os.Stdin)
		return
	}
	if *phase2 {
		run(*spawn, *exitNow, *code)
		return
	}
	self, err := os.ReadFile("/helper")
	must(err)
	if *newroot {
		must(syscall.Mount("tmpfs", "/newroot", "tmpfs", 0, "size=64m"))
		must(os.WriteFile("/newroot/helper", self, 0o755))
		if *outputs {
			must(os.MkdirAll("/newroot/pnsflow/outputs", 0o755))
			must(syscall.Mount("/outputs", "/newroot/pnsflow/outputs", "", syscall.MS_BIND, ""))
		}
		if *proc {
			must(os.MkdirAll("/newroot/proc", 0o755))
			must(syscall.Mount("proc", "/newroot/proc", "proc", 0, ""))
		}
		must(syscall.Chroot("/newroot"))
		must(os.Chdir("/"))
	}
	for _, d := range dirs {
		must(os.MkdirAll(d, 0o755))
	}
	for _, w := range writes {
		p, content, _ := strings.Cut(w, "=")
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.WriteFile(p, []byte(content), 0o644))
	}
	for _, b := range bigs {
		p, size, _ := strings.Cut(b, "=")
		n, err := strconv.Atoi(size)
		must(err)
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.WriteFile(p, []byte(strings.Repeat("x", n)), 0o644))
	}
	for _, l := range links {
		p, target, _ := strings.Cut(l, "=")
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.Symlink(target, p))
	}
	args := []string{"/helper", "-phase2", "-exit=" + strconv.Itoa(*code)}
	if *spawn {
		args = append(args, "-spawn")
	}
	if *exitNow {
		args = append(args, "-exit-now")
	}
	if *defaultCaps {
		dropToDefaultCaps()
	}
	if *uid >= 0 {
		// Files written above belong to root; main may read them like any image file.
		must(syscall.Setgroups(nil))
		must(syscall.Setresgid(*gid, *gid, *gid))
		must(syscall.Setresuid(*uid, *uid, *uid))
	}
	must(syscall.Exec("/helper", args, env))
}

// run is the helper after its exec: main, marked.
func run(spawn, exitNow bool, code int) {
	childPID := 0
	if spawn {
		c := exec.Command("/helper", "-child")
		c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stderr, os.Stderr // no /dev/null in the chroot
		must(c.Start())
		childPID = c.Process.Pid
	}
	fmt.Printf("ready %d\n", childPID)
	if !exitNow {
		_, _ = io.Copy(io.Discard, os.Stdin)
	}
	os.Exit(code)
}

// runtimeDefaultCaps are containerd's (and Docker's) default capabilities of a container.
var runtimeDefaultCaps = map[int]bool{
	0: true, 1: true, 3: true, 4: true, 5: true, 6: true, 7: true, 8: true, // CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
	10: true, 13: true, 18: true, 27: true, 29: true, 31: true, // NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP
}

// dropToDefaultCaps removes every other capability from this thread's bounding set; the exec that
// follows, from this thread, gives a root program exactly the defaults, and a non-root one none.
func dropToDefaultCaps() {
	runtime.LockOSThread() // never unlocked: the exec replaces the process
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		b = []byte("40") // no /proc in a chroot: every capability Linux has had so far
	}
	last, err := strconv.Atoi(strings.TrimSpace(string(b)))
	must(err)
	for c := 0; c <= last; c++ {
		if !runtimeDefaultCaps[c] {
			if _, _, errno := syscall.RawSyscall6(syscall.SYS_PRCTL, syscall.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0, 0); errno != 0 && errno != syscall.EINVAL {
				must(fmt.Errorf("dropping capability %d: %w", c, errno))
			}
		}
	}
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(100)
	}
}
