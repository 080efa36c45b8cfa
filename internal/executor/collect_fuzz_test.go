package executor

import (
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

// secretContent is the content of the file outside main's root and outside the volume; no path
// the fuzzer can write holds it, so it shows in a result only if a byte came from outside.
const secretContent = "TOPSECRET-c0ffee"

// fuzzNames are the path components a fuzzed tree is built from.
var fuzzNames = []string{"a", "b", "out", "sub", "etc", "secret", "proc", "loop", "x y", "..."}

// fuzzTargets are symlink targets: relative, absolute, ".."-laden, towards the secret, into
// /proc (magic links), to themselves. "@" stands for the test's temporary directory on the host,
// which holds the secret beside the root and the volumes.
var fuzzTargets = []string{
	"a", "../a", "..", "../..", "../../..", ".", "/", "/a", "/a/b", "/out", "sub/../..",
	"../secret", "../../secret", "/secret", "/../secret", "/..", "@/secret", "@", "@/root/a",
	"/proc/self/root@/secret", "/proc/self/cwd", "/proc/1/root", "loop", "../loop", "/loop",
	"./././../../../../../../../secret", "/sub/../../secret", "@/volumes", "../../..//secret",
}

// fuzzTree builds a tree from ops, four bytes an operation: what to make (bits 0-1: directory,
// file, symlink, FIFO; bit 7: in vol rather than root), its name, its parent directory's name
// (none when the pick is past fuzzNames) and its symlink target. Nothing is ever made through a
// symlink, so the tree stays inside root and vol.
func fuzzTree(t *testing.T, host, root, vol string, ops []byte) {
	for i := 0; i+3 < len(ops) && i < 4*64; i += 4 {
		dir := root
		if ops[i]&0x80 != 0 {
			dir = vol
		}
		rel := fuzzNames[int(ops[i+1])%len(fuzzNames)]
		if j := int(ops[i+2]) % (len(fuzzNames) + 1); j < len(fuzzNames) {
			rel = path.Join(fuzzNames[j], rel)
		}
		full := filepath.Join(dir, rel)
		if !realDirs(dir, path.Dir(rel)) {
			continue
		}
		if _, err := os.Lstat(full); err == nil {
			continue
		}
		var err error
		switch ops[i] & 3 {
		case 0:
			err = os.Mkdir(full, 0o755)
		case 1:
			err = os.WriteFile(full, []byte("inside-"+strconv.Itoa(i)+strings.Repeat("\n", int(ops[i+3])%3)), 0o644)
		case 2:
			err = os.Symlink(strings.ReplaceAll(fuzzTargets[int(ops[i+3])%len(fuzzTargets)], "@", host), full)
		case 3:
			err = syscall.Mkfifo(full, 0o644)
		}
		if err != nil {
			t.Fatalf("building the tree: %v", err)
		}
	}
}

// pickName is fuzzNames[b], or "" for picks past its end.
func pickName(b byte) string {
	if i := int(b) % (len(fuzzNames) + 1); i < len(fuzzNames) {
		return fuzzNames[i]
	}
	return ""
}

// realDirs reports whether every component of rel under dir is a directory, not a symlink.
func realDirs(dir, rel string) bool {
	for p := dir; rel != "." && rel != ""; {
		first, rest, _ := strings.Cut(rel, "/")
		p = filepath.Join(p, first)
		if st, err := os.Lstat(p); err != nil || !st.IsDir() {
			return false
		}
		rel = rest
	}
	return true
}

// FuzzCollectStaysInRoot: collecting outputs at any path, from main's root held as a directory
// and from a volume mounted (at a subPath) in main, over any tree of directories, files, FIFOs
// and symlinks (absolute, relative, "..", loops, /proc), never panics and never returns a byte
// of a file outside that root or volume. Besides a free path, the outputs, the tree and the
// subPath are made of the same few names, so the fuzzer finds paths that meet the tree.
func FuzzCollectStaysInRoot(f *testing.F) {
	// ops: {kind (0 dir, 1 file, 2 symlink, 3 FIFO; +0x80 in the volume), name, parent (10: none), target}
	// then outPath, and name picks for the subPath and for a two-name output path (10: none).
	f.Add([]byte{1, 0, 10, 0}, "/a", byte(10), byte(0), byte(10))                              // a file a
	f.Add([]byte{2, 0, 10, 11}, "/a", byte(10), byte(0), byte(10))                             // a -> ../secret
	f.Add([]byte{2, 0, 10, 16}, "/a", byte(10), byte(0), byte(10))                             // a -> <host>/secret, absolute
	f.Add([]byte{0, 3, 10, 0, 2, 0, 3, 12, 1, 0, 10, 0}, "/sub/a", byte(10), byte(3), byte(0)) // sub/a -> ../../secret, beside a file a
	f.Add([]byte{2, 7, 10, 22}, "/loop", byte(10), byte(7), byte(10))                          // loop -> loop
	f.Add([]byte{2, 6, 10, 19}, "/proc", byte(10), byte(6), byte(10))                          // proc -> /proc/self/root<host>/secret
	f.Add([]byte{3, 2, 10, 0}, "/out", byte(10), byte(2), byte(10))                            // a FIFO
	f.Add([]byte{0x80, 0, 10, 0, 0x81, 1, 0, 0}, "/b", byte(0), byte(1), byte(10))             // the volume at subPath a, a file a/b
	f.Add([]byte{0x82, 0, 10, 12}, "/a", byte(10), byte(0), byte(10))                          // the volume: a -> ../../secret
	f.Fuzz(func(t *testing.T, ops []byte, outPath string, sub, out1, out2 byte) {
		if strings.Contains(outPath, secretContent) {
			t.Skip("the path itself names the secret")
		}
		// A subPath is a descending relative path (the API server takes no other), so a name.
		subPath := pickName(sub)
		host := t.TempDir()
		root := filepath.Join(host, "root")       // main's root filesystem
		volumes := filepath.Join(host, "volumes") // the executor's /pnsflow/volumes
		vol := filepath.Join(volumes, "data")     // its mount of main's volume "data"
		for _, d := range []string{root, volumes, vol} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(host, "secret"), []byte(secretContent), 0o644); err != nil {
			t.Fatal(err)
		}
		fuzzTree(t, host, root, vol, ops)

		rootDir, err := os.Open(root)
		if err != nil {
			t.Fatal(err)
		}
		defer rootDir.Close()
		picked := "/" + pickName(out1) + "/" + pickName(out2)
		var outputs []executorconfig.Output
		for i, p := range []string{outPath, "/data/" + outPath, picked, "/data" + picked} {
			outputs = append(outputs, executorconfig.Output{Name: "p" + strconv.Itoa(i), Path: p})
		}
		c := Collector{
			Outputs: outputs,
			// As the Pod builder writes it: the volume's mount joined with main's subPath.
			Mounts:     []executorconfig.Mount{{MainPath: "/data", ExecutorPath: path.Join(vol, subPath)}},
			VolumesDir: volumes,
		}
		got := c.Collect(rootDir)
		for _, p := range got.Parameters {
			if strings.Contains(p.Value, secretContent) || !strings.HasPrefix(p.Value, "inside-") {
				t.Fatalf("output %s (outputs %+v, volume subPath %q) = %q: not a file inside the root or the volume", p.Name, outputs, subPath, p.Value)
			}
		}
		if got.Failure != nil && strings.Contains(got.Failure.Message, secretContent) {
			t.Fatalf("the failure message shows the secret: %s", got.Failure.Message)
		}
	})
}

func TestVolumeOf(t *testing.T) {
	cases := []struct{ volumes, dir, base, sub string }{
		{"", "/pnsflow/volumes/data", "/pnsflow/volumes/data", ""},
		{"", "/pnsflow/volumes/data/in", "/pnsflow/volumes/data", "in"},
		{"", "/pnsflow/volumes/data/a/out/", "/pnsflow/volumes/data", "a/out"},
		{"", "/pnsflow/outputs", "/pnsflow/outputs", ""},
		{"", "/pnsflow/volumesX/data/in", "/pnsflow/volumesX/data/in", ""},
		{"/tmp/v/", "/tmp/v/data/sub", "/tmp/v/data", "sub"},
	}
	for _, tc := range cases {
		if base, sub := volumeOf(tc.volumes, tc.dir); base != tc.base || sub != tc.sub {
			t.Errorf("volumeOf(%q, %q) = %q, %q; want %q, %q", tc.volumes, tc.dir, base, sub, tc.base, tc.sub)
		}
	}
}
