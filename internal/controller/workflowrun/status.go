package workflowrun

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

// nextStatus is the run's status after this reconcile: counts and one summary per step, never
// anything per item, so its size does not grow with the fan-out.
func nextStatus(wfr *v1alpha1.WorkflowRun, ev *evaluation, now time.Time) v1alpha1.WorkflowRunStatus {
	st := *wfr.Status.DeepCopy()
	st.ObservedGeneration = wfr.Generation
	st.Counts = v1alpha1.StepCounts{}
	st.Steps = make([]v1alpha1.StepSummary, 0, len(ev.steps))
	for _, se := range ev.steps {
		addCounts(&st.Counts, &se.counts)
		st.Steps = append(st.Steps, summary(se))
	}
	done := st.Counts.Succeeded + st.Counts.Failed + st.Counts.Error + st.Counts.Skipped
	st.Progress = fmt.Sprintf("%d/%d", done, st.Counts.Total)

	o := ev.outcome
	switch {
	case o.phase != "":
		if st.StartedAt == nil {
			st.StartedAt = &metav1.Time{Time: now}
		}
		st.FinishedAt = &metav1.Time{Time: now}
		st.Duration = v1alpha1.FormatDuration(now.Sub(st.StartedAt.Time))
		st.SetPhase(o.phase, o.reason, o.message, wfr.Generation)
	case ev.started:
		if st.StartedAt == nil {
			st.StartedAt = &metav1.Time{Time: now}
		}
		reason, message := o.reason, o.message
		if reason == "" {
			reason, message = v1alpha1.ReasonRunning, ev.gate.why()
		}
		st.SetPhase(v1alpha1.WorkflowRunRunning, reason, message, wfr.Generation)
	default:
		st.SetPhase(v1alpha1.WorkflowRunPending, v1alpha1.ReasonPending, ev.gate.why(), wfr.Generation)
	}
	setSuspended(&st, wfr)
	return st
}

// invalidStatus ends a run whose definition cannot run; nothing was started.
func invalidStatus(wfr *v1alpha1.WorkflowRun, err error, now time.Time) v1alpha1.WorkflowRunStatus {
	st := *wfr.Status.DeepCopy()
	st.ObservedGeneration = wfr.Generation
	st.StartedAt, st.FinishedAt = &metav1.Time{Time: now}, &metav1.Time{Time: now}
	st.Duration = v1alpha1.FormatDuration(0)
	st.SetPhase(v1alpha1.WorkflowRunError, v1alpha1.ReasonInvalidSpec, "invalid WorkflowRun: "+err.Error(), wfr.Generation)
	setSuspended(&st, wfr)
	return st
}

func setSuspended(st *v1alpha1.WorkflowRunStatus, wfr *v1alpha1.WorkflowRun) {
	c := metav1.Condition{Type: v1alpha1.ConditionSuspended, Status: metav1.ConditionFalse,
		Reason: v1alpha1.ReasonNotSuspended, ObservedGeneration: wfr.Generation}
	if wfr.Spec.Suspend && !st.Phase.IsTerminal() {
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, v1alpha1.ReasonSuspended, "spec.suspend holds back new StepRuns"
	}
	meta.SetStatusCondition(&st.Conditions, c)
}

func summary(se *stepEval) v1alpha1.StepSummary {
	s := v1alpha1.StepSummary{Name: se.plan.Name, Phase: se.phase,
		Message: v1alpha1.TruncateMessage(se.message, v1alpha1.MaxStepMessageBytes)}
	if se.plan.FanOut {
		c := se.counts
		s.Items = &c
	} else {
		s.Attempts = se.attempts
	}
	if a := se.shown; a != nil {
		s.StepRun = a.name
		if a.sr != nil {
			s.ExitCode = a.sr.Status.ExitCode
		}
	}
	return s
}

func addCounts(sum, c *v1alpha1.StepCounts) {
	sum.Total += c.Total
	sum.Pending += c.Pending
	sum.Running += c.Running
	sum.Succeeded += c.Succeeded
	sum.Failed += c.Failed
	sum.Error += c.Error
	sum.Skipped += c.Skipped
	sum.Omitted += c.Omitted
	sum.Retries += c.Retries
}

// urgent reports a change people or other steps act on — the phase, a condition, a step's
// phase, a new generation — which is written at once; counts and progress alone are
// rate-limited.
func urgent(old, next *v1alpha1.WorkflowRunStatus) bool {
	if old.Phase != next.Phase || old.Reason != next.Reason || old.ObservedGeneration != next.ObservedGeneration ||
		len(old.Steps) != len(next.Steps) || !equality.Semantic.DeepEqual(old.Conditions, next.Conditions) {
		return true
	}
	for i := range old.Steps {
		if old.Steps[i].Phase != next.Steps[i].Phase {
			return true
		}
	}
	return false
}
