package workflowrun

import (
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

func TestBudget(t *testing.T) {
	five := int32(5)
	cases := []struct {
		name   string
		p      *int32
		active int
		want   int
	}{
		{"unlimited", nil, 1000, math.MaxInt},
		{"room left", &five, 3, 2},
		{"full", &five, 5, 0},
		{"over (parallelism lowered)", &five, 7, 0},
	}
	for _, tc := range cases {
		if got := budget(tc.p, tc.active); got != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestAdmit(t *testing.T) {
	c := []start{{item: 0}, {item: 1}, {item: 2}}
	cases := []struct {
		name         string
		open         bool
		n            int
		wantAdmitted int
		wantDeferred int
	}{
		{"all fit", true, 5, 3, 0},
		{"budget cuts", true, 2, 2, 1},
		{"no budget", true, 0, 0, 3},
		{"gate closed", false, 5, 0, 3},
	}
	for _, tc := range cases {
		a, d := admit(c, tc.open, tc.n)
		if len(a) != tc.wantAdmitted || d != tc.wantDeferred {
			t.Errorf("%s: admitted %d deferred %d", tc.name, len(a), d)
		}
	}
}

func TestGate(t *testing.T) {
	cases := []struct {
		name                 string
		spec                 v1alpha1.WorkflowRunSpec
		failure              string
		steps, exit, forGood bool
	}{
		{"open", v1alpha1.WorkflowRunSpec{}, "", true, true, false},
		{"a failure without failFast", v1alpha1.WorkflowRunSpec{}, "x failed", true, true, false},
		{"failFast after a failure", v1alpha1.WorkflowRunSpec{FailFast: true}, "x failed", false, true, true},
		{"failFast without failure", v1alpha1.WorkflowRunSpec{FailFast: true}, "", true, true, false},
		{"suspended", v1alpha1.WorkflowRunSpec{Suspend: true}, "", false, false, false},
		{"cancelled", v1alpha1.WorkflowRunSpec{Cancel: true}, "", false, false, true},
	}
	for _, tc := range cases {
		g := newGate(&tc.spec, tc.failure)
		if g.steps() != tc.steps || g.exit() != tc.exit || g.closedForGood() != tc.forGood {
			t.Errorf("%s: steps %v exit %v forGood %v", tc.name, g.steps(), g.exit(), g.closedForGood())
		}
	}
}

func TestDecideOutcome(t *testing.T) {
	exitRunning := &stepEval{plan: &StepPlan{Name: "exit"}, phase: v1alpha1.StepRunning, active: 1}
	exitOK := &stepEval{plan: &StepPlan{Name: "exit"}, phase: v1alpha1.StepSucceeded}
	exitFailed := &stepEval{plan: &StepPlan{Name: "exit"}, phase: v1alpha1.StepFailed, failed: true, message: "boom"}
	cases := []struct {
		name    string
		cancel  bool
		active  int
		settled bool
		failure string
		exit    *stepEval
		want    outcome
	}{
		{name: "running", active: 2},
		{name: "succeeded", settled: true, want: outcome{phase: v1alpha1.WorkflowRunSucceeded, reason: v1alpha1.ReasonSucceeded}},
		{name: "failed", settled: true, failure: "step x failed",
			want: outcome{phase: v1alpha1.WorkflowRunFailed, reason: v1alpha1.ReasonStepFailed, message: "step x failed"}},
		{name: "waits for onExit", settled: true, failure: "f", exit: exitRunning},
		{name: "onExit done after a failure", settled: true, failure: "f", exit: exitOK,
			want: outcome{phase: v1alpha1.WorkflowRunFailed, reason: v1alpha1.ReasonStepFailed, message: "f"}},
		{name: "onExit failed after success", settled: true, exit: exitFailed,
			want: outcome{phase: v1alpha1.WorkflowRunFailed, reason: v1alpha1.ReasonExitHandlerFailed, message: `onExit step "exit" failed: boom`}},
		{name: "cancelling", cancel: true, active: 3,
			want: outcome{reason: v1alpha1.ReasonCancelling, message: "cancelling: 3 StepRuns have not ended"}},
		{name: "cancelled", cancel: true,
			want: outcome{phase: v1alpha1.WorkflowRunCancelled, reason: v1alpha1.ReasonCancelled, message: "the run was cancelled"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := decideOutcome(tc.cancel, tc.active, tc.settled, tc.failure, tc.exit)
			if d := cmp.Diff(tc.want, got, cmp.AllowUnexported(outcome{})); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}
