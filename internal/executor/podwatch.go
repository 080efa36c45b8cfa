package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

// ErrPodGone is returned when the executor's Pod was deleted before main's end was reported.
var ErrPodGone = errors.New("the Pod was deleted before main's exit was reported")

// Running is main running, as the kubelet reports it.
type Running struct {
	StartedAt time.Time
}

// Termination is main's end, as the kubelet reports it in containerStatuses[main].
type Termination struct {
	ExitCode int32
	// Reason is the container's terminated reason: Completed, Error, OOMKilled, ...
	Reason  string
	Message string
	// StartedAt and FinishedAt have the kubelet's one-second resolution.
	StartedAt  time.Time
	FinishedAt time.Time
	// PodReason and PodMessage are the Pod's status.reason and status.message; the kubelet sets
	// DeadlineExceeded when activeDeadlineSeconds passed.
	PodReason  string
	PodMessage string
	// DeadlineAt is status.startTime + spec.activeDeadlineSeconds, zero without a deadline.
	DeadlineAt time.Time
	// Pod is when the Pod was created and scheduled.
	Pod v1alpha1.StepRunTimings
}

// MainState is what the Pod says about main: nothing yet, running, or terminated; and how often
// the kubelet restarted the executor.
type MainState struct {
	Running          *Running
	Terminated       *Termination
	ExecutorRestarts int32
	Pod              v1alpha1.StepRunTimings
}

// MainStateOf reads main's state from a Pod.
func MainStateOf(pod *corev1.Pod) MainState {
	st := MainState{Pod: v1alpha1.PodTimings(pod)}
	if ex := executorconfig.ExecutorStatus(pod); ex != nil {
		st.ExecutorRestarts = ex.RestartCount
	}
	cs := executorconfig.MainStatus(pod)
	if cs == nil {
		return st
	}
	if r := cs.State.Running; r != nil {
		st.Running = &Running{StartedAt: r.StartedAt.Time}
	}
	if t := cs.State.Terminated; t != nil {
		term := &Termination{
			ExitCode:   t.ExitCode,
			Reason:     t.Reason,
			Message:    t.Message,
			StartedAt:  t.StartedAt.Time,
			FinishedAt: t.FinishedAt.Time,
			PodReason:  pod.Status.Reason,
			PodMessage: pod.Status.Message,
			Pod:        st.Pod,
		}
		if d := pod.Spec.ActiveDeadlineSeconds; d != nil && pod.Status.StartTime != nil {
			term.DeadlineAt = pod.Status.StartTime.Add(time.Duration(*d) * time.Second)
		}
		st.Terminated = term
	}
	return st
}

// PodWatcher watches the executor's own Pod for main's state. Run does the watching; MainStarted
// and MainTerminated wait for what it saw.
type PodWatcher struct {
	client    rest.Interface
	namespace string
	name      string

	mu       sync.Mutex
	state    MainState
	gone     bool
	changed  chan struct{} // closed and replaced on every change
	deleting chan struct{} // closed once the Pod is seen being deleted, or gone
}

// NewPodWatcher returns a watcher of Pod ns/pod.
func NewPodWatcher(cfg *rest.Config, ns, pod string) (*PodWatcher, error) {
	c, err := newCoreClient(cfg)
	if err != nil {
		return nil, err
	}
	return NewPodWatcherForClient(c, ns, pod), nil
}

// NewPodWatcherForClient returns a watcher of Pod ns/pod using a core v1 REST client.
func NewPodWatcherForClient(c rest.Interface, ns, pod string) *PodWatcher {
	return &PodWatcher{client: c, namespace: ns, name: pod, changed: make(chan struct{}), deleting: make(chan struct{})}
}

// Deleting is closed once the Pod is seen being deleted (or gone).
func (w *PodWatcher) Deleting() <-chan struct{} { return w.deleting }

// ExecutorRestarts is how often the kubelet restarted the executor, as far as the Pod said.
func (w *PodWatcher) ExecutorRestarts() int32 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.state.ExecutorRestarts
}

// MainStarted waits until main is running or has terminated.
func (w *PodWatcher) MainStarted(ctx context.Context) (MainState, error) {
	return w.wait(ctx, func(s MainState) bool { return s.Running != nil || s.Terminated != nil })
}

// MainTerminated waits until main has terminated and returns how.
func (w *PodWatcher) MainTerminated(ctx context.Context) (Termination, error) {
	st, err := w.wait(ctx, func(s MainState) bool { return s.Terminated != nil })
	if err != nil {
		return Termination{}, err
	}
	return *st.Terminated, nil
}

func (w *PodWatcher) wait(ctx context.Context, done func(MainState) bool) (MainState, error) {
	for {
		w.mu.Lock()
		st, gone, ch := w.state, w.gone, w.changed
		w.mu.Unlock()
		if done(st) {
			return st, nil
		}
		if gone {
			return st, ErrPodGone
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return st, ctx.Err()
		}
	}
}

// observe records what a Pod says. Running and Terminated are sticky: a later, older view of the
// Pod never takes them back.
func (w *PodWatcher) observe(pod *corev1.Pod, deleted bool) {
	st := MainStateOf(pod)
	w.mu.Lock()
	defer w.mu.Unlock()
	changed := false
	if st.Running != nil && w.state.Running == nil {
		w.state.Running, changed = st.Running, true
	}
	if st.Terminated != nil && w.state.Terminated == nil {
		w.state.Terminated, changed = st.Terminated, true
	}
	// Not a change anyone waits for: reports read it when they are made.
	w.state.ExecutorRestarts = max(w.state.ExecutorRestarts, st.ExecutorRestarts)
	if deleted && !w.gone {
		w.gone, changed = true, true
	}
	if (deleted || pod.DeletionTimestamp != nil) && !isClosed(w.deleting) {
		close(w.deleting)
	}
	if changed {
		close(w.changed)
		w.changed = make(chan struct{})
	}
}

func (w *PodWatcher) finished() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.state.Terminated != nil || w.gone
}

// errWatchExpired is a watch's 410 Gone: read the Pod again.
var errWatchExpired = errors.New("watch expired")

// Run reads and watches the Pod until main has terminated, the Pod is gone, or ctx is done.
// API errors are retried with backoff: the watch is the executor's only source of main's exit code.
func (w *PodWatcher) Run(ctx context.Context) error {
	log := logr.FromContextOrDiscard(ctx).WithValues("pod", w.namespace+"/"+w.name)
	const minBackoff, maxBackoff = 100 * time.Millisecond, 5 * time.Second
	backoff := minBackoff
	rv := ""
	for !w.finished() {
		var err error
		if rv == "" {
			rv, err = w.get(ctx)
		}
		if err == nil && !w.finished() {
			rv, err = w.watch(ctx, rv)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch {
		case err == nil:
			backoff = minBackoff
			continue
		case errors.Is(err, errWatchExpired):
			rv = ""
			continue
		}
		rv = ""
		log.Error(err, "Watching the Pod failed; retrying", "backoff", backoff)
		if !sleepCtx(ctx, backoff) {
			return ctx.Err()
		}
		backoff = min(2*backoff, maxBackoff)
	}
	return nil
}

func (w *PodWatcher) fieldSelector() string { return "metadata.name=" + w.name }

// get reads the Pod and returns its resourceVersion to watch from. A GET, not a list: the
// executor's role may get and watch its Pod, and need not list the namespace's Pods.
func (w *PodWatcher) get(ctx context.Context) (string, error) {
	body, err := w.client.Get().Namespace(w.namespace).Resource("pods").Name(w.name).Do(ctx).Raw()
	if apierrors.IsNotFound(err) {
		w.observe(&corev1.Pod{}, true)
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("getting pod: %w", err)
	}
	pod, err := decodePod(body)
	if err != nil {
		return "", fmt.Errorf("decoding pod: %w", err)
	}
	w.observe(pod, false)
	return pod.ResourceVersion, nil
}

// podFields are the parts of a Pod the executor reads. Decoding them alone skips the spec (the
// executor's own config in it is kilobytes) and managedFields, and the reflection over the
// spec's many types: a tenth of the executor's CPU went to decoding whole Pods.
type podFields struct {
	Metadata struct {
		ResourceVersion   string       `json:"resourceVersion"`
		CreationTimestamp metav1.Time  `json:"creationTimestamp"`
		DeletionTimestamp *metav1.Time `json:"deletionTimestamp"`
	} `json:"metadata"`
	Spec struct {
		ActiveDeadlineSeconds *int64 `json:"activeDeadlineSeconds"`
	} `json:"spec"`
	Status corev1.PodStatus `json:"status"`
}

// decodePod decodes the fields of a Pod that MainStateOf and the watch read.
func decodePod(raw []byte) (*corev1.Pod, error) {
	var f podFields
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, err
	}
	pod := &corev1.Pod{Status: f.Status}
	pod.ResourceVersion = f.Metadata.ResourceVersion
	pod.CreationTimestamp = f.Metadata.CreationTimestamp
	pod.DeletionTimestamp = f.Metadata.DeletionTimestamp
	pod.Spec.ActiveDeadlineSeconds = f.Spec.ActiveDeadlineSeconds
	return pod, nil
}

// watchEvent is one event of a JSON watch stream.
type watchEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

// watch follows the Pod from resourceVersion rv until the server ends the watch, and returns the
// last resourceVersion seen.
func (w *PodWatcher) watch(ctx context.Context, rv string) (string, error) {
	stream, err := w.client.Get().Namespace(w.namespace).Resource("pods").
		Param("fieldSelector", w.fieldSelector()).
		Param("watch", "true").
		Param("resourceVersion", rv).
		Param("allowWatchBookmarks", "true").
		Param("timeoutSeconds", strconv.Itoa(300)).
		Stream(ctx)
	if apierrors.IsGone(err) || apierrors.IsResourceExpired(err) {
		return "", errWatchExpired
	}
	if err != nil {
		return rv, fmt.Errorf("watching pods: %w", err)
	}
	defer stream.Close()
	dec := json.NewDecoder(stream)
	for !w.finished() {
		var ev watchEvent
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) {
				return rv, nil
			}
			return rv, fmt.Errorf("reading pod watch: %w", err)
		}
		switch ev.Type {
		case "ADDED", "MODIFIED", "DELETED":
			pod, err := decodePod(ev.Object)
			if err != nil {
				return rv, fmt.Errorf("decoding pod watch event: %w", err)
			}
			rv = pod.ResourceVersion
			w.observe(pod, ev.Type == "DELETED")
		case "BOOKMARK":
			var obj struct {
				Metadata metav1.ObjectMeta `json:"metadata"`
			}
			if err := json.Unmarshal(ev.Object, &obj); err == nil && obj.Metadata.ResourceVersion != "" {
				rv = obj.Metadata.ResourceVersion
			}
		case "ERROR":
			var st metav1.Status
			_ = json.Unmarshal(ev.Object, &st)
			if st.Code == http.StatusGone {
				return "", errWatchExpired
			}
			return rv, fmt.Errorf("pod watch error: %s", st.Message)
		}
	}
	return rv, nil
}

// sleepCtx waits d, or less if ctx ends first; it reports whether the whole wait passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
