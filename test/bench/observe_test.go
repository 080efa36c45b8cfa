//go:build bench

package bench

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

// statusSample is one observed update of the run.
type statusSample struct {
	at time.Time
	// accounted counts the items the status shows as started; done the finished ones.
	accounted, done int32
	progress        string
	phase           v1alpha1.WorkflowRunPhase
}

// observation is what one run showed.
type observation struct {
	n                              int
	t0                             time.Time
	allStepRuns, allPods, terminal time.Time
	executorsStart, executorsDone  time.Time
	stepRunSeen                    []time.Time
	completions                    []time.Time
	samples                        []statusSample
	final                          *v1alpha1.WorkflowRun
	failures                       int
	// cpuAtPods is the processes' CPU time when the last Pod appeared; cpuAtSucceeded when
	// the run was seen Succeeded.
	cpuAtPods, cpuAtSucceeded map[string]time.Duration
	// profileChunks are the kube-apiserver CPU profiles of the fan-out, when asked for.
	profileChunks []string
	// podLag is, per item, the time from its StepRun appearing to its Pod appearing, sorted.
	podLag []time.Duration
}

// seenSet records when names were first seen and closes all when there are n.
type seenSet struct {
	mu   sync.Mutex
	n    int
	seen map[string]time.Time
	all  chan struct{}
	at   time.Time
}

func newSeenSet(n int) *seenSet {
	return &seenSet{n: n, seen: make(map[string]time.Time, n), all: make(chan struct{})}
}

func (s *seenSet) add(obj any) {
	now := time.Now()
	m, err := metaOf(obj)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[m.GetName()]; ok {
		return
	}
	s.seen[m.GetName()] = now
	if len(s.seen) == s.n {
		s.at = now
		close(s.all)
	}
}

// snapshot copies what was seen (the informer may still deliver).
func (s *seenSet) snapshot() map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.seen)
}

func metaOf(obj any) (metav1.Object, error) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%T has no metadata", obj)
	}
	return m, nil
}

// follow records every update of the run until it is terminal, re-watching from the last
// resourceVersion if the API server closes the watch.
func (o *observation) follow(ctx context.Context, k8s client.WithWatch, ns string, w watch.Interface) error {
	rv := ""
	for {
		for ev := range w.ResultChan() {
			now := time.Now()
			wfr, ok := ev.Object.(*v1alpha1.WorkflowRun)
			if !ok {
				if ev.Type == watch.Error {
					return fmt.Errorf("watching the run: %v", ev.Object)
				}
				continue
			}
			rv = wfr.ResourceVersion
			c := wfr.Status.Counts
			s := statusSample{at: now, accounted: c.Pending + c.Running + c.Succeeded + c.Failed + c.Error + c.Skipped,
				done: c.Succeeded + c.Failed + c.Error + c.Skipped, progress: wfr.Status.Progress, phase: wfr.Status.Phase}
			if k := len(o.samples); k == 0 || o.samples[k-1].accounted != s.accounted || o.samples[k-1].done != s.done ||
				o.samples[k-1].phase != s.phase {
				o.samples = append(o.samples, s)
			}
			if wfr.Status.Phase.IsTerminal() {
				o.terminal, o.final = now, wfr
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var err error
		w, err = k8s.Watch(ctx, &v1alpha1.WorkflowRunList{}, client.InNamespace(ns),
			client.MatchingFields{"metadata.name": runName}, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}})
		if err != nil {
			return fmt.Errorf("re-watching the run: %w", err)
		}
	}
}

// statusAges measures how stale the run's status got. For the k-th StepRun to appear, the
// time until the status first counted k started items; for the k-th item to finish (its
// executor's terminal report returned), the time until status.progress first counted k done.
// The largest of each is reported. progressGap is the literal longest interval between two
// consecutive changes of status.progress from the first completion to the end.
func (o *observation) statusAges() (fanOut, done, progressGap time.Duration, updates int) {
	lag := func(events []time.Time, value func(statusSample) int32) time.Duration {
		worst, j := time.Duration(0), 0
		for k, at := range events {
			for j < len(o.samples) && int(value(o.samples[j])) < k+1 {
				j++
			}
			reflected := o.terminal
			if j < len(o.samples) {
				reflected = o.samples[j].at
			}
			worst = max(worst, reflected.Sub(at))
		}
		return worst
	}
	fanOut = lag(o.stepRunSeen, func(s statusSample) int32 { return s.accounted })
	done = lag(o.completions, func(s statusSample) int32 { return s.done })
	var last time.Time
	for i, s := range o.samples {
		if s.done == 0 || (i > 0 && o.samples[i-1].progress == s.progress) {
			continue
		}
		if !last.IsZero() {
			progressGap = max(progressGap, s.at.Sub(last))
		}
		last = s.at
	}
	return fanOut, done, progressGap, len(o.samples)
}
