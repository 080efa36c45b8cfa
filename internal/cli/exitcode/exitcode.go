// Package exitcode decides how kubectl-pnsflow exits: a run's outcome becomes a process exit
// code that scripts can branch on, and every error of the plugin itself carries its code. The
// table is in docs/cli.md; keep the two in step.
package exitcode

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

// Exit codes. `run` passes main's own exit code through (0-255), so the plugin's own failures
// there use docker run's codes (125-127), which a command rarely uses itself. Every other
// command fails with 1, as kubectl does, and reports a WorkflowRun's outcome with 2-4.
const (
	OK = 0
	// Failure is any error of the plugin outside `run`: a bad flag, an API error, a missing object.
	Failure = 1
	// WorkflowFailed: the WorkflowRun ended Failed (a step failed after its retries).
	WorkflowFailed = 2
	// WorkflowError: the WorkflowRun ended Error (its definition could not run).
	WorkflowError = 3
	// WorkflowCancelled: the WorkflowRun was cancelled.
	WorkflowCancelled = 4
	// MainFailedNoCode: the StepRun Failed but main exited 0 or its code is unknown (an output
	// was missing, too large or unreadable): the step failed, main did not say how.
	MainFailedNoCode = 1
	// DeadlineExceeded: the run outlived --timeout (activeDeadlineSeconds), as timeout(1) exits.
	DeadlineExceeded = 124
	// RunError: the StepRun ended Error (it could not run or report), or the plugin itself
	// failed during `run` (a bad flag, the API refused the StepRun, the watch was lost).
	RunError = 125
	// CannotInvoke: the container runtime could not start main (MainStartFailed).
	CannotInvoke = 126
	// CommandNotFound: the runtime could not start main because its command does not exist.
	CommandNotFound = 127
	// Interrupted: the user pressed Ctrl-C (128 + SIGINT), as a shell reports it.
	Interrupted = 130
)

// Error is an error that says how the process should exit.
type Error struct {
	Code int
	Err  error
	// Silent errors were already explained to the user (the outcome was printed); main prints
	// nothing more.
	Silent bool
}

func (e *Error) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit code %d", e.Code)
	}
	return e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// New wraps err with an exit code.
func New(code int, err error) error { return &Error{Code: code, Err: err} }

// Quiet is an outcome already shown to the user: the process exits with code and says no more.
func Quiet(code int) error {
	if code == OK {
		return nil
	}
	return &Error{Code: code, Silent: true}
}

// Of is the exit code for err: 0 for nil, the code an *Error carries, Failure otherwise.
func Of(err error) int {
	if err == nil {
		return OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Failure
}

// IsSilent reports whether err needs no message (its outcome was already printed).
func IsSilent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Silent
}

// ForStepRun maps a terminal StepRun status to `run`'s exit code, with a sentence for stderr
// saying why when the run did not succeed (empty for Succeeded and for main's own non-zero
// exit, which speaks for itself through the log).
func ForStepRun(st v1alpha1.StepRunStatus) (int, string) {
	why := string(st.Phase)
	if st.Reason != "" {
		why += "/" + st.Reason
	}
	if st.Message != "" {
		why += ": " + st.Message
	}
	switch st.Phase {
	case v1alpha1.StepRunSucceeded:
		return OK, ""
	case v1alpha1.StepRunFailed:
		if st.Reason == v1alpha1.ReasonDeadlineExceeded {
			return DeadlineExceeded, why
		}
		if st.ExitCode != nil && *st.ExitCode > 0 && *st.ExitCode < 256 {
			if st.Reason == v1alpha1.ReasonExitCode {
				return int(*st.ExitCode), ""
			}
			// main failed and an output failed too: main's code, and the output's reason.
			return int(*st.ExitCode), why
		}
		return MainFailedNoCode, why
	case v1alpha1.StepRunError:
		if st.Reason == v1alpha1.ReasonMainStartFailed {
			if commandMissing(st.Message) {
				return CommandNotFound, why
			}
			return CannotInvoke, why
		}
		return RunError, why
	}
	return RunError, "the run has not ended (" + string(st.Phase) + ")"
}

// commandMissing recognises the runtime's words for an executable that does not exist (runc:
// `exec: "x": executable file not found in $PATH`, or `no such file or directory`).
func commandMissing(message string) bool {
	m := strings.ToLower(message)
	return strings.Contains(m, "not found") || strings.Contains(m, "no such file or directory")
}

// ForWorkflowRun maps a WorkflowRun's terminal phase to the exit code of watch and submit --watch.
func ForWorkflowRun(phase v1alpha1.WorkflowRunPhase) int {
	switch phase {
	case v1alpha1.WorkflowRunSucceeded:
		return OK
	case v1alpha1.WorkflowRunFailed:
		return WorkflowFailed
	case v1alpha1.WorkflowRunError:
		return WorkflowError
	case v1alpha1.WorkflowRunCancelled:
		return WorkflowCancelled
	}
	return Failure
}
