package executor

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

func TestParseIDs(t *testing.T) {
	status := func(uid, gid, groups string) []byte {
		return []byte("Name:\tsh\nUmask:\t0022\nUid:\t" + uid + "\nGid:\t" + gid + "\nFDSize:\t64\nGroups:\t" + groups + "\nNStgid:\t7\n")
	}
	tests := []struct {
		name    string
		in      []byte
		want    IDs
		wantErr string
	}{
		{"root", status("0\t0\t0\t0", "0\t0\t0\t0", ""), IDs{UID: 0, GID: 0}, ""},
		{"non-root with groups", status("1000\t1000\t1000\t1000", "2000\t2000\t2000\t2000", "2000 3000 "), IDs{UID: 1000, GID: 2000, Groups: []int{2000, 3000}}, ""},
		{"filesystem ID differs: not compared", status("5\t5\t5\t0", "6\t6\t6\t6", ""), IDs{UID: 5, GID: 6}, ""},
		{"setuid program", status("1000\t0\t0\t0", "0\t0\t0\t0", ""), IDs{}, "real, effective and saved IDs differ"},
		{"saved GID differs", status("1\t1\t1\t1", "1\t1\t2\t1", ""), IDs{}, "Gid: real, effective and saved IDs differ"},
		{"no Gid", []byte("Uid:\t1\t1\t1\t1\n"), IDs{}, "no Uid or Gid line"},
		{"garbage", status("x\t1\t1\t1", "1\t1\t1\t1", ""), IDs{}, "Uid"},
		{"short line", status("1\t1", "1\t1\t1\t1", ""), IDs{}, "at least 3 fields"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseIDs(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseIDs error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseIDs (-want +got):\n%s", diff)
			}
		})
	}
}

const (
	containerRootEnv = "PNSFLOW_TEST_AS_CONTAINER_ROOT"
	mainPIDEnv       = "PNSFLOW_TEST_MAIN_PID"
	mainMarkerEnv    = "PNSFLOW_TEST_MAIN_MARKER"
)

// asContainerRoot runs the calling test again as root with only the container runtime's default
// capabilities, as a root executor runs in a Pod: no CAP_SYS_PTRACE, no CAP_DAC_READ_SEARCH. It
// returns true in that run, which does the work, and false in the outer run, which checks that
// the inner run passed. main (the helper started with -default-caps) is the outer run's child.
func asContainerRoot(t *testing.T, h *helperProc, marker string) bool {
	t.Helper()
	if os.Getenv(containerRootEnv) == t.Name() {
		status, err := os.ReadFile("/proc/self/status")
		if err != nil {
			t.Fatal(err)
		}
		// Bit 19 is CAP_SYS_PTRACE.
		if eff := capLine(t, status, "CapEff"); eff&(1<<19) != 0 || eff == 0 {
			t.Fatalf("expected the runtime's default capabilities, have CapEff %x", eff)
		}
		return true
	}
	cmd := exec.Command(helperBin, "-exec", "-default-caps", "--", os.Args[0],
		"-test.run="+exactRun(t.Name()), "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), containerRootEnv+"="+t.Name(), helperBinEnv+"="+helperBin,
		mainPIDEnv+"="+strconv.Itoa(h.pid), mainMarkerEnv+"="+marker)
	out, err := cmd.CombinedOutput()
	t.Logf("as a container's root:\n%s", out)
	if err != nil || !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatalf("the run as a container's root did not pass: %v", err)
	}
	return false
}

// exactRun is a -test.run pattern for exactly this test or subtest.
func exactRun(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

func capLine(t *testing.T, status []byte, key string) uint64 {
	t.Helper()
	for line := range bytes.Lines(status) {
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && string(k) == key {
			n, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in status", key)
	return 0
}

// tryAsSelf runs the helper's -try-read or -try-ptrace as this process's current user and
// returns what it printed: "ok" or the error.
func tryAsSelf(t *testing.T, flag, arg string) string {
	t.Helper()
	out, err := exec.Command(helperBin, flag, arg).CombinedOutput()
	if err != nil {
		t.Fatalf("helper %s %s: %v: %s", flag, arg, err, out)
	}
	return strings.TrimSpace(string(out))
}

// An executor started as root with the runtime's default capabilities, and no SYS_PTRACE, finds
// main whatever its IDs, takes them, holds main's root and reads an output from it; afterwards
// main cannot read the executor's environment or ptrace it, though it can read its own.
func TestExecutorWithoutPtraceTakesMainIDs(t *testing.T) {
	tests := []struct {
		name     string
		uid, gid int
		// direct: the executor's own IDs may read main's environ (same IDs, capabilities a subset).
		direct bool
	}{
		{"root main", 0, 0, true},
		{"non-root main", 1000, 1000, false},
		{"root main in another group", 0, 1000, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if os.Getenv(containerRootEnv) == t.Name() {
				executorSide(t, IDs{UID: tt.uid, GID: tt.gid}, tt.direct)
				return
			}
			requireRoot(t)
			marker := newMarker()
			h := startHelper(t, []string{marker}, "-newroot", "-default-caps",
				"-uid="+strconv.Itoa(tt.uid), "-gid="+strconv.Itoa(tt.gid), "-write", "/tmp/out=from main")
			if !asContainerRoot(t, h, marker) {
				return
			}
		})
	}
}

// executorSide is TestExecutorWithoutPtraceTakesMainIDs's run as a container's root.
func executorSide(t *testing.T, want IDs, direct bool) {
	asContainerRoot(t, nil, "")
	mainPID, err := strconv.Atoi(os.Getenv(mainPIDEnv))
	if err != nil {
		t.Fatal(err)
	}
	marker := os.Getenv(mainMarkerEnv)
	environ := filepath.Join("/proc", strconv.Itoa(mainPID), "environ")
	_, err = os.ReadFile(environ)
	if direct != (err == nil) {
		t.Fatalf("reading main's environ with the executor's own IDs: %v; want success %v", err, direct)
	}
	if !direct && !errors.Is(err, os.ErrPermission) {
		t.Fatalf("reading main's environ: %v, want a permission error", err)
	}
	if err := HideFromMain(); err != nil {
		t.Fatal(err)
	}

	finder := &ProcFinder{ProcRoot: "/proc", Marker: marker, Self: os.Getpid(), Parent: os.Getppid()}
	if _, found, err := finder.Scan(); err != nil || found != direct {
		t.Fatalf("Scan without AsOwner = found %v, %v; want found %v", found, err, direct)
	}
	finder.AsOwner = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pid, err := finder.Find(ctx, nil)
	if err != nil || pid != mainPID {
		t.Fatalf("Find with AsOwner = %d, %v; want %d", pid, err, mainPID)
	}
	// The executor is still root: looking as main's owner was undone.
	if os.Geteuid() != 0 || os.Getegid() != 0 {
		t.Fatalf("after Find the executor runs as %d:%d, want 0:0", os.Geteuid(), os.Getegid())
	}

	ids, err := ReadIDs("/proc", pid)
	if err != nil {
		t.Fatal(err)
	}
	if ids.UID != want.UID || ids.GID != want.GID {
		t.Fatalf("ReadIDs = %+v, want %d:%d", ids, want.UID, want.GID)
	}
	if err := AdoptIDs(ids); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() != want.UID || os.Geteuid() != want.UID || os.Getgid() != want.GID || os.Getegid() != want.GID {
		t.Fatalf("after AdoptIDs the executor runs as %d/%d:%d/%d, want %d:%d", os.Getuid(), os.Geteuid(), os.Getgid(), os.Getegid(), want.UID, want.GID)
	}
	if groups, _ := os.Getgroups(); !slices.Equal(groups, ids.Groups) && !(len(groups) == 0 && len(ids.Groups) == 0) {
		t.Errorf("after AdoptIDs the groups are %v, want %v", groups, ids.Groups)
	}

	p, err := ProcSecurer{ProcRoot: "/proc", Marker: marker}.Secure(pid)
	if err != nil {
		t.Fatalf("Secure after taking main's IDs: %v", err)
	}
	defer p.Close()
	got := Collector{Outputs: []executorconfig.Output{{Name: "out", Path: "/tmp/out"}}}.Collect(p.Root)
	if diff := cmp.Diff(Collected{Parameters: []v1alpha1.OutputParameterValue{{Name: "out", Value: "from main"}}}, got); diff != "" {
		t.Errorf("Collect through main's root (-want +got):\n%s", diff)
	}

	// From here on, processes this one starts run as main's IDs with main's capabilities: main.
	self := strconv.Itoa(os.Getpid())
	if got := tryAsSelf(t, "-try-read", environ); got != "ok" {
		t.Fatalf("main cannot read its own environ (%s): the checks below would prove nothing", got)
	}
	if got := tryAsSelf(t, "-try-read", "/proc/"+self+"/environ"); got == "ok" {
		t.Error("main read the executor's environ")
	}
	if got := tryAsSelf(t, "-try-read", "/proc/"+self+"/root/proc/self/status"); got == "ok" {
		t.Error("main read a file through the executor's root")
	}
	if got := tryAsSelf(t, "-try-ptrace", self); got == "ok" {
		t.Error("main ptrace-attached to the executor")
	}
}
