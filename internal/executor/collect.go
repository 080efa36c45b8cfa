package executor

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

// Failure is why a run did not succeed, as it goes into the StepRun's status.
type Failure struct {
	Phase   v1alpha1.StepRunPhase
	Reason  string
	Message string
}

// Collected is what collecting the outputs gave: the values read, and a failure when any
// output could not be had.
type Collected struct {
	Parameters []v1alpha1.OutputParameterValue
	Artifacts  []v1alpha1.ArtifactStatus
	Failure    *Failure
}

// worse is the failure that decides the run: an Error (lost or unstored outputs) over a Failed.
func worse(a, b *Failure) *Failure {
	if a == nil || b != nil && b.Phase == v1alpha1.StepRunError && a.Phase != v1alpha1.StepRunError {
		return b
	}
	return a
}

// Collector reads main's output parameters after main exited. A value read from a file loses
// exactly one trailing newline (fileValue); a default is used as written.
type Collector struct {
	Outputs []executorconfig.Output
	// Mounts map main's mount paths to the executor's mounts of the same volumes (the outputs
	// emptyDir among them): files there are read from the executor's own mount, because volume
	// mounts vanish from main's held root when main exits.
	Mounts []executorconfig.Mount
	// MaxBytes caps each value; zero means v1alpha1.MaxParameterValueBytes.
	MaxBytes int
	// VolumesDir is where the executor mounts each of main's volumes whole, as VolumesDir/<name>;
	// empty means executorconfig.VolumesDir. A mount's ExecutorPath below VolumesDir/<name> is a
	// subPath, resolved inside that volume.
	VolumesDir string
}

// outputError is one output's failure.
type outputError struct {
	reason string
	msg    string
}

func (e *outputError) Error() string { return e.msg }

// Collect reads every output. root is main's held root filesystem, nil when main was never held:
// an output in main's image filesystem is then lost (never silently empty).
func (c Collector) Collect(root *os.File) Collected {
	var out Collected
	var errs []*outputError
	for _, o := range c.Outputs {
		v, err := c.collectOne(root, o)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out.Parameters = append(out.Parameters, v1alpha1.OutputParameterValue{Name: o.Name, Value: v})
	}
	out.Failure = summarize(errs)
	return out
}

// summarize turns the outputs' failures into one: OutputsLost (phase Error) wins, otherwise the
// first failure's reason (phase Failed); the message lists them all, capped.
func summarize(errs []*outputError) *Failure {
	if len(errs) == 0 {
		return nil
	}
	f := &Failure{Phase: v1alpha1.StepRunFailed, Reason: errs[0].reason}
	msgs := make([]string, 0, len(errs))
	for _, e := range errs {
		if e.reason == v1alpha1.ReasonOutputsLost && f.Phase != v1alpha1.StepRunError {
			f.Phase, f.Reason = v1alpha1.StepRunError, v1alpha1.ReasonOutputsLost
		}
		msgs = append(msgs, e.msg)
	}
	f.Message = truncateUTF8(strings.Join(msgs, "; "), v1alpha1.MaxMessageBytes)
	return f
}

func (c Collector) collectOne(root *os.File, o executorconfig.Output) (string, *outputError) {
	p := path.Clean(o.Path)
	if !path.IsAbs(p) {
		return "", &outputError{v1alpha1.ReasonOutputUnreadable,
			fmt.Sprintf("output %q: path %q is not absolute", o.Name, o.Path)}
	}
	var (
		v   string
		err error
	)
	if m, rel, ok := mountFor(c.Mounts, p); ok {
		v, err = c.readFromMount(m.ExecutorPath, rel)
	} else if root == nil {
		return "", &outputError{v1alpha1.ReasonOutputsLost, fmt.Sprintf(
			"output %q: %s is in main's image filesystem, but main exited before the executor held "+
				"its root; write outputs under %s to make them safe", o.Name, o.Path, executorconfig.OutputsDir)}
	} else {
		v, err = c.readFromRoot(root, p)
	}
	switch {
	case err == nil:
		return v, nil
	case errors.Is(err, unix.ENOENT):
		if o.Default != nil {
			return *o.Default, nil
		}
		return "", &outputError{v1alpha1.ReasonOutputMissing,
			fmt.Sprintf("output %q: %s does not exist and the output has no default", o.Name, o.Path)}
	case errors.Is(err, errTooLarge):
		return "", &outputError{v1alpha1.ReasonOutputTooLarge,
			fmt.Sprintf("output %q: %s is larger than %d bytes (one trailing newline not counted)", o.Name, o.Path, c.maxBytes())}
	case errors.Is(err, unix.ELOOP):
		return "", &outputError{v1alpha1.ReasonOutputUnreadable, fmt.Sprintf(
			"output %q: %s: refused: a symlink loop or a magic link (such as /proc/self/root)", o.Name, o.Path)}
	default:
		return "", &outputError{v1alpha1.ReasonOutputUnreadable,
			fmt.Sprintf("output %q: reading %s: %v", o.Name, o.Path, err)}
	}
}

func (c Collector) maxBytes() int {
	if c.MaxBytes > 0 {
		return c.MaxBytes
	}
	return v1alpha1.MaxParameterValueBytes
}

// mountFor finds the mount holding p (the longest MainPath that is p or a parent of p) and p's
// path relative to it.
func mountFor(mounts []executorconfig.Mount, p string) (executorconfig.Mount, string, bool) {
	var best executorconfig.Mount
	bestLen := -1
	for _, m := range mounts {
		mp := path.Clean(m.MainPath)
		var ok bool
		switch {
		case mp == "/":
			ok = true
		default:
			ok = p == mp || strings.HasPrefix(p, mp+"/")
		}
		if ok && len(mp) > bestLen {
			best, bestLen = m, len(mp)
		}
	}
	if bestLen < 0 {
		return executorconfig.Mount{}, "", false
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(p, path.Clean(best.MainPath)), "/")
	if rel == "" {
		rel = "."
	}
	return best, rel, true
}

func (c Collector) readFromMount(dir, rel string) (string, error) {
	dfd, err := openMount(c.VolumesDir, dir)
	if err != nil {
		return "", err
	}
	defer unix.Close(dfd)
	return readInRoot(dfd, rel, c.maxBytes())
}

// openMount opens dir, a mount's ExecutorPath, as an O_PATH directory. A subPath (dir below
// volumesDir/<name>; volumesDir empty means executorconfig.VolumesDir) is resolved inside its
// volume like any output path: main, or anyone sharing the volume, may have replaced one of its
// directories with a symlink since kubelet mounted it for main, and a plain open would follow
// that symlink out of the volume, into the executor's own filesystem (its token).
func openMount(volumesDir, dir string) (int, error) {
	base, sub := volumeOf(volumesDir, dir)
	dfd, err := unix.Open(base, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		// Not wrapped: the mount itself missing is the Pod's misconfiguration, not a missing
		// output (ENOENT), and must not fall back to a default.
		return -1, fmt.Errorf("opening the executor's mount %s: %v", dir, err)
	}
	if sub == "" {
		return dfd, nil
	}
	defer unix.Close(dfd)
	subfd, err := openat2Retry(dfd, sub, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		// Not wrapped either: a subPath gone missing is no missing output.
		return -1, fmt.Errorf("opening the executor's mount %s: subPath %s in its volume: %v", dir, sub, err)
	}
	return subfd, nil
}

// volumeOf splits dir, a mount's ExecutorPath, into the executor's mount of a whole volume and
// the subPath under it ("" when dir is not below volumesDir/<name>).
func volumeOf(volumesDir, dir string) (base, sub string) {
	if volumesDir == "" {
		volumesDir = executorconfig.VolumesDir
	}
	rest, ok := strings.CutPrefix(path.Clean(dir), path.Clean(volumesDir)+"/")
	if !ok {
		return dir, ""
	}
	name, sub, _ := strings.Cut(rest, "/")
	return path.Join(volumesDir, name), sub
}

func (c Collector) readFromRoot(root *os.File, p string) (string, error) {
	rc, err := root.SyscallConn()
	if err != nil {
		return "", err
	}
	var (
		v    string
		rerr error
	)
	if err := rc.Control(func(fd uintptr) { v, rerr = readInRoot(int(fd), p, c.maxBytes()) }); err != nil {
		return "", err
	}
	return v, rerr
}

var errTooLarge = errors.New("too large")

// readInRoot opens name under dirfd as if dirfd were the root: absolute and ".." symlinks stay
// inside it, magic links (/proc/<pid>/root, /proc/self/fd/N) are refused. It reads at most
// max+2 bytes of a regular file (a value at the cap, its trailing newline, and one byte to tell
// that the file is longer) and returns fileValue of them.
func readInRoot(dirfd int, name string, max int) (string, error) {
	how := &unix.OpenHow{
		// O_NONBLOCK: a FIFO must not block the executor; it is refused below anyway.
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := openat2Retry(dirfd, name, how)
	if err != nil {
		return "", err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return "", err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		return "", errors.New("is a directory")
	default:
		return "", errors.New("is not a regular file")
	}
	b, err := io.ReadAll(io.LimitReader(f, int64(max)+2))
	if err != nil {
		return "", err
	}
	return fileValue(b, max)
}

// openat2Retry is openat2, tried again on EAGAIN (a concurrent rename raced the lookup) and
// EINTR (a signal), at most 16 times.
func openat2Retry(dirfd int, name string, how *unix.OpenHow) (fd int, err error) {
	for range 16 {
		fd, err = unix.Openat2(dirfd, name, how)
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
			break
		}
	}
	return fd, err
}

// fileValue turns a file's content into an output value: exactly one trailing "\n" is trimmed,
// as Argo Workflows does, because `echo` and `expr` end their output with one and a value
// substituted into a later step's command must not carry it; "\r", spaces and further newlines
// are kept. The cap applies to the trimmed value. b may be a prefix of the file, read up to
// max+2 bytes: a value at the cap plus its newline fits, and anything longer is still over.
func fileValue(b []byte, max int) (string, error) {
	b = bytes.TrimSuffix(b, []byte("\n"))
	if len(b) > max {
		return "", errTooLarge
	}
	if !utf8.Valid(b) {
		// JSON would turn each invalid byte into U+FFFD (3 bytes), changing the value and
		// possibly breaking the cap; refuse instead.
		return "", errors.New("is not valid UTF-8 text")
	}
	return string(b), nil
}

// truncateUTF8 cuts valid UTF-8 s to at most max bytes without splitting a character.
func truncateUTF8(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
