package executor

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/artifact"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

// Uploader stores one object, streaming: it never holds the whole content, and returns its size
// and sha256 (hex) as stored. archive (none or tgz) is recorded with the object.
type Uploader interface {
	Upload(ctx context.Context, key, archive string, r io.Reader) (size int64, sha256 string, err error)
}

// ArtifactCollector stores main's output artifacts after main exited. Paths are found exactly
// like output parameters' (Collector): on a volume through the executor's own mount, anything
// else through main's held root, with the same symlink rules.
type ArtifactCollector struct {
	Artifacts []executorconfig.Artifact
	Mounts    []executorconfig.Mount
	Uploader  Uploader
	// VolumesDir is where the executor mounts main's volumes (see openMount); empty means
	// executorconfig.VolumesDir.
	VolumesDir string
}

// Collect stores every artifact and returns what was stored, and a failure when any artifact
// could not be: OutputsLost or ArtifactUploadFailed (phase Error) win over ArtifactNotFound.
func (c ArtifactCollector) Collect(ctx context.Context, root *os.File) ([]v1alpha1.ArtifactStatus, *Failure) {
	var stored []v1alpha1.ArtifactStatus
	var errs []*outputError
	for _, a := range c.Artifacts {
		st, err := c.collectOne(ctx, root, a)
		switch {
		case err != nil:
			errs = append(errs, err)
		case st != nil:
			stored = append(stored, *st)
		}
	}
	f := summarize(errs)
	if f != nil {
		for _, e := range errs {
			if e.reason == v1alpha1.ReasonArtifactUploadFailed || e.reason == v1alpha1.ReasonOutputsLost {
				f.Phase, f.Reason = v1alpha1.StepRunError, e.reason
				break
			}
		}
	}
	return stored, f
}

// collectOne stores one artifact; nil, nil is an optional artifact that does not exist.
func (c ArtifactCollector) collectOne(ctx context.Context, root *os.File, a executorconfig.Artifact) (*v1alpha1.ArtifactStatus, *outputError) {
	p := path.Clean(a.Path)
	f, err := c.open(root, p)
	switch {
	case errors.Is(err, errNoRoot):
		return nil, &outputError{v1alpha1.ReasonOutputsLost, fmt.Sprintf(
			"artifact %q: %s is in main's image filesystem, but main exited before the executor held "+
				"its root; write it under %s, /tmp or a volume to make it safe", a.Name, a.Path, executorconfig.OutputsDir)}
	case errors.Is(err, unix.ENOENT) && a.Optional:
		return nil, nil
	case errors.Is(err, unix.ENOENT):
		return nil, &outputError{v1alpha1.ReasonArtifactNotFound, fmt.Sprintf("artifact %q: %s does not exist", a.Name, a.Path)}
	case errors.Is(err, unix.ELOOP):
		return nil, &outputError{v1alpha1.ReasonOutputUnreadable, fmt.Sprintf(
			"artifact %q: %s: refused: a symlink loop or a magic link (such as /proc/self/root)", a.Name, a.Path)}
	case err != nil:
		return nil, &outputError{v1alpha1.ReasonOutputUnreadable, fmt.Sprintf("artifact %q: opening %s: %v", a.Name, a.Path, err)}
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, &outputError{v1alpha1.ReasonOutputUnreadable, fmt.Sprintf("artifact %q: %s: %v", a.Name, a.Path, err)}
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	archive := a.Archive
	if archive == "" {
		archive = map[bool]string{true: executorconfig.ArchiveTgz, false: executorconfig.ArchiveNone}[isDir]
	}
	var content io.Reader
	switch {
	case isDir && archive == executorconfig.ArchiveNone:
		return nil, &outputError{v1alpha1.ReasonOutputUnreadable, fmt.Sprintf("artifact %q: %s is a directory; a directory is stored as tgz", a.Name, a.Path)}
	case !isDir && st.Mode&unix.S_IFMT != unix.S_IFREG:
		return nil, &outputError{v1alpha1.ReasonOutputUnreadable, fmt.Sprintf("artifact %q: %s is not a regular file or a directory", a.Name, a.Path)}
	case archive == executorconfig.ArchiveTgz:
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(writeTgz(pw, f, isDir, path.Base(p))) }()
		defer pr.Close()
		content = pr
	default:
		content = f
	}
	size, sum, err := c.Uploader.Upload(ctx, a.Key, archive, content)
	if err != nil {
		return nil, &outputError{v1alpha1.ReasonArtifactUploadFailed, fmt.Sprintf("artifact %q: storing %s as %s: %v", a.Name, a.Path, a.Key, err)}
	}
	return &v1alpha1.ArtifactStatus{Name: a.Name, Key: a.Key, Size: size, SHA256: sum, Archive: archive}, nil
}

// newUploader connects to the run's repository with the credentials the kubelet put in the
// executor's environment from the repository's Secret.
func newUploader(repo executorconfig.Repository) (Uploader, error) {
	return artifact.ClientFromEnv(context.Background(), repo)
}

var errNoRoot = errors.New("main's root was never held")

// open opens p for reading (a file) or listing (a directory), never following a magic link nor
// leaving the mount or root it is found in.
func (c ArtifactCollector) open(root *os.File, p string) (*os.File, error) {
	var dirfd int
	rel := p
	if m, r, ok := mountFor(c.Mounts, p); ok {
		fd, err := openMount(c.VolumesDir, m.ExecutorPath)
		if err != nil {
			return nil, err
		}
		defer unix.Close(fd)
		dirfd, rel = fd, r
	} else if root == nil {
		return nil, errNoRoot
	} else {
		dirfd = int(root.Fd())
	}
	fd, err := openat2Retry(dirfd, rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), p), nil
}

// writeTgz writes f as a tar+gzip archive: a directory's tree (names relative to it), or one file.
// The tree is read through an os.Root on the directory's descriptor, so nothing outside it is
// ever read: symlinks are stored as symlinks, never followed.
func writeTgz(w io.Writer, f *os.File, isDir bool, name string) error {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	if isDir {
		r, err := os.OpenRoot("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
		if err != nil {
			return fmt.Errorf("opening the directory: %w", err)
		}
		defer r.Close()
		if err := tw.AddFS(r.FS()); err != nil {
			return fmt.Errorf("archiving: %w", err)
		}
	} else {
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		hdr.Name = name
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.Copy(tw, f); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}
