package artifact

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Every path an extraction opens is resolved by the kernel (openat2) below the destination and
// through no symlink at all. That is what stops tar-slip for good: the name checks below give
// clear errors for the obvious attacks, but only the kernel sees the tree as it really is (a
// symlink planted by an earlier entry, or already in destDir, cannot redirect a later write).
const resolveStrict = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// extractTarGz unpacks a tar+gzip stream into destDir (created if missing). It refuses, naming
// the entry: names that are absolute or contain "..", symlinks whose target leaves destDir, hard
// links to anything outside the archive, entries under a symlink, and device/FIFO entries.
// Permission bits are kept (setuid/setgid/sticky dropped); owners and times are not restored.
func extractTarGz(r io.Reader, destDir string) error {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("reading archive: %w", err)
	}
	if err := os.MkdirAll(destDir, 0o755); err != nil {
		return err
	}
	x, err := newExtractor(destDir)
	if err != nil {
		return err
	}
	defer x.close()
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		// With GODEBUG=tarinsecurepath=0 the reader flags names itself; our own checks in entry
		// decide, and name the entry.
		if err != nil && !(errors.Is(err, tar.ErrInsecurePath) && hdr != nil) {
			return fmt.Errorf("reading archive: %w", err)
		}
		if err := x.entry(hdr, tr); err != nil {
			return fmt.Errorf("archive entry %q: %w", hdr.Name, err)
		}
	}
	// Reading to gzip's end checks its CRC and length trailer: a truncated or corrupt stream
	// fails even when the tar part happened to parse.
	if _, err := io.Copy(io.Discard, gz); err != nil {
		return fmt.Errorf("reading archive: %w", err)
	}
	return x.finish()
}

type extractor struct {
	root     int // O_PATH fd of destDir
	symlinks []symlink
	dirModes map[string]uint32
}

type symlink struct{ name, target string }

func newExtractor(destDir string) (*extractor, error) {
	fd, err := unix.Open(destDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: destDir, Err: err}
	}
	return &extractor{root: fd, dirModes: map[string]uint32{}}, nil
}

func (x *extractor) close() { unix.Close(x.root) }

// entryName turns an archive name into a clean relative path, refusing rather than "fixing"
// anything that tries to leave the destination.
func entryName(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty name")
	}
	if strings.HasPrefix(name, "/") {
		return "", errors.New("absolute path refused")
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == ".." {
			return "", errors.New(`".." in path refused`)
		}
	}
	return path.Clean(name), nil
}

func (x *extractor) entry(hdr *tar.Header, body io.Reader) error {
	name, err := entryName(hdr.Name)
	if err != nil {
		return err
	}
	mode := uint32(hdr.Mode) & 0o777
	if name == "." {
		if hdr.Typeflag == tar.TypeDir {
			return nil // the destination itself
		}
		return errors.New("entry names the destination directory itself")
	}
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	case tar.TypeDir:
		return x.mkdir(name, mode)
	case tar.TypeReg:
		return x.writeFile(name, mode, body)
	case tar.TypeSymlink:
		return x.symlink(name, hdr.Linkname)
	case tar.TypeLink:
		return x.hardlink(name, hdr.Linkname)
	}
	return fmt.Errorf("unsupported entry type %q refused", hdr.Typeflag)
}

// parent opens name's parent directory below the root, failing on any symlink along the way and,
// when create is set, creating missing directories (archives need not list them). It returns the
// fd and the base name.
func (x *extractor) parent(name string, create bool) (int, string, error) {
	dir, base := path.Split(name)
	fd, err := unix.Openat2(x.root, ".", &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: resolveStrict})
	if err != nil {
		return -1, "", err
	}
	for _, seg := range strings.Split(strings.TrimSuffix(dir, "/"), "/") {
		if seg == "" {
			continue
		}
		if create {
			// 0755 (less umask) like mkdir -p: a directory the archive does not list keeps it.
			if err := unix.Mkdirat(fd, seg, 0o755); err != nil && err != unix.EEXIST {
				unix.Close(fd)
				return -1, "", fmt.Errorf("creating directory %q: %w", seg, err)
			}
		}
		// No O_NOFOLLOW: with O_PATH it would return the symlink itself; RESOLVE_NO_SYMLINKS
		// makes a symlink here fail with ELOOP instead.
		next, err := unix.Openat2(fd, seg, &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: resolveStrict})
		unix.Close(fd)
		if err != nil {
			return -1, "", fmt.Errorf("path component %q: %w", seg, describe(err))
		}
		fd = next
	}
	return fd, base, nil
}

// describe turns openat2's refusals into words.
func describe(err error) error {
	switch err {
	case unix.ELOOP:
		return fmt.Errorf("is a symlink, refused (nothing is written through a symlink): %w", err)
	case unix.EXDEV:
		return fmt.Errorf("resolves outside the destination, refused: %w", err)
	case unix.ENOTDIR:
		return fmt.Errorf("is not a directory: %w", err)
	}
	return err
}

func (x *extractor) mkdir(name string, mode uint32) error {
	fd, base, err := x.parent(name, true)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// 0700 while extracting so a read-only directory can still be filled; finish sets mode.
	if err := unix.Mkdirat(fd, base, 0o700); err != nil && err != unix.EEXIST {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(fd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return errors.New("exists and is not a directory (a symlink is never followed)")
	}
	x.dirModes[name] = mode
	return nil
}

// unlinkExisting removes a previous file or symlink at base so that the new entry replaces the
// name rather than writing through it (an existing hard link or symlink could point anywhere).
func unlinkExisting(fd int, base string) error {
	err := unix.Unlinkat(fd, base, 0)
	switch err {
	case nil, unix.ENOENT:
		return nil
	case unix.EISDIR:
		return errors.New("a directory of that name already exists")
	}
	return err
}

func (x *extractor) writeFile(name string, mode uint32, body io.Reader) error {
	pfd, base, err := x.parent(name, true)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := unlinkExisting(pfd, base); err != nil {
		return err
	}
	fd, err := unix.Openat2(pfd, base, &unix.OpenHow{
		Flags:   unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Mode:    0o600,
		Resolve: resolveStrict,
	})
	if err != nil {
		return describe(err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	if _, err := io.Copy(f, body); err != nil {
		return err
	}
	// Mode last: a 0444 file must still be writable while its content goes in.
	if err := f.Chmod(os.FileMode(mode)); err != nil {
		return err
	}
	return f.Close()
}

// symlink refuses a target that leaves destDir as written (absolute, or ".." climbing past the
// root); finish then checks what the kernel actually resolves, which catches chains of links.
func (x *extractor) symlink(name, target string) error {
	if target == "" {
		return errors.New("symlink with an empty target")
	}
	if path.IsAbs(target) {
		return fmt.Errorf("symlink to absolute path %q refused (it would point outside the destination)", target)
	}
	if t := path.Join(path.Dir(name), target); t == ".." || strings.HasPrefix(t, "../") {
		return fmt.Errorf("symlink to %q refused: it points outside the destination", target)
	}
	pfd, base, err := x.parent(name, true)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := unlinkExisting(pfd, base); err != nil {
		return err
	}
	if err := unix.Symlinkat(target, pfd, base); err != nil {
		return err
	}
	x.symlinks = append(x.symlinks, symlink{name: name, target: target})
	return nil
}

// hardlink links name to an earlier entry of the archive; a target outside the archive (absolute,
// "..") is refused, and the target is looked up through no symlink.
func (x *extractor) hardlink(name, target string) error {
	src, err := entryName(target)
	if err != nil || src == "." {
		return fmt.Errorf("hard link to %q refused: it points outside the destination", target)
	}
	sfd, sbase, err := x.parent(src, false)
	if err != nil {
		return fmt.Errorf("hard link target %q: %w", target, err)
	}
	defer unix.Close(sfd)
	var st unix.Stat_t
	if err := unix.Fstatat(sfd, sbase, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("hard link target %q: %w", target, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("hard link target %q is not a regular file, refused", target)
	}
	pfd, base, err := x.parent(name, true)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := unlinkExisting(pfd, base); err != nil {
		return err
	}
	// Flags 0: never follow a symlink at the source.
	return unix.Linkat(sfd, sbase, pfd, base, 0)
}

// finish checks every extracted symlink the way a later reader would follow it (through other
// links, with ".." after a link resolving against its target), removes the archive's links that
// escape, and applies directory modes deepest first (a read-only parent must not block a child).
func (x *extractor) finish() error {
	var escaped []error
	for _, l := range x.symlinks {
		fd, err := unix.Openat2(x.root, l.name, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS})
		switch err {
		case nil:
			unix.Close(fd)
		case unix.ENOENT, unix.ELOOP:
			// Dangling or looping inside the destination: harmless, kept as archived.
		case unix.EXDEV:
			_ = unix.Unlinkat(x.root, l.name, 0)
			escaped = append(escaped, fmt.Errorf("archive entry %q: symlink to %q resolves outside the destination, refused and removed", l.name, l.target))
		default:
			return fmt.Errorf("archive entry %q: checking symlink: %w", l.name, err)
		}
	}
	if len(escaped) > 0 {
		return errors.Join(escaped...)
	}
	names := make([]string, 0, len(x.dirModes))
	for n := range x.dirModes {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return strings.Count(names[i], "/") > strings.Count(names[j], "/") })
	for _, n := range names {
		fd, err := unix.Openat2(x.root, n, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: resolveStrict})
		if err != nil {
			return fmt.Errorf("archive entry %q: %w", n+"/", describe(err))
		}
		err = unix.Fchmod(fd, x.dirModes[n])
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("archive entry %q: %w", n+"/", err)
		}
	}
	return nil
}
