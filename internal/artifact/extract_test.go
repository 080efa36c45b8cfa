package artifact

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// entry is one tar entry of a hand-made (possibly hostile) archive.
type entry struct {
	name, link, body string
	typ              byte
}

func file(name, body string) entry    { return entry{name: name, body: body, typ: tar.TypeReg} }
func dir(name string) entry           { return entry{name: name, typ: tar.TypeDir} }
func symlinkTo(name, to string) entry { return entry{name: name, link: to, typ: tar.TypeSymlink} }
func hardlinkTo(name, to string) entry {
	return entry{name: name, link: to, typ: tar.TypeLink}
}

func tgz(t *testing.T, entries ...entry) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body))}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		must(t, tw.WriteHeader(h))
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	must(t, tw.Close())
	must(t, gz.Close())
	return buf.Bytes()
}

// TestDownloadAndExtractRefusesTarSlip stores hostile archives in the real repository and checks
// that extraction fails naming the entry, and that nothing appears outside the destination. The
// destination sits in a sandbox whose other directory, "outside", must stay empty.
func TestDownloadAndExtractRefusesTarSlip(t *testing.T) {
	c := testClient(t)
	tests := []struct {
		name    string
		entries []entry
		// pre prepares the destination before extraction (what a reused directory may hold).
		pre     func(t *testing.T, dest, outside string)
		wantErr []string
	}{
		{name: "a name climbing out with ..", entries: []entry{file("ok", "x"), file("../outside/x", "pwned")},
			wantErr: []string{`"../outside/x"`, `".." in path refused`}},
		{name: "dot-dot hidden in the middle", entries: []entry{file("a/../../outside/x", "pwned")},
			wantErr: []string{`"a/../../outside/x"`, `".." in path refused`}},
		{name: "an absolute name", entries: []entry{file("/etc/x", "pwned")},
			wantErr: []string{`"/etc/x"`, "absolute path refused"}},
		{name: "a symlink to / then a file under it", entries: []entry{symlinkTo("root", "/"), file("root/etc/x", "pwned")},
			wantErr: []string{`"root"`, `symlink to absolute path "/" refused`}},
		{name: "a symlink climbing out then a file under it", entries: []entry{symlinkTo("up", "../outside"), file("up/x", "pwned")},
			wantErr: []string{`"up"`, `symlink to "../outside" refused`}},
		{name: "a file under a symlinked directory (even one pointing inside)", entries: []entry{dir("d/"), symlinkTo("l", "d"), file("l/x", "pwned")},
			wantErr: []string{`"l/x"`, `path component "l": is a symlink, refused`}},
		{name: "a file under a symlink the destination already had",
			pre: func(t *testing.T, dest, outside string) {
				must(t, os.MkdirAll(dest, 0o755))
				must(t, os.Symlink(outside, filepath.Join(dest, "pre")))
			},
			entries: []entry{file("pre/x", "pwned")},
			wantErr: []string{`"pre/x"`, `path component "pre": is a symlink, refused`}},
		{name: "a file over a symlink the destination already had (the link is replaced, not followed)",
			pre: func(t *testing.T, dest, outside string) {
				must(t, os.MkdirAll(dest, 0o755))
				must(t, os.WriteFile(filepath.Join(outside, "victim"), nil, 0o644))
				must(t, os.Symlink(filepath.Join(outside, "victim"), filepath.Join(dest, "f")))
			},
			entries: []entry{file("f", "pwned")}},
		{name: "a chain of symlinks that only escapes when resolved", entries: []entry{symlinkTo("s", "."), symlinkTo("l", "s/../outside")},
			wantErr: []string{`"l"`, "resolves outside the destination, refused and removed"}},
		{name: "a hard link to a file outside by ..", entries: []entry{hardlinkTo("h", "../outside/victim")},
			wantErr: []string{`"h"`, `hard link to "../outside/victim" refused`}},
		{name: "a hard link to an absolute path", entries: []entry{hardlinkTo("h", "/etc/passwd")},
			wantErr: []string{`"h"`, `hard link to "/etc/passwd" refused`}},
		{name: "a hard link through a symlink", entries: []entry{symlinkTo("s", "."), file("real", "x"), hardlinkTo("h", "s/real")},
			wantErr: []string{`"h"`, `hard link target "s/real": path component "s": is a symlink`}},
		{name: "a device node", entries: []entry{{name: "dev", typ: tar.TypeChar}},
			wantErr: []string{`"dev"`, "unsupported entry type"}},
		{name: "harmless links inside are kept", entries: []entry{dir("d/"), file("d/f", "x"), symlinkTo("l", "d/f"), symlinkTo("d/up", "../d"), hardlinkTo("h", "d/f")}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sandbox := t.TempDir()
			dest, outside := filepath.Join(sandbox, "dest"), filepath.Join(sandbox, "outside")
			must(t, os.Mkdir(outside, 0o755))
			if tt.pre != nil {
				tt.pre(t, dest, outside)
			}
			key := testKey("", "ns", "slip", string(rune('a'+i))+".tgz")
			if _, _, err := c.UploadFile(t.Context(), key, bytes.NewReader(tgz(t, tt.entries...))); err != nil {
				t.Fatal(err)
			}
			_, _, err := c.DownloadAndExtract(t.Context(), key, dest)
			if len(tt.wantErr) == 0 && err != nil {
				t.Fatalf("refused a harmless archive: %v", err)
			}
			for _, w := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v does not say %s", err, w)
				}
			}
			t.Logf("error: %v", err)
			assertUntouched(t, outside)
			if _, err := os.Lstat("/etc/x"); err == nil {
				t.Errorf("/etc/x exists")
			}
		})
	}
}

// assertUntouched checks that outside holds at most the empty victim file the test put there.
func assertUntouched(t *testing.T, outside string) {
	t.Helper()
	ents, err := os.ReadDir(outside)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(outside, e.Name()))
		if e.Name() != "victim" || len(b) != 0 {
			t.Errorf("extraction wrote outside the destination: %s (%q)", e.Name(), b)
		}
	}
}

func TestExtractionRefusesACorruptArchive(t *testing.T) {
	c := testClient(t)
	good := tgz(t, file("a", strings.Repeat("x", 10000)))
	for name, data := range map[string][]byte{
		"truncated": good[:len(good)-10],
		"not gzip":  []byte("plain text, not an archive"),
	} {
		t.Run(name, func(t *testing.T) {
			key := "ns/corrupt/" + strings.ReplaceAll(name, " ", "-")
			if _, _, err := c.UploadFile(t.Context(), key, bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			if _, _, err := c.DownloadAndExtract(t.Context(), key, t.TempDir()); err == nil || !strings.Contains(err.Error(), "reading archive") {
				t.Errorf("error = %v, want a reading archive error", err)
			}
		})
	}
}
