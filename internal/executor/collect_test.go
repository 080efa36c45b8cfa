package executor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Outputs under a mount are read from the executor's own mount of it, confined to that mount.
func TestCollectFromMount(t *testing.T) {
	outputs := t.TempDir() // the executor's /pnsflow/outputs
	data := t.TempDir()    // the executor's /pnsflow/volumes/data
	nested := t.TempDir()  // a volume mounted inside another one
	writeFile(t, filepath.Join(outputs, "a"), "from outputs")
	writeFile(t, filepath.Join(data, "sub", "b"), "from data")
	writeFile(t, filepath.Join(nested, "c"), "from nested")
	writeFile(t, filepath.Join(data, "inner", "c"), "shadowed by the nested mount")
	writeFile(t, filepath.Join(outputs, "big"), strings.Repeat("y", v1alpha1.MaxParameterValueBytes+1))
	writeFile(t, filepath.Join(outputs, "binary"), "\xff\xfe")
	if err := os.Mkdir(filepath.Join(outputs, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(outputs, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	// An absolute symlink resolves inside the mount, not on the executor's filesystem.
	if err := os.Symlink("/etc/hostname", filepath.Join(outputs, "escape")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(outputs, "etc", "hostname"), "inside the mount")
	if err := os.Symlink("../../../../../../etc/hostname", filepath.Join(outputs, "up")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/proc/self/root/etc/hostname", filepath.Join(outputs, "proc-link")); err != nil {
		t.Fatal(err)
	}

	mounts := []executorconfig.Mount{
		{MainPath: executorconfig.OutputsDir, ExecutorPath: outputs},
		{MainPath: "/data/", ExecutorPath: data},
		{MainPath: "/data/inner", ExecutorPath: nested},
	}
	tests := []struct {
		name       string
		path       string
		def        *string
		want       string
		wantReason string
	}{
		{name: "outputs dir", path: "/pnsflow/outputs/a", want: "from outputs"},
		{name: "volume, unclean path", path: "/data//sub/./b", want: "from data"},
		{name: "longest mount wins", path: "/data/inner/c", want: "from nested"},
		{name: "absolute symlink stays in the mount", path: "/pnsflow/outputs/escape", want: "inside the mount"},
		{name: "dot-dot symlink stays in the mount", path: "/pnsflow/outputs/up", want: "inside the mount"},
		// Cleaned lexically, this path is /etc/hostname: main's image filesystem, not the mount.
		{name: "dot-dot path leaves the mount lexically", path: "/pnsflow/outputs/../../etc/hostname", wantReason: v1alpha1.ReasonOutputsLost},
		{name: "missing with default", path: "/pnsflow/outputs/none", def: ptr("d"), want: "d"},
		{name: "missing without default", path: "/pnsflow/outputs/none", wantReason: v1alpha1.ReasonOutputMissing},
		{name: "over the cap", path: "/pnsflow/outputs/big", wantReason: v1alpha1.ReasonOutputTooLarge},
		{name: "directory", path: "/pnsflow/outputs/dir", wantReason: v1alpha1.ReasonOutputUnreadable},
		{name: "the mount itself", path: "/pnsflow/outputs", wantReason: v1alpha1.ReasonOutputUnreadable},
		{name: "fifo does not block", path: "/pnsflow/outputs/fifo", wantReason: v1alpha1.ReasonOutputUnreadable},
		// Resolved inside the mount, /proc/self/root/... does not exist there.
		{name: "symlink into /proc stays in the mount", path: "/pnsflow/outputs/proc-link", wantReason: v1alpha1.ReasonOutputMissing},
		{name: "not UTF-8", path: "/pnsflow/outputs/binary", wantReason: v1alpha1.ReasonOutputUnreadable},
		{name: "relative path", path: "pnsflow/outputs/a", wantReason: v1alpha1.ReasonOutputUnreadable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Collector{Outputs: []executorconfig.Output{{Name: "p", Path: tt.path, Default: tt.def}}, Mounts: mounts}
			// root is nil: none of these needs main's root filesystem.
			got := c.Collect(nil)
			if tt.wantReason != "" {
				if got.Failure == nil || got.Failure.Reason != tt.wantReason {
					t.Fatalf("failure = %+v, want %s", got.Failure, tt.wantReason)
				}
				if len(got.Parameters) != 0 {
					t.Errorf("parameters = %v, want none", got.Parameters)
				}
				return
			}
			if got.Failure != nil {
				t.Fatalf("failure = %+v", got.Failure)
			}
			if diff := cmp.Diff([]v1alpha1.OutputParameterValue{{Name: "p", Value: tt.want}}, got.Parameters); diff != "" {
				t.Errorf("parameters (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCollectMissingExecutorMountIsNotAMissingOutput(t *testing.T) {
	c := Collector{
		Outputs: []executorconfig.Output{{Name: "p", Path: "/pnsflow/outputs/a", Default: ptr("d")}},
		Mounts:  []executorconfig.Mount{{MainPath: executorconfig.OutputsDir, ExecutorPath: filepath.Join(t.TempDir(), "absent")}},
	}
	got := c.Collect(nil)
	if got.Failure == nil || got.Failure.Reason != v1alpha1.ReasonOutputUnreadable {
		t.Errorf("failure = %+v, want OutputUnreadable (not the default)", got.Failure)
	}
}

func TestCollectSummarizesFailures(t *testing.T) {
	outputs := t.TempDir()
	writeFile(t, filepath.Join(outputs, "ok"), "v")
	c := Collector{
		Outputs: []executorconfig.Output{
			{Name: "missing", Path: "/pnsflow/outputs/missing"},
			{Name: "ok", Path: "/pnsflow/outputs/ok"},
			{Name: "lost", Path: "/image/lost"},
		},
		Mounts: []executorconfig.Mount{{MainPath: executorconfig.OutputsDir, ExecutorPath: outputs}},
	}
	got := c.Collect(nil)
	if diff := cmp.Diff([]v1alpha1.OutputParameterValue{{Name: "ok", Value: "v"}}, got.Parameters); diff != "" {
		t.Errorf("parameters (-want +got):\n%s", diff)
	}
	f := got.Failure
	if f == nil || f.Phase != v1alpha1.StepRunError || f.Reason != v1alpha1.ReasonOutputsLost {
		t.Fatalf("failure = %+v, want Error/OutputsLost over OutputMissing", f)
	}
	if !strings.Contains(f.Message, `"missing"`) || !strings.Contains(f.Message, `"lost"`) {
		t.Errorf("message %q should list both failures", f.Message)
	}
}

func TestMountFor(t *testing.T) {
	mounts := []executorconfig.Mount{
		{MainPath: "/data", ExecutorPath: "/x/data"},
		{MainPath: "/data/inner", ExecutorPath: "/x/inner"},
	}
	tests := []struct {
		path    string
		exec    string
		rel     string
		matches bool
	}{
		{"/data/f", "/x/data", "f", true},
		{"/data/inner/f", "/x/inner", "f", true},
		{"/data/innerf", "/x/data", "innerf", true},
		{"/database/f", "", "", false},
		{"/data", "/x/data", ".", true},
	}
	for _, tt := range tests {
		m, rel, ok := mountFor(mounts, tt.path)
		if ok != tt.matches || m.ExecutorPath != tt.exec || rel != tt.rel {
			t.Errorf("mountFor(%q) = %q, %q, %v; want %q, %q, %v", tt.path, m.ExecutorPath, rel, ok, tt.exec, tt.rel, tt.matches)
		}
	}
}

// fileValue is the rule for a file's content: one trailing "\n" goes, before the cap.
func TestFileValue(t *testing.T) {
	const max = 3
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr error
	}{
		{name: "one trailing newline is trimmed", in: "v\n", want: "v"},
		{name: "only one of two is trimmed", in: "v\n\n", want: "v\n"},
		{name: "no newline", in: "v", want: "v"},
		{name: "empty", in: "", want: ""},
		{name: "a lone newline", in: "\n", want: ""},
		{name: "CRLF keeps the CR", in: "v\r\n", want: "v\r"},
		{name: "a lone CR is kept", in: "v\r", want: "v\r"},
		{name: "trailing spaces are kept", in: "v \n", want: "v "},
		{name: "a newline inside is kept", in: "a\nb", want: "a\nb"},
		{name: "leading newline is kept", in: "\nv", want: "\nv"},
		{name: "at the cap", in: "abc", want: "abc"},
		{name: "at the cap plus its newline", in: "abc\n", want: "abc"},
		{name: "one over the cap", in: "abcd", wantErr: errTooLarge},
		{name: "one over the cap before the newline", in: "abcd\n", wantErr: errTooLarge},
		// The cap plus two newlines is cap+1 bytes once one is trimmed.
		{name: "at the cap plus two newlines", in: "abc\n\n", wantErr: errTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := fileValue([]byte(tt.in), max)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("fileValue(%q) = %q, %v; want error %v", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("fileValue(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
	if _, err := fileValue([]byte("\xff\n"), max); err == nil || errors.Is(err, errTooLarge) {
		t.Errorf("invalid UTF-8: error %v, want not valid UTF-8", err)
	}
}

// Real files, read both ways an output is read (from the executor's mount and through main's
// held root): one trailing newline is trimmed before the cap, defaults are used as written.
func TestCollectTrimsOneTrailingNewline(t *testing.T) {
	capped := strings.Repeat("y", v1alpha1.MaxParameterValueBytes)
	tests := []struct {
		name       string
		content    *string // nil: no file
		def        *string
		want       string
		wantReason string
	}{
		{name: "echo-written value", content: ptr("v\n"), want: "v"},
		{name: "two newlines keep one", content: ptr("v\n\n"), want: "v\n"},
		{name: "printf-written value", content: ptr("v"), want: "v"},
		{name: "empty file", content: ptr(""), want: ""},
		{name: "CRLF keeps the CR", content: ptr("v\r\n"), want: "v\r"},
		{name: "trailing space is kept", content: ptr("v \n"), want: "v "},
		{name: "the cap plus one newline is accepted", content: ptr(capped + "\n"), want: capped},
		{name: "the cap plus one byte is too large", content: ptr(capped + "y"), wantReason: v1alpha1.ReasonOutputTooLarge},
		{name: "the cap plus two newlines is too large", content: ptr(capped + "\n\n"), wantReason: v1alpha1.ReasonOutputTooLarge},
		{name: "the cap plus a newline and more is too large", content: ptr(capped + "\nz"), wantReason: v1alpha1.ReasonOutputTooLarge},
		{name: "a default keeps its newline", def: ptr("d\n"), want: "d\n"},
	}
	for _, tt := range tests {
		for _, via := range []string{"mount", "root"} {
			t.Run(tt.name+"/"+via, func(t *testing.T) {
				dir := t.TempDir()
				var (
					c    = Collector{}
					root *os.File
					file string
				)
				switch via {
				case "mount":
					c.Mounts = []executorconfig.Mount{{MainPath: executorconfig.OutputsDir, ExecutorPath: dir}}
					c.Outputs = []executorconfig.Output{{Name: "p", Path: "/pnsflow/outputs/v", Default: tt.def}}
					file = filepath.Join(dir, "v")
				case "root":
					// dir plays main's held root filesystem.
					r, err := os.Open(dir)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { r.Close() })
					root = r
					c.Outputs = []executorconfig.Output{{Name: "p", Path: "/tmp/v", Default: tt.def}}
					file = filepath.Join(dir, "tmp", "v")
				}
				if tt.content != nil {
					writeFile(t, file, *tt.content)
				}
				got := c.Collect(root)
				if tt.wantReason != "" {
					if got.Failure == nil || got.Failure.Reason != tt.wantReason {
						t.Fatalf("failure = %+v, want %s", got.Failure, tt.wantReason)
					}
					return
				}
				if got.Failure != nil {
					t.Fatalf("failure = %+v", got.Failure)
				}
				if diff := cmp.Diff([]v1alpha1.OutputParameterValue{{Name: "p", Value: tt.want}}, got.Parameters); diff != "" {
					t.Errorf("parameters (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// The whole path on a real process: main writes "4\n" as `expr 3 + 1 > /tmp/v` would, into a
// root filesystem only its mount namespace has, and exits; the executor reads "4".
func TestCollectTrimsANewlineMainWrote(t *testing.T) {
	requireRoot(t)
	marker := newMarker()
	h := startHelper(t, []string{marker}, "-newroot", "-write", "/tmp/v=4\n")
	p := secureHelper(t, marker, h)
	h.exit(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := (PidfdWaiter{}).Wait(ctx, p); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	h.reap(t)

	got := Collector{Outputs: []executorconfig.Output{{Name: "v", Path: "/tmp/v"}}}.Collect(p.Root)
	want := Collected{Parameters: []v1alpha1.OutputParameterValue{{Name: "v", Value: "4"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Collect (-want +got):\n%s", diff)
	}
}
