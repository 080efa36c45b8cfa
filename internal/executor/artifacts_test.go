package executor

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

// recordingUploader keeps what the collector streams, as a repository would store it.
type recordingUploader struct {
	objects  map[string][]byte
	archives map[string]string
	err      error
}

func (u *recordingUploader) Upload(_ context.Context, key, archive string, r io.Reader) (int64, string, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return 0, "", err
	}
	if u.err != nil {
		return 0, "", u.err
	}
	if u.objects == nil {
		u.objects, u.archives = map[string][]byte{}, map[string]string{}
	}
	u.objects[key], u.archives[key] = b, archive
	sum := sha256.Sum256(b)
	return int64(len(b)), hex.EncodeToString(sum[:]), nil
}

// tgzEntries lists an archive's entries as "name", "name/" or "name -> target", with content.
func tgzEntries(t *testing.T, b []byte) map[string]string {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	out := map[string]string{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			out[strings.TrimSuffix(hdr.Name, "/")+"/"] = ""
		case tar.TypeSymlink:
			out[hdr.Name+" -> "+hdr.Linkname] = ""
		default:
			body, _ := io.ReadAll(tr)
			out[hdr.Name] = string(body)
		}
	}
}

func TestArtifactsThroughMainsRootAndMounts(t *testing.T) {
	requireRoot(t)
	// A host file main's tree links to: archiving must store the link, never the host's content.
	decoy := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(decoy, []byte("host"), 0o600); err != nil {
		t.Fatal(err)
	}
	marker := newMarker()
	h := startHelper(t, []string{marker}, "-newroot",
		"-write", "/work/tree/a.txt=a",
		"-write", "/work/tree/sub/b é.txt=b b",
		"-symlink", "/work/tree/abs="+decoy,
		"-symlink", "/work/tree/up=../../../../../.."+decoy,
		"-write", "/work/file=one file",
	)
	p := secureHelper(t, marker, h)
	mount := t.TempDir()
	if err := os.WriteFile(filepath.Join(mount, "v.txt"), []byte("on a volume"), 0o644); err != nil {
		t.Fatal(err)
	}
	up := &recordingUploader{}
	c := ArtifactCollector{
		Artifacts: []executorconfig.Artifact{
			{Name: "tree", Path: "/work/tree", Key: "ns/run/tree"},
			{Name: "file", Path: "/work/file", Key: "ns/run/file"},
			{Name: "file-tgz", Path: "/work/file", Key: "ns/run/file-tgz", Archive: "tgz"},
			{Name: "vol", Path: "/data/v.txt", Key: "ns/run/vol"},
			{Name: "maybe", Path: "/work/nothing", Key: "ns/run/maybe", Optional: true},
		},
		Mounts:     []executorconfig.Mount{{MainPath: "/data", ExecutorPath: mount}},
		VolumesDir: filepath.Dir(mount),
		Uploader:   up,
	}
	stored, failure := c.Collect(context.Background(), p.Root)
	if failure != nil {
		t.Fatalf("Collect failed: %+v", failure)
	}
	var names []string
	archives := map[string]string{}
	for _, s := range stored {
		names = append(names, s.Name)
		archives[s.Name] = s.Archive
		if up.archives[s.Key] != s.Archive {
			t.Errorf("%s: stored as %q, status says %q", s.Name, up.archives[s.Key], s.Archive)
		}
		sum := sha256.Sum256(up.objects[s.Key])
		if s.Size != int64(len(up.objects[s.Key])) || s.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: status %+v does not describe the stored %d bytes", s.Name, s, len(up.objects[s.Key]))
		}
	}
	sort.Strings(names)
	if diff := cmp.Diff([]string{"file", "file-tgz", "tree", "vol"}, names); diff != "" {
		t.Errorf("stored artifacts (-want +got):\n%s", diff)
	}
	// A file is stored as is and a directory as tgz unless the artifact says otherwise.
	wantArchives := map[string]string{"file": "none", "file-tgz": "tgz", "tree": "tgz", "vol": "none"}
	if diff := cmp.Diff(wantArchives, archives); diff != "" {
		t.Errorf("archives (-want +got):\n%s", diff)
	}
	if got := string(up.objects["ns/run/file"]); got != "one file" {
		t.Errorf("file = %q", got)
	}
	if got := string(up.objects["ns/run/vol"]); got != "on a volume" {
		t.Errorf("file on a volume = %q", got)
	}
	if diff := cmp.Diff(map[string]string{"file": "one file"}, tgzEntries(t, up.objects["ns/run/file-tgz"])); diff != "" {
		t.Errorf("a file as tgz (-want +got):\n%s", diff)
	}
	want := map[string]string{
		"a.txt": "a", "sub/": "", "sub/b é.txt": "b b",
		"abs -> " + decoy: "", "up -> ../../../../../.." + decoy: "",
	}
	got := tgzEntries(t, up.objects["ns/run/tree"])
	delete(got, "./")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the tree's archive (-want +got):\n%s", diff)
	}
}

func TestArtifactFailures(t *testing.T) {
	mount := t.TempDir()
	if err := os.WriteFile(filepath.Join(mount, "v"), []byte("v"), 0o644); err != nil {
		t.Fatal(err)
	}
	mounts := []executorconfig.Mount{{MainPath: "/data", ExecutorPath: mount}}
	tests := []struct {
		name      string
		artifact  executorconfig.Artifact
		uploadErr error
		want      Failure
	}{
		{"missing", executorconfig.Artifact{Name: "a", Path: "/data/none", Key: "k"}, nil,
			Failure{v1alpha1.StepRunFailed, v1alpha1.ReasonArtifactNotFound, `artifact "a": /data/none does not exist`}},
		{"in the image filesystem of a main never held", executorconfig.Artifact{Name: "a", Path: "/work/x", Key: "k"}, nil,
			Failure{v1alpha1.StepRunError, v1alpha1.ReasonOutputsLost, `artifact "a": /work/x is in main's image filesystem`}},
		{"the repository refuses", executorconfig.Artifact{Name: "a", Path: "/data/v", Key: "k"}, errors.New("503 slow down"),
			Failure{v1alpha1.StepRunError, v1alpha1.ReasonArtifactUploadFailed, `artifact "a": storing /data/v as k: 503 slow down`}},
		{"a directory cannot be stored as is", executorconfig.Artifact{Name: "a", Path: "/data", Key: "k", Archive: "none"}, nil,
			Failure{v1alpha1.StepRunFailed, v1alpha1.ReasonOutputUnreadable, `artifact "a": /data is a directory`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ArtifactCollector{Artifacts: []executorconfig.Artifact{tt.artifact}, Mounts: mounts,
				VolumesDir: filepath.Dir(mount), Uploader: &recordingUploader{err: tt.uploadErr}}
			stored, f := c.Collect(context.Background(), nil)
			if len(stored) != 0 || f == nil {
				t.Fatalf("Collect = %+v, %+v; want a failure", stored, f)
			}
			if f.Phase != tt.want.Phase || f.Reason != tt.want.Reason || !strings.Contains(f.Message, tt.want.Message) {
				t.Errorf("failure = %+v, want %+v (message containing)", *f, tt.want)
			}
		})
	}
}
