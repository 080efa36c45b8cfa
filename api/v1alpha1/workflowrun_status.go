package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Labels the WorkflowRun controller puts on the StepRuns it makes, besides LabelWorkflowRun and
// LabelStep: which item of a fan-out, and which attempt, a StepRun is. The controller reads them
// back instead of parsing names, which may be hashed.
const (
	LabelItem    = "workflows.pnsflow.dev/item"
	LabelAttempt = "workflows.pnsflow.dev/attempt"
)

// Condition types on a WorkflowRun besides ConditionSucceeded.
const (
	// ConditionSuspended is True while spec.suspend holds back new StepRuns.
	ConditionSuspended = "Suspended"
)

// Reasons on a WorkflowRun.
const (
	ReasonPending = "Pending"
	// ReasonInvalidSpec: the definition cannot run (cycle, unknown reference, invalid CEL; on a
	// StepRun, an input artifact key outside its namespace); nothing was started.
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonStepFailed: a step failed after its retries.
	ReasonStepFailed = "StepFailed"
	// ReasonExitHandlerFailed: every step succeeded but onExit failed.
	ReasonExitHandlerFailed = "ExitHandlerFailed"
	// ReasonCancelled: spec.cancel stopped the run.
	ReasonCancelled = "Cancelled"
	// ReasonCancelling: spec.cancel is set and some StepRuns have not ended yet.
	ReasonCancelling = "Cancelling"
	// ReasonStepRunNameConflict: a StepRun name the run needs belongs to another object.
	ReasonStepRunNameConflict = "StepRunNameConflict"
	ReasonSuspended           = "Suspended"
	ReasonNotSuspended        = "NotSuspended"
)

// SetPhase sets phase, reason and message together with the Succeeded condition that mirrors
// them, as StepRunStatus.SetPhase does.
func (s *WorkflowRunStatus) SetPhase(phase WorkflowRunPhase, reason, message string, generation int64) {
	s.Phase = phase
	s.Reason = reason
	s.Message = truncate(message, MaxWorkflowMessageBytes)
	cond := metav1.ConditionUnknown
	switch phase {
	case WorkflowRunSucceeded:
		cond = metav1.ConditionTrue
	case WorkflowRunFailed, WorkflowRunError, WorkflowRunCancelled:
		cond = metav1.ConditionFalse
	}
	setSucceeded(&s.Conditions, cond, reason, string(phase), s.Message, generation, time.Time{})
}

// TruncateMessage cuts a message to n bytes without splitting a UTF-8 sequence.
func TruncateMessage(s string, n int) string { return truncate(s, n) }
