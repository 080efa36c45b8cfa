package exitcode

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

func code(n int32) *int32 { return &n }

func TestForStepRunPassesMainsExitCodeThroughLikeDockerRun(t *testing.T) {
	cases := []struct {
		name     string
		st       v1alpha1.StepRunStatus
		want     int
		wantWhy  bool
		whyMatch string
	}{
		{"succeeded exits 0", v1alpha1.StepRunStatus{Phase: v1alpha1.StepRunSucceeded, ExitCode: code(0), Reason: v1alpha1.ReasonSucceeded}, 0, false, ""},
		{"main's non-zero exit is the exit code", v1alpha1.StepRunStatus{Phase: v1alpha1.StepRunFailed, ExitCode: code(3), Reason: v1alpha1.ReasonExitCode}, 3, false, ""},
		{"a signal's 128+n code passes through", v1alpha1.StepRunStatus{Phase: v1alpha1.StepRunFailed, ExitCode: code(137), Reason: v1alpha1.ReasonExitCode}, 137, false, ""},
		{"exit 255 passes through", v1alpha1.StepRunStatus{Phase: v1alpha1.StepRunFailed, ExitCode: code(255), Reason: v1alpha1.ReasonExitCode}, 255, false, ""},
		{"a code outside 1-255 becomes 1", v1alpha1.StepRunStatus{Phase: v1alpha1.StepRunFailed, ExitCode: code(300), Reason: v1alpha1.ReasonExitCode}, 1, true, "Failed/NonZeroExitCode"},
		{"deadline exits 124 as timeout(1)", v1alpha1.StepRunStatus{Phase: v1alpha1.StepRunFailed, ExitCode: code(137), Reason: v1alpha1.ReasonDeadlineExceeded}, 124, true, "DeadlineExceeded"},
		{"a missing output after exit 0 exits 1 with the reason", v1alpha1.StepRunStatus{Phase: v1alpha1.StepRunFailed, ExitCode: code(0), Reason: v1alpha1.ReasonOutputMissing, Message: "output x missing"}, 1, true, "Failed/OutputMissing: output x missing"},
		{"failed without a code exits 1", v1alpha1.StepRunStatus{Phase: v1alpha1.StepRunFailed, Reason: v1alpha1.ReasonOutputTooLarge}, 1, true, "OutputTooLarge"},
		{"error exits 125 with the reason", v1alpha1.StepRunStatus{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonPodEvicted, Message: "node pressure"}, 125, true, "Error/PodEvicted: node pressure"},
		{"OOMKilled is an Error: 125", v1alpha1.StepRunStatus{Phase: v1alpha1.StepRunError, ExitCode: code(137), Reason: v1alpha1.ReasonOOMKilled}, 125, true, "OOMKilled"},
		{"image pull failure is 125", v1alpha1.StepRunStatus{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonImagePullFailed}, 125, true, "ImagePullFailed"},
		{"a command that does not exist exits 127", v1alpha1.StepRunStatus{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonMainStartFailed,
			Message: `the container runtime could not start main (StartError): exec: "nope": executable file not found in $PATH`}, 127, true, "MainStartFailed"},
		{"main that cannot be started otherwise exits 126", v1alpha1.StepRunStatus{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonMainStartFailed,
			Message: "the container runtime could not start main (StartError): permission denied"}, 126, true, "permission denied"},
		{"a run that has not ended is 125", v1alpha1.StepRunStatus{Phase: v1alpha1.StepRunRunning}, 125, true, "has not ended"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, why := ForStepRun(tc.st)
			if got != tc.want {
				t.Errorf("code = %d, want %d", got, tc.want)
			}
			if (why != "") != tc.wantWhy {
				t.Errorf("why = %q, want a reason: %v", why, tc.wantWhy)
			}
			if tc.whyMatch != "" && !strings.Contains(why, tc.whyMatch) {
				t.Errorf("why = %q, want it to contain %q", why, tc.whyMatch)
			}
		})
	}
}

func TestForWorkflowRunGivesEachOutcomeItsOwnCode(t *testing.T) {
	cases := map[v1alpha1.WorkflowRunPhase]int{
		v1alpha1.WorkflowRunSucceeded: 0,
		v1alpha1.WorkflowRunFailed:    2,
		v1alpha1.WorkflowRunError:     3,
		v1alpha1.WorkflowRunCancelled: 4,
		v1alpha1.WorkflowRunRunning:   1,
	}
	for phase, want := range cases {
		if got := ForWorkflowRun(phase); got != want {
			t.Errorf("ForWorkflowRun(%s) = %d, want %d", phase, got, want)
		}
	}
}

func TestOfFindsTheCodeThroughWrapping(t *testing.T) {
	inner := New(WorkflowFailed, errors.New("boom"))
	cases := []struct {
		name   string
		err    error
		want   int
		silent bool
	}{
		{"nil is success", nil, 0, false},
		{"a plain error is kubectl's 1", errors.New("x"), 1, false},
		{"a coded error keeps its code when wrapped", fmt.Errorf("watching: %w", inner), 2, false},
		{"a quiet outcome is silent", Quiet(3), 3, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Of(tc.err); got != tc.want {
				t.Errorf("Of = %d, want %d", got, tc.want)
			}
			if got := IsSilent(tc.err); got != tc.silent {
				t.Errorf("IsSilent = %v, want %v", got, tc.silent)
			}
		})
	}
	if Quiet(0) != nil {
		t.Error("Quiet(0) should be no error")
	}
}
