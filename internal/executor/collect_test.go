package executor

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

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
