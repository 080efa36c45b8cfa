package workflowrun

import (
	"fmt"
	"math"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

// gate says whether new StepRuns may start. Suspend holds them back for a while; cancel and
// failFast stop them for good.
type gate struct {
	suspended bool
	cancelled bool
	// failed names the failure that closed the gate under failFast.
	failed string
}

// newGate applies suspend, cancel and failFast; failure is the run's first step failure, if any.
func newGate(spec *v1alpha1.WorkflowRunSpec, failure string) gate {
	g := gate{suspended: spec.Suspend, cancelled: spec.Cancel}
	if spec.FailFast {
		g.failed = failure
	}
	return g
}

// steps reports whether a step's items (including retries) may start.
func (g gate) steps() bool { return !g.suspended && !g.cancelled && g.failed == "" }

// exit reports whether onExit may start: failFast does not stop it, that is what it is for.
func (g gate) exit() bool { return !g.suspended && !g.cancelled }

// closedForGood reports whether nothing more of the steps will ever start.
func (g gate) closedForGood() bool { return g.cancelled || g.failed != "" }

// why explains a closed gate for people.
func (g gate) why() string {
	switch {
	case g.cancelled:
		return "the run was cancelled"
	case g.failed != "":
		return "not started: failFast after " + g.failed
	case g.suspended:
		return "the run is suspended"
	}
	return ""
}

// budget is how many StepRuns may start now under spec.parallelism, given how many have not
// ended.
func budget(parallelism *int32, active int) int {
	if parallelism == nil {
		return math.MaxInt
	}
	return max(int(*parallelism)-active, 0)
}

// admit takes candidates in order (steps dependencies first, items by index) up to the budget.
func admit(candidates []start, open bool, n int) (admitted []start, deferred int) {
	if !open {
		return nil, len(candidates)
	}
	if n >= len(candidates) {
		return candidates, 0
	}
	return candidates[:n], len(candidates) - n
}

// outcome is the run's end, decided once nothing runs: main is the steps' result (Succeeded or
// Failed), exit onExit's phase when there is one. An empty phase means "not over".
type outcome struct {
	phase           v1alpha1.WorkflowRunPhase
	reason, message string
}

// decideOutcome is the run's phase from its parts:
//   - cancelled: Cancelled once nothing runs, Running (Cancelling) until then;
//   - steps not settled: not over;
//   - onExit declared and not finished: not over;
//   - otherwise the steps' result, made Failed by a failed onExit.
func decideOutcome(cancel bool, active int, settled bool, failure string, exit *stepEval) outcome {
	switch {
	case cancel && active > 0:
		return outcome{reason: v1alpha1.ReasonCancelling, message: fmt.Sprintf("cancelling: %d StepRuns have not ended", active)}
	case cancel:
		return outcome{phase: v1alpha1.WorkflowRunCancelled, reason: v1alpha1.ReasonCancelled, message: "the run was cancelled"}
	case !settled:
		return outcome{}
	case exit != nil && !exit.phase.IsFinal():
		return outcome{}
	case failure != "":
		return outcome{phase: v1alpha1.WorkflowRunFailed, reason: v1alpha1.ReasonStepFailed, message: failure}
	case exit != nil && exit.failed:
		return outcome{phase: v1alpha1.WorkflowRunFailed, reason: v1alpha1.ReasonExitHandlerFailed,
			message: fmt.Sprintf("onExit step %q failed: %s", exit.plan.Name, exit.message)}
	}
	return outcome{phase: v1alpha1.WorkflowRunSucceeded, reason: v1alpha1.ReasonSucceeded}
}
