//go:build chaos

package chaos

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/podspec"
)

// tracker follows one namespace's StepRuns, Pods and WorkflowRuns through watches that outlive
// an API server outage: a broken watch is resumed from its last resourceVersion, and listed
// again when that is gone (a restarted API server's watch cache starts afresh). It remembers
// when each StepRun was first seen running and terminal, and every Pod UID ever seen for each
// StepRun, so a Pod made twice is caught even after the first was deleted.
type tracker struct {
	ns string

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	srs     map[string]*v1alpha1.StepRun
	seen    map[string]time.Time // first seen at all
	running map[string]time.Time // first seen Running (or already terminal)
	ended   map[string]time.Time // first seen terminal
	podUIDs map[string]map[types.UID]bool
	podAt   map[string]time.Time   // when a Pod of each StepRun was first seen
	pods    map[string]*corev1.Pod // the latest seen Pod of each StepRun
	wfrs    map[string]*v1alpha1.WorkflowRun
	// onRunning, when set, is called once per StepRun first seen Running, in a goroutine.
	onRunning func(*v1alpha1.StepRun)
	// rewatches counts watches resumed or listed again after they broke.
	rewatches int
}

// track starts following ns until the spec ends.
func track(ns string) *tracker {
	t := &tracker{
		ns: ns, changed: make(chan struct{}),
		srs: map[string]*v1alpha1.StepRun{}, seen: map[string]time.Time{}, running: map[string]time.Time{}, ended: map[string]time.Time{},
		podUIDs: map[string]map[types.UID]bool{}, podAt: map[string]time.Time{}, pods: map[string]*corev1.Pod{}, wfrs: map[string]*v1alpha1.WorkflowRun{},
	}
	tctx, stop := context.WithCancel(ctx)
	DeferCleanup(stop)
	go t.follow(tctx, &v1alpha1.StepRunList{}, nil, func(o client.Object) { t.stepRun(o.(*v1alpha1.StepRun)) })
	go t.follow(tctx, &corev1.PodList{}, client.HasLabels{v1alpha1.LabelStepRun}, func(o client.Object) { t.pod(o.(*corev1.Pod)) })
	go t.follow(tctx, &v1alpha1.WorkflowRunList{}, nil, func(o client.Object) {
		w := o.(*v1alpha1.WorkflowRun)
		t.update(func() { t.wfrs[w.Name] = w })
	})
	return t
}

// whenRunning sets the hook called (in a goroutine) for each StepRun first seen Running; set it
// before the runs are created.
func (t *tracker) whenRunning(f func(*v1alpha1.StepRun)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.onRunning = f
}

func (t *tracker) update(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f()
	close(t.changed)
	t.changed = make(chan struct{})
}

func (t *tracker) stepRun(sr *v1alpha1.StepRun) {
	now := time.Now()
	var hook func(*v1alpha1.StepRun)
	t.update(func() {
		t.srs[sr.Name] = sr
		if _, ok := t.seen[sr.Name]; !ok {
			t.seen[sr.Name] = now
		}
		if sr.Status.Phase == v1alpha1.StepRunRunning || sr.Status.Phase.IsTerminal() {
			if _, seen := t.running[sr.Name]; !seen {
				t.running[sr.Name] = now
				if sr.Status.Phase == v1alpha1.StepRunRunning {
					hook = t.onRunning
				}
			}
		}
		if _, seen := t.ended[sr.Name]; !seen && sr.Status.Phase.IsTerminal() {
			t.ended[sr.Name] = now
		}
	})
	if hook != nil {
		go hook(sr)
	}
}

func (t *tracker) pod(p *corev1.Pod) {
	name := p.Labels[v1alpha1.LabelStepRun]
	t.update(func() {
		if t.podUIDs[name] == nil {
			t.podUIDs[name] = map[types.UID]bool{}
		}
		t.podUIDs[name][p.UID] = true
		t.pods[name] = p
		if _, ok := t.podAt[name]; !ok {
			t.podAt[name] = time.Now()
		}
	})
}

// follow lists and watches one kind in the namespace until ctx ends, surviving outages.
func (t *tracker) follow(ctx context.Context, list client.ObjectList, sel client.ListOption, apply func(client.Object)) {
	opts := []client.ListOption{client.InNamespace(t.ns)}
	if sel != nil {
		opts = append(opts, sel)
	}
	rv, pause := "", newBackoff()
	for ctx.Err() == nil {
		if rv == "" {
			l := list.DeepCopyObject().(client.ObjectList)
			lctx, done := context.WithTimeout(ctx, 20*time.Second)
			err := k8s.List(lctx, l, opts...)
			done()
			if err != nil {
				pause.wait(ctx)
				continue
			}
			items, err := meta.ExtractList(l)
			if err != nil {
				panic(err)
			}
			for _, it := range items {
				apply(it.(client.Object))
			}
			rv = l.GetResourceVersion()
		}
		w, err := k8s.Watch(ctx, list.DeepCopyObject().(client.ObjectList), append(opts,
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}})...)
		if err != nil {
			if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
				rv = ""
			}
			t.update(func() { t.rewatches++ })
			pause.wait(ctx)
			continue
		}
		for ev := range w.ResultChan() {
			switch ev.Type {
			case watch.Error:
				rv = "" // most often 410 Gone: list again
			case watch.Bookmark:
				if o, ok := ev.Object.(client.Object); ok {
					rv = o.GetResourceVersion()
				}
			case watch.Added, watch.Modified, watch.Deleted:
				if o, ok := ev.Object.(client.Object); ok {
					rv = o.GetResourceVersion()
					if ev.Type != watch.Deleted {
						apply(o)
					}
					pause.reset()
				}
			}
			if rv == "" {
				break
			}
		}
		w.Stop()
		if ctx.Err() == nil {
			t.update(func() { t.rewatches++ })
			pause.wait(ctx)
		}
	}
}

// backoff spaces out reconnects to an API server that is down: 100 ms doubling to 2 s.
type backoff struct{ d time.Duration }

func newBackoff() *backoff { return &backoff{d: 100 * time.Millisecond} }
func (b *backoff) reset()  { b.d = 100 * time.Millisecond }
func (b *backoff) wait(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(b.d):
	}
	b.d = min(2*b.d, 2*time.Second)
}

// waitUntil blocks until cond (called with the tracker locked) holds, re-checking on every
// change the watches bring.
func (t *tracker) waitUntil(timeout time.Duration, what string, cond func() bool) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		t.mu.Lock()
		ok, ch := cond(), t.changed
		t.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-deadline.C:
			return fmt.Errorf("waiting %s for %s: %s", timeout, what, t.summary())
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// summary counts the StepRuns by phase, for timeout messages.
func (t *tracker) summary() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	by := map[v1alpha1.StepRunPhase]int{}
	for _, sr := range t.srs {
		by[sr.Status.Phase]++
	}
	return fmt.Sprintf("StepRuns by phase %v, watches resumed %d times", by, t.rewatches)
}

// countLocked counts the named StepRuns that pass f.
func (t *tracker) countLocked(names []string, f func(*v1alpha1.StepRun) bool) int {
	n := 0
	for _, name := range names {
		if sr := t.srs[name]; sr != nil && f(sr) {
			n++
		}
	}
	return n
}

func isRunning(sr *v1alpha1.StepRun) bool  { return sr.Status.Phase == v1alpha1.StepRunRunning }
func isTerminal(sr *v1alpha1.StepRun) bool { return sr.Status.Phase.IsTerminal() }

// runs of one batch: created with at most inFlight unfinished at a time.
type batch struct {
	names []string
	err   chan error
}

// start creates runs in order, at most inFlight of them unfinished at once, and returns at
// once. A create is retried until it lands (AlreadyExists means an earlier try did), so the
// batch rides out an API outage.
func (t *tracker) start(runs []*v1alpha1.StepRun, inFlight int) *batch {
	b := &batch{err: make(chan error, 1)}
	for _, sr := range runs {
		b.names = append(b.names, sr.Name)
	}
	go func() {
		defer GinkgoRecover()
		for i, sr := range runs {
			created := b.names[:i]
			err := t.waitUntil(10*time.Minute, "a free slot", func() bool {
				return len(created)-t.countLocked(created, isTerminal) < inFlight
			})
			if err == nil {
				err = createRetrying(sr)
			}
			if err != nil {
				b.err <- err
				return
			}
		}
		b.err <- nil
	}()
	return b
}

// createRetrying creates obj, retrying transient failures (an API server down or starting) for
// up to five minutes.
func createRetrying(obj client.Object) error {
	pause := newBackoff()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		cctx, done := context.WithTimeout(ctx, 15*time.Second)
		err := k8s.Create(cctx, obj)
		done()
		switch {
		case err == nil, apierrors.IsAlreadyExists(err):
			return nil
		case apierrors.IsInvalid(err), apierrors.IsBadRequest(err), errors.Is(err, context.Canceled) && ctx.Err() != nil:
			return fmt.Errorf("creating %s: %w", obj.GetName(), err)
		case time.Now().After(deadline):
			return fmt.Errorf("creating %s: still failing after 5 min: %w", obj.GetName(), err)
		}
		pause.wait(ctx)
	}
}

// finish waits until every run of b was created and is terminal.
func (t *tracker) finish(b *batch, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	select {
	case err := <-b.err:
		if err != nil {
			return err
		}
	case <-time.After(timeout):
		return fmt.Errorf("creating the runs took over %s: %s", timeout, t.summary())
	}
	return t.waitUntil(time.Until(deadline), "every StepRun terminal", func() bool {
		return t.countLocked(b.names, isTerminal) == len(b.names)
	})
}

// countWorkflowLocked counts the StepRuns of WorkflowRun wf that pass f.
func (t *tracker) countWorkflowLocked(wf string, f func(*v1alpha1.StepRun) bool) int {
	n := 0
	for _, sr := range t.srs {
		if sr.Labels[v1alpha1.LabelWorkflowRun] == podspec.LabelValue(wf) && f(sr) {
			n++
		}
	}
	return n
}

// workflowEnded waits until the named WorkflowRun is terminal.
func (t *tracker) workflowEnded(name string, timeout time.Duration) error {
	return t.waitUntil(timeout, "WorkflowRun "+name+" terminal", func() bool {
		w := t.wfrs[name]
		return w != nil && w.Status.Phase.IsTerminal()
	})
}

// inFlightAt says whether the named StepRun existed and had not ended at time at.
func (t *tracker) inFlightAt(name string, at time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	seen, ok := t.seen[name]
	end := t.ended[name]
	return ok && seen.Before(at) && (end.IsZero() || end.After(at))
}

// lastEnded is the latest time one of the named StepRuns was first seen terminal.
func (t *tracker) lastEnded(names []string) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	var last time.Time
	for _, n := range names {
		if e := t.ended[n]; e.After(last) {
			last = e
		}
	}
	return last
}

// firstPodAfter is the earliest time a StepRun's first Pod was seen after at (zero if none):
// only a manager at work makes Pods.
func (t *tracker) firstPodAfter(at time.Time) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	var first time.Time
	for _, e := range t.podAt {
		if e.After(at) && (first.IsZero() || e.Before(first)) {
			first = e
		}
	}
	return first
}

// endedAt is when the named StepRun was first seen terminal.
func (t *tracker) endedAt(name string) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ended[name]
}

// podsSeen is how many distinct Pods were ever seen for the named StepRun.
func (t *tracker) podsSeen(name string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.podUIDs[name])
}

// latestPod is the last seen Pod of the named StepRun (nil if none was seen).
func (t *tracker) latestPod(name string) *corev1.Pod {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pods[name]
}

// stepRunNames names every StepRun the tracker saw in the namespace.
func (t *tracker) stepRunNames() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var names []string
	for n := range t.srs {
		names = append(names, n)
	}
	return names
}
