package workflowrun

import (
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/testutil"
	"github.com/pnsflow/pnsflow/internal/workflow/template"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func newRun(w *testutil.WorkflowRunWrapper) *v1alpha1.WorkflowRun {
	wfr := w.UID("uid-1").Obj()
	wfr.Generation = 1
	return wfr
}

// kid is a StepRun in a given state, as the cache would show it.
type kid struct {
	step     string
	item     int // -1: no fan-out
	attempt  int
	phase    v1alpha1.StepRunPhase
	exitCode *int32
	params   map[string]string
	result   *string
	finished time.Time
	reason   string
	// mainStarted, when set, is the MainStarted condition's status.
	mainStarted metav1.ConditionStatus
}

func code(c int32) *int32 { return &c }

func (k kid) obj(wfr *v1alpha1.WorkflowRun) v1alpha1.StepRun {
	labels := map[string]string{v1alpha1.LabelStep: k.step, v1alpha1.LabelAttempt: strconv.Itoa(k.attempt)}
	if k.item >= 0 {
		labels[v1alpha1.LabelItem] = strconv.Itoa(k.item)
	}
	sr := v1alpha1.StepRun{ObjectMeta: metav1.ObjectMeta{Name: StepRunName(wfr.Name, k.step, k.item, k.attempt),
		Namespace: wfr.Namespace, Labels: labels,
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(wfr, v1alpha1.GroupVersion.WithKind("WorkflowRun"))}}}
	sr.Status.Phase, sr.Status.ExitCode, sr.Status.Reason = k.phase, k.exitCode, k.reason
	if k.mainStarted != "" {
		sr.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionMainStarted, Status: k.mainStarted, Reason: v1alpha1.ReasonMainNeverStarted}}
		if k.mainStarted == metav1.ConditionTrue {
			sr.Status.Conditions[0].Reason = v1alpha1.ReasonMainStarted
		}
	}
	if k.phase.IsTerminal() {
		f := k.finished
		if f.IsZero() {
			f = t0
		}
		sr.Status.FinishedAt = &metav1.Time{Time: f}
	}
	if k.params != nil || k.result != nil {
		sr.Status.Outputs = &v1alpha1.StepRunOutputs{Result: k.result}
		for n, v := range k.params {
			sr.Status.Outputs.Parameters = append(sr.Status.Outputs.Parameters, v1alpha1.OutputParameterValue{Name: n, Value: v})
		}
	}
	return sr
}

func ok(step string, item int) kid {
	return kid{step: step, item: item, phase: v1alpha1.StepRunSucceeded, exitCode: code(0)}
}

func failed(step string, item, attempt int) kid {
	return kid{step: step, item: item, attempt: attempt, phase: v1alpha1.StepRunFailed, exitCode: code(1)}
}

// neverStarted is an attempt the StepRun controller ended because the infrastructure failed it
// before main started.
func neverStarted(step string, item, attempt int) kid {
	return kid{step: step, item: item, attempt: attempt, phase: v1alpha1.StepRunError,
		reason: v1alpha1.ReasonExecutorLost, mainStarted: metav1.ConditionFalse}
}

// lost is an attempt whose executor was lost after main started.
func lost(step string, item, attempt int) kid {
	return kid{step: step, item: item, attempt: attempt, phase: v1alpha1.StepRunError,
		reason: v1alpha1.ReasonExecutorLost, mainStarted: metav1.ConditionTrue}
}

func running(step string, item int) kid {
	return kid{step: step, item: item, phase: v1alpha1.StepRunRunning}
}

// eval evaluates a run whose StepRuns are kids, at now.
func eval(t *testing.T, wfr *v1alpha1.WorkflowRun, now time.Time, kids ...kid) *evaluation {
	t.Helper()
	return evalExpecting(t, wfr, now, nil, kids...)
}

func evalExpecting(t *testing.T, wfr *v1alpha1.WorkflowRun, now time.Time, expected map[string]expectation, kids ...kid) *evaluation {
	t.Helper()
	plan, err := Compile(wfr)
	if err != nil {
		t.Fatalf("compiling: %v", err)
	}
	list := make([]v1alpha1.StepRun, len(kids))
	for i, k := range kids {
		list[i] = k.obj(wfr)
	}
	return evaluate(&input{run: wfr, plan: plan, kids: sortChildren(list, expected),
		clock: clocktesting.NewFakePassiveClock(now),
		resolve: func(sp *StepPlan, scope func() *template.Scope) *resolution {
			return resolveStep(sp, scope())
		}})
}

// started lists the StepRun names an evaluation starts.
func started(wfr *v1alpha1.WorkflowRun, ev *evaluation) []string {
	var out []string
	for _, s := range ev.starts {
		out = append(out, StepRunName(wfr.Name, s.step.Name, s.item, s.attempt))
	}
	return out
}

func phases(ev *evaluation) map[string]v1alpha1.WorkflowStepPhase {
	out := map[string]v1alpha1.WorkflowStepPhase{}
	for _, se := range ev.steps {
		out[se.plan.Name] = se.phase
	}
	return out
}

func fakeClock(now time.Time) *clocktesting.FakePassiveClock {
	return clocktesting.NewFakePassiveClock(now)
}

func typesKey(name string) types.NamespacedName {
	return types.NamespacedName{Namespace: "ns", Name: name}
}
