// Package runview turns pnsflow objects into the tree package's Model. A WorkflowRun's status
// already aggregates its items (counts, one summary per step); what it lacks — when steps ran
// and which items failed — comes from its StepRuns, folded into a Workflow whose memory is
// bounded by the number of steps, never the number of items: each StepRun seen updates a few
// fields of its step and is dropped.
package runview

import (
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/cli/tree"
	"github.com/pnsflow/pnsflow/internal/workflow/dag"
)

// MaxFailedItems is how many failed items of one fan-out are remembered (and listed); the
// status's counts say how many more there are.
const MaxFailedItems = 20

// Workflow folds a WorkflowRun's StepRuns into per-step facts. The zero value is not usable:
// make one with NewWorkflow.
type Workflow struct {
	// owner is the run's UID: StepRuns of an earlier run of the same name are not its own.
	owner types.UID
	// keepOutputs keeps each single step's outputs (for get); watch does not need them.
	keepOutputs bool
	steps       map[string]*stepFacts
}

type stepFacts struct {
	first, last time.Time // the earliest start and the latest finish among its StepRuns
	latest      *attempt  // a single step's latest attempt
	failed      map[int]failedItem
}

type attempt struct {
	n                 int
	phase             v1alpha1.StepRunPhase
	exitCode          *int32
	started, finished *metav1.Time
	outputs           []tree.Output
}

type failedItem struct {
	attempt int
	item    tree.Item
}

// NewWorkflow folds the StepRuns of the run whose UID is owner.
func NewWorkflow(owner types.UID, keepOutputs bool) *Workflow {
	return &Workflow{owner: owner, keepOutputs: keepOutputs, steps: map[string]*stepFacts{}}
}

// Observe folds one StepRun in. Seeing the same StepRun again (a re-list after a watch
// expired) changes nothing it should not.
func (w *Workflow) Observe(sr *v1alpha1.StepRun) {
	if ref := metav1.GetControllerOf(sr); w.owner != "" && (ref == nil || ref.UID != w.owner) {
		return
	}
	name := sr.Labels[v1alpha1.LabelStep]
	if name == "" {
		return
	}
	f := w.steps[name]
	if f == nil {
		f = &stepFacts{}
		w.steps[name] = f
	}
	st := &sr.Status
	if st.StartedAt != nil && (f.first.IsZero() || st.StartedAt.Time.Before(f.first)) {
		f.first = st.StartedAt.Time
	}
	if st.FinishedAt != nil && st.FinishedAt.Time.After(f.last) {
		f.last = st.FinishedAt.Time
	}
	n := v1alpha1.IntLabel(sr.Labels, v1alpha1.LabelAttempt, 0)
	item := v1alpha1.IntLabel(sr.Labels, v1alpha1.LabelItem, -1)
	if item < 0 {
		if f.latest == nil || n >= f.latest.n {
			a := &attempt{n: n, phase: st.Phase, exitCode: st.ExitCode, started: st.StartedAt, finished: st.FinishedAt}
			if w.keepOutputs {
				a.outputs = Outputs(st.Outputs)
			}
			f.latest = a
		}
		return
	}
	w.observeItem(f, sr, item, n)
}

// observeItem remembers an item whose latest attempt failed, and forgets it once a later
// attempt (a retry) appears.
func (w *Workflow) observeItem(f *stepFacts, sr *v1alpha1.StepRun, item, n int) {
	old, known := f.failed[item]
	if known && old.attempt > n {
		return
	}
	st := &sr.Status
	if st.Phase != v1alpha1.StepRunFailed && st.Phase != v1alpha1.StepRunError {
		if known && n > old.attempt {
			delete(f.failed, item)
		}
		return
	}
	if !known && len(f.failed) >= MaxFailedItems {
		return
	}
	if f.failed == nil {
		f.failed = map[int]failedItem{}
	}
	it := tree.Item{Index: item, StepRun: sr.Name, Phase: string(st.Phase), Reason: st.Reason, ExitCode: st.ExitCode}
	if st.StartedAt != nil && st.FinishedAt != nil {
		it.Duration, it.HasDuration = st.FinishedAt.Sub(st.StartedAt.Time), true
	}
	f.failed[item] = failedItem{attempt: n, item: it}
}

// Order returns the run's steps in DAG order with each one's depth, onExit last. A definition
// the DAG cannot order (a cycle: the run then ends Error) keeps its declared order, flat.
func Order(spec *v1alpha1.WorkflowRunSpec) (names []string, level map[string]int) {
	nodes := make([]dag.Node, len(spec.Steps))
	deps := map[string][]string{}
	for i, s := range spec.Steps {
		nodes[i] = dag.Node{Name: s.Name, DependsOn: s.DependsOn}
		deps[s.Name] = s.DependsOn
	}
	level = map[string]int{}
	g, err := dag.New(nodes)
	if err != nil {
		for _, s := range spec.Steps {
			names = append(names, s.Name)
		}
		return names, level
	}
	names = g.Order()
	for _, n := range names {
		for _, d := range deps[n] {
			level[n] = max(level[n], level[d]+1)
		}
	}
	return names, level
}

// Model is the run as the tree shows it at now.
func (w *Workflow) Model(wfr *v1alpha1.WorkflowRun, now time.Time) tree.Model {
	st := &wfr.Status
	m := tree.Model{Kind: "WorkflowRun", Namespace: wfr.Namespace, Name: wfr.Name,
		Phase: string(st.Phase), Reason: st.Reason, Message: st.Message,
		Done:  st.Counts.Succeeded + st.Counts.Failed + st.Counts.Error + st.Counts.Skipped,
		Total: st.Counts.Total}
	if m.Phase == "" {
		m.Phase = tree.Pending
	}
	terminal := st.Phase.IsTerminal()
	m.Suspended = wfr.Spec.Suspend && !terminal
	m.Cancelling = wfr.Spec.Cancel && !terminal
	start := wfr.CreationTimestamp.Time
	if st.StartedAt != nil {
		start = st.StartedAt.Time
	}
	switch {
	case terminal && st.FinishedAt != nil:
		m.Elapsed, m.HasElapsed, m.Finished = st.FinishedAt.Sub(start), true, true
	case !terminal && !start.IsZero():
		m.Elapsed, m.HasElapsed = now.Sub(start), true
	}

	summaries := map[string]*v1alpha1.StepSummary{}
	for i := range st.Steps {
		summaries[st.Steps[i].Name] = &st.Steps[i]
	}
	specs := map[string]*v1alpha1.WorkflowStep{}
	for i := range wfr.Spec.Steps {
		specs[wfr.Spec.Steps[i].Name] = &wfr.Spec.Steps[i]
	}
	names, level := Order(&wfr.Spec)
	for _, n := range names {
		s := w.step(specs[n], summaries[n], now)
		s.Level = level[n]
		m.Steps = append(m.Steps, s)
	}
	if ex := wfr.Spec.OnExit; ex != nil {
		s := w.step(ex, summaries[ex.Name], now)
		s.OnExit, s.After = true, nil
		m.Steps = append(m.Steps, s)
	}
	return m
}

func (w *Workflow) step(spec *v1alpha1.WorkflowStep, sum *v1alpha1.StepSummary, now time.Time) tree.Step {
	s := tree.Step{Name: spec.Name, After: spec.DependsOn, Phase: tree.Pending}
	fanOut := len(spec.WithItems) > 0 || spec.WithParam != "" || spec.WithSequence != nil
	if sum != nil {
		if sum.Phase != "" {
			s.Phase = string(sum.Phase)
		}
		s.ExitCode, s.Attempts, s.Message = sum.ExitCode, sum.Attempts, sum.Message
		if sum.Items != nil {
			fanOut = true
			c := *sum.Items
			s.Items = &tree.Counts{Total: c.Total, Pending: c.Pending, Running: c.Running, Succeeded: c.Succeeded,
				Failed: c.Failed, Error: c.Error, Skipped: c.Skipped, Omitted: c.Omitted, Retries: c.Retries}
		}
	}
	if fanOut && s.Items == nil {
		s.Items = &tree.Counts{}
	}
	f := w.steps[spec.Name]
	if f == nil {
		return s
	}
	final := v1alpha1.WorkflowStepPhase(s.Phase).IsFinal()
	if fanOut {
		if !f.first.IsZero() {
			endAt := now
			if final {
				endAt = f.last
			}
			if !endAt.Before(f.first) {
				s.Duration, s.HasDuration = endAt.Sub(f.first), true
			}
		}
		for _, fi := range f.failed {
			s.Failed = append(s.Failed, fi.item)
		}
		slices.SortFunc(s.Failed, func(a, b tree.Item) int { return a.Index - b.Index })
		s.MoreFailed = max(0, s.Items.Failed+s.Items.Error-int32(len(s.Failed)))
		return s
	}
	if a := f.latest; a != nil {
		switch {
		case a.started != nil && a.finished != nil:
			s.Duration, s.HasDuration = a.finished.Sub(a.started.Time), true
		case a.started != nil && !a.phase.IsTerminal():
			s.Duration, s.HasDuration = now.Sub(a.started.Time), true
		}
		if s.ExitCode == nil {
			s.ExitCode = a.exitCode
		}
		s.Outputs = a.outputs
	}
	return s
}
