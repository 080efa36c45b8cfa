// Package podlogs reads main's log through the Pod log API and writes it out line by line, a
// prefix on each line when several logs are interleaved. What to do for a StepRun (read its
// Pod's log, or say why there is none) is decided by a pure function.
package podlogs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"strings"
	"sync"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

// MainContainer is the name of the user's container in a StepRun's Pod.
const MainContainer = executorconfig.MainContainer

// Options select what part of a log to read, and how.
type Options struct {
	Follow    bool
	TailLines *int64
	// Timestamps prefixes each line with its RFC 3339 time, as the kubelet does.
	Timestamps bool
	// SinceTime starts at the lines of that second.
	SinceTime *metav1.Time
}

// Source reads main's log in a Pod, and says whether main has ended.
type Source interface {
	Open(ctx context.Context, namespace, pod string, o Options) (io.ReadCloser, error)
	// MainEnded reports whether main has ended; a Pod that is gone has.
	MainEnded(ctx context.Context, namespace, pod string) (bool, error)
}

// Kube reads logs from the API server (which asks the kubelet).
type Kube struct{ Client kubernetes.Interface }

// Open streams main's log.
func (k Kube) Open(ctx context.Context, namespace, pod string, o Options) (io.ReadCloser, error) {
	req := k.Client.CoreV1().Pods(namespace).GetLogs(pod, &corev1.PodLogOptions{Container: MainContainer,
		Follow: o.Follow, TailLines: o.TailLines, Timestamps: o.Timestamps, SinceTime: o.SinceTime})
	rc, err := req.Stream(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the log of pod %s: %w", pod, err)
	}
	return rc, nil
}

// MainEnded reads the Pod's status of main.
func (k Kube) MainEnded(ctx context.Context, namespace, pod string) (bool, error) {
	p, err := k.Client.CoreV1().Pods(namespace).Get(ctx, pod, metav1.GetOptions{})
	switch {
	case IsGone(err):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("reading pod %s: %w", pod, err)
	}
	main := executorconfig.MainStatus(p)
	return main != nil && main.State.Terminated != nil, nil
}

// Archive opens an artifact a StepRun's executor stored in its artifact repository.
type Archive interface {
	Open(ctx context.Context, sr *v1alpha1.StepRun, a v1alpha1.ArtifactStatus) (io.ReadCloser, error)
}

// ArchivedLog is main's log as the executor archived it (spec.archiveLogs), or nil.
func ArchivedLog(sr *v1alpha1.StepRun) *v1alpha1.ArtifactStatus {
	if sr.Status.Outputs == nil {
		return nil
	}
	for i, a := range sr.Status.Outputs.Artifacts {
		if a.Name == v1alpha1.MainLogsArtifact {
			return &sr.Status.Outputs.Artifacts[i]
		}
	}
	return nil
}

// ArchivedNote says that a gone Pod's log comes from the artifact repository.
func ArchivedNote(sr *v1alpha1.StepRun, a *v1alpha1.ArtifactStatus) string {
	note := fmt.Sprintf("pod %s is gone; main's log follows from the artifact repository (%s, %d bytes)", PodName(sr), a.Key, a.Size)
	if a.Incomplete != "" {
		note += "; it is incomplete: " + a.Incomplete
	}
	return note
}

// IsGone reports whether opening a log failed because the Pod no longer exists.
func IsGone(err error) bool { return apierrors.IsNotFound(err) }

// Action is what to do for one StepRun's log.
type Action int

const (
	// Read the Pod's log.
	Read Action = iota
	// Wait: main has not started; with --follow, read once it has.
	Wait
	// None: main never ran, so there is no log; the reason says why.
	None
)

// Decide says what to do for sr's log, with a sentence for the user when there is nothing to
// read. A Pod that is gone is only found out by reading (see IsGone).
func Decide(sr *v1alpha1.StepRun) (Action, string) {
	st := &sr.Status
	switch {
	case st.MainNeverStarted():
		return None, fmt.Sprintf("main never started: %s", outcome(st))
	case st.Phase == v1alpha1.StepRunRunning || st.Phase.IsTerminal():
		return Read, ""
	}
	return Wait, "main has not started yet (" + string(phaseOrPending(st.Phase)) + ")"
}

func phaseOrPending(p v1alpha1.StepRunPhase) v1alpha1.StepRunPhase {
	if p == "" {
		return v1alpha1.StepRunPending
	}
	return p
}

func outcome(st *v1alpha1.StepRunStatus) string {
	s := string(st.Phase)
	if st.Reason != "" {
		s += "/" + st.Reason
	}
	if st.Message != "" {
		s += ": " + st.Message
	}
	return s
}

// PodName is sr's Pod: as the status says, else as the controller names it.
func PodName(sr *v1alpha1.StepRun) string {
	if sr.Status.PodName != "" {
		return sr.Status.PodName
	}
	return sr.Name + "-pod"
}

// GoneNote explains a Pod that is gone, and what can still be shown.
func GoneNote(sr *v1alpha1.StepRun) string {
	note := fmt.Sprintf("pod %s is gone, and main's log with it", PodName(sr))
	if r := sr.Status.Outputs; r != nil && r.Result != nil && *r.Result != "" {
		return note + fmt.Sprintf("; the last %d bytes the executor kept (status.outputs.result) follow", len(*r.Result))
	}
	return note + "; the executor kept none of it (status.outputs.result is empty)"
}

// Prefix names a StepRun of a WorkflowRun in interleaved logs: step, step[item], and a retry's
// attempt after a slash: fan[3]/r1.
func Prefix(step string, item, attempt int) string {
	p := step
	if item >= 0 {
		p += fmt.Sprintf("[%d]", item)
	}
	if attempt > 0 {
		p += fmt.Sprintf("/r%d", attempt)
	}
	return p
}

// palette are the prefix colours: each step gets one, its items share it.
var palette = []string{"36", "35", "33", "32", "34", "96", "95", "93", "92", "94"}

// Color is the ANSI colour of a step's prefix, the same on every run.
func Color(step string) string {
	h := fnv.New32a()
	h.Write([]byte(step))
	return palette[h.Sum32()%uint32(len(palette))]
}

// Writer writes whole lines from concurrent readers, so lines of different logs never mix.
type Writer struct {
	mu    sync.Mutex
	w     io.Writer
	color bool
	width int // the widest prefix so far, so that text starts in one column
}

// NewWriter writes to w, colouring prefixes when color is set.
func NewWriter(w io.Writer, color bool) *Writer { return &Writer{w: w, color: color} }

// Line writes one line (without its newline) after prefix ("" for none) in step's colour.
func (lw *Writer) Line(prefix, step, text string) error {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	_, err := io.WriteString(lw.w, lw.format(prefix, step, text))
	return err
}

// Widen makes room for prefix from now on, before any of its lines: a log followed from then
// lines up with the others whichever of them prints first.
func (lw *Writer) Widen(prefix string) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	lw.width = max(lw.width, utf8.RuneCountInString(prefix))
}

func (lw *Writer) format(prefix, step, text string) string {
	if prefix == "" {
		return text + "\n"
	}
	lw.width = max(lw.width, utf8.RuneCountInString(prefix))
	padded := prefix + strings.Repeat(" ", lw.width-utf8.RuneCountInString(prefix))
	if lw.color {
		return fmt.Sprintf("\x1b[%sm%s\x1b[0m │ %s\n", Color(step), padded, text)
	}
	return padded + " │ " + text + "\n"
}

// Copy writes every line of r through lw. A last line without a newline is written whole; a
// line longer than any buffer is still one line.
func Copy(r io.Reader, lw *Writer, prefix, step string) error {
	return eachLine(r, func(text string) error { return lw.Line(prefix, step, text) })
}

// CopyTail writes the last n lines of r through lw, holding no more than those n lines.
func CopyTail(r io.Reader, lw *Writer, prefix, step string, n int64) error {
	if n <= 0 {
		_, err := io.Copy(io.Discard, r)
		return err
	}
	ring := make([]string, 0, min(n, 1024))
	next := 0 // where the next line goes once the ring is full
	err := eachLine(r, func(text string) error {
		if int64(len(ring)) < n {
			ring = append(ring, text)
		} else {
			ring[next] = text
			next = (next + 1) % len(ring)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := range ring {
		if err := lw.Line(prefix, step, ring[(next+i)%len(ring)]); err != nil {
			return err
		}
	}
	return nil
}

// eachLine calls fn with every line of r, without its newline; a last line without one is a
// line too. fn's error ends the read and is returned as is.
func eachLine(r io.Reader, fn func(string) error) error {
	br := bufio.NewReaderSize(r, 64*1024)
	for {
		text, err := br.ReadString('\n')
		if len(text) > 0 {
			if ferr := fn(strings.TrimSuffix(text, "\n")); ferr != nil {
				return ferr
			}
		}
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return fmt.Errorf("reading log: %w", err)
		}
	}
}

// Text writes s (a log kept in status) through lw, line by line.
func Text(s string, lw *Writer, prefix, step string) error {
	return Copy(strings.NewReader(s), lw, prefix, step)
}
