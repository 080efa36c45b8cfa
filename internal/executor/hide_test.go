package executor

import (
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestHideFromMain re-runs this test binary as a child that hides itself, then checks as an
// unprivileged process with the child's own UID that its root is out of reach.
func TestHideFromMain(t *testing.T) {
	if os.Getenv("PNSFLOW_HIDE_CHILD") == "1" {
		if err := HideFromMain(); err != nil {
			os.Exit(2)
		}
		if d, _ := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0); d != 0 {
			os.Exit(3)
		}
		os.Stdout.WriteString("hidden\n")
		_, _ = os.Stdin.Read(make([]byte, 1)) // stay alive until the parent has looked
		os.Exit(0)
	}
	if os.Geteuid() != 0 {
		t.Skip("LOUD SKIP: TestHideFromMain needs root to run both processes as one unprivileged UID")
	}
	const uid = 65534
	cred := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}

	// The test binary sits in a root-only build directory: give the child a copy it may run.
	dir, err := os.MkdirTemp("", "hide-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	exe := dir + "/executor.test"
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	child := exec.Command(exe, "-test.run=^TestHideFromMain$")
	child.Env = append(os.Environ(), "PNSFLOW_HIDE_CHILD=1")
	child.SysProcAttr = cred
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stdin.Close(); _ = child.Wait() }()
	line := make([]byte, len("hidden\n"))
	if _, err := out.Read(line); err != nil || string(line) != "hidden\n" {
		t.Fatalf("child did not hide itself: %q, %v", line, err)
	}

	// A peer with the same UID and GID (main, in a Pod) tries to list the child's root.
	peer := exec.Command("/bin/ls", "/proc/"+strconv.Itoa(child.Process.Pid)+"/root/")
	peer.SysProcAttr = cred
	if b, err := peer.CombinedOutput(); err == nil {
		t.Fatalf("a same-UID peer read the hidden process's root:\n%s", b)
	}
	// Control: the same peer can read a dumpable process of its UID (itself).
	self := exec.Command("/bin/ls", "/proc/self/root/")
	self.SysProcAttr = cred
	if b, err := self.CombinedOutput(); err != nil {
		t.Fatalf("control read failed, the test proves nothing: %v\n%s", err, b)
	}
}
