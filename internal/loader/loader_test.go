package loader

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/artifact"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
	"github.com/pnsflow/pnsflow/internal/testutil/seaweedfs"
)

// The loader is tested against a real SeaweedFS, filled through the same client the executor
// stores artifacts with.

func TestMain(m *testing.M) {
	code := m.Run()
	seaweedfs.StopShared()
	os.Exit(code)
}

func client(t *testing.T, secret string) *artifact.Client {
	t.Helper()
	c, err := artifact.NewClient(t.Context(), artifact.Repository{
		Endpoint: seaweedfs.Shared(t).Endpoint, Bucket: seaweedfs.Bucket, Insecure: true, PathStyle: true,
		Credentials: artifact.Credentials{AccessKeyID: seaweedfs.AccessKey, SecretAccessKey: secret},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// key is unique per test, so tests sharing the server never see each other's objects.
func key(t *testing.T, name string) string {
	return "ns/" + strings.ReplaceAll(t.Name(), "/", "-") + "/" + name
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func tgz(t *testing.T, entries ...tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, h := range entries {
		body := []byte("x")
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(body)
		}
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func TestLoadsAFileAndATreeWhereMainWillSeeThem(t *testing.T) {
	c := client(t, seaweedfs.SecretKey)
	file := []byte("hello input\n")
	if _, _, err := c.UploadFile(t.Context(), key(t, "file"), bytes.NewReader(file)); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "sub", "b é.txt"), []byte("b b"), 0o644)
	os.Symlink("sub/b é.txt", filepath.Join(src, "link"))
	_, treeSum, err := c.UploadDir(t.Context(), key(t, "tree"), src)
	if err != nil {
		t.Fatal(err)
	}

	dest := t.TempDir()
	loaded, f := Load(t.Context(), c, []executorconfig.Input{
		{Name: "file", Key: key(t, "file"), Dest: filepath.Join(dest, "file")},
		// No archive given: the object says it is tgz.
		{Name: "tree", Key: key(t, "tree"), Dest: filepath.Join(dest, "tree")},
	})
	if f != nil {
		t.Fatalf("Load: %v", f)
	}
	if got, _ := os.ReadFile(filepath.Join(dest, "file")); !bytes.Equal(got, file) {
		t.Errorf("file = %q, want %q", got, file)
	}
	if got, _ := os.ReadFile(filepath.Join(dest, "tree", "sub", "b é.txt")); string(got) != "b b" {
		t.Errorf("tree/sub/b é.txt = %q", got)
	}
	if got, _ := os.Readlink(filepath.Join(dest, "tree", "link")); got != "sub/b é.txt" {
		t.Errorf("tree/link -> %q", got)
	}
	if len(loaded) != 2 || loaded[0].SHA256 != sum(file) || loaded[0].Archive != "none" ||
		loaded[1].SHA256 != treeSum || loaded[1].Archive != "tgz" {
		t.Errorf("loaded = %+v; want the file's sha256 %s as none and the tree's %s as tgz", loaded, sum(file), treeSum)
	}
}

func TestAnInputSaysHowToPlaceAnObjectTheExecutorDidNotStore(t *testing.T) {
	c := client(t, seaweedfs.SecretKey)
	archive := tgz(t, tar.Header{Name: "a.txt", Typeflag: tar.TypeReg, Mode: 0o644})
	// Stored by something else: no archive recorded with it.
	if _, _, err := c.UploadFile(t.Context(), key(t, "plain"), bytes.NewReader(archive)); err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	_, f := Load(t.Context(), c, []executorconfig.Input{
		{Name: "as-file", Key: key(t, "plain"), Dest: filepath.Join(dest, "as-file")},
		{Name: "as-tgz", Key: key(t, "plain"), Dest: filepath.Join(dest, "as-tgz"), Archive: "tgz"},
	})
	if f != nil {
		t.Fatalf("Load: %v", f)
	}
	if got, _ := os.ReadFile(filepath.Join(dest, "as-file")); !bytes.Equal(got, archive) {
		t.Errorf("without archive the object is placed as is; got %d bytes, want %d", len(got), len(archive))
	}
	if got, _ := os.ReadFile(filepath.Join(dest, "as-tgz", "a.txt")); string(got) != "x" {
		t.Errorf("archive tgz extracts: as-tgz/a.txt = %q", got)
	}
}

func TestMissingInputs(t *testing.T) {
	c := client(t, seaweedfs.SecretKey)
	if _, _, err := c.UploadFile(t.Context(), key(t, "there"), strings.NewReader("here")); err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	loaded, f := Load(t.Context(), c, []executorconfig.Input{
		{Name: "maybe", Key: key(t, "nothing"), Dest: filepath.Join(dest, "maybe"), Optional: true},
		{Name: "there", Key: key(t, "there"), Dest: filepath.Join(dest, "there")},
	})
	if f != nil {
		t.Fatalf("an optional missing input must be skipped: %v", f)
	}
	if _, err := os.Lstat(filepath.Join(dest, "maybe")); !os.IsNotExist(err) {
		t.Errorf("a skipped input left something at its dest: %v", err)
	}
	if len(loaded) != 1 || loaded[0].Name != "there" {
		t.Errorf("loaded = %+v, want only \"there\"", loaded)
	}

	_, f = Load(t.Context(), c, []executorconfig.Input{{Name: "needed", Key: key(t, "nothing"), Dest: filepath.Join(dest, "needed")}})
	if f == nil || f.Reason != v1alpha1.ReasonArtifactNotFound || !strings.Contains(f.Message, key(t, "nothing")) {
		t.Errorf("a missing input: failure = %v, want ArtifactNotFound naming the key", f)
	}
}

func TestArchivesThatReachOutsideTheirDirectoryAreRefused(t *testing.T) {
	c := client(t, seaweedfs.SecretKey)
	tests := map[string][]tar.Header{
		"dot-dot":         {{Name: "../x", Typeflag: tar.TypeReg, Mode: 0o644}},
		"absolute":        {{Name: "/etc/x", Typeflag: tar.TypeReg, Mode: 0o644}},
		"through a link":  {{Name: "root", Typeflag: tar.TypeSymlink, Linkname: "/"}, {Name: "root/etc/x", Typeflag: tar.TypeReg, Mode: 0o644}},
		"link up and out": {{Name: "up", Typeflag: tar.TypeSymlink, Linkname: "../../.."}, {Name: "up/x", Typeflag: tar.TypeReg, Mode: 0o644}},
	}
	for name, entries := range tests {
		t.Run(name, func(t *testing.T) {
			k := key(t, "evil")
			if _, _, err := c.Upload(t.Context(), k, artifact.ArchiveTgz, bytes.NewReader(tgz(t, entries...))); err != nil {
				t.Fatal(err)
			}
			outer := t.TempDir()
			_, f := Load(t.Context(), c, []executorconfig.Input{{Name: "evil", Key: k, Dest: filepath.Join(outer, "in")}})
			if f == nil || f.Reason != v1alpha1.ReasonArtifactLoadFailed {
				t.Fatalf("failure = %v, want ArtifactLoadFailed", f)
			}
			// Nothing may land beside the destination (in outer) or above it.
			found, _ := filepath.Glob(filepath.Join(outer, "*"))
			if len(found) != 1 {
				t.Errorf("the archive wrote outside its directory: %v", found)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(outer), "x")); err == nil {
				t.Errorf("the archive wrote %s", filepath.Join(filepath.Dir(outer), "x"))
			}
		})
	}
}

func TestWrongCredentialsFailWithTheRepositorysWord(t *testing.T) {
	c := client(t, "not-the-secret")
	_, f := Load(t.Context(), c, []executorconfig.Input{{Name: "x", Key: "ns/any/x", Dest: filepath.Join(t.TempDir(), "x")}})
	if f == nil || f.Reason != v1alpha1.ReasonArtifactLoadFailed || !strings.Contains(f.Message, "denied") {
		t.Errorf("failure = %v, want ArtifactLoadFailed saying access was denied", f)
	}
}

func TestArchiveDecision(t *testing.T) {
	tests := []struct{ declared, stored, want string }{
		{"", "", "none"},
		{"", "tgz", "tgz"},
		{"", "none", "none"},
		{"none", "tgz", "none"},
		{"tgz", "", "tgz"},
	}
	for _, tt := range tests {
		if got := Archive(tt.declared, tt.stored); got != tt.want {
			t.Errorf("Archive(%q, %q) = %q, want %q", tt.declared, tt.stored, got, tt.want)
		}
	}
}
