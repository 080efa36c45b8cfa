package v1alpha1

import "fmt"

// Condition types on a StepRun.
const (
	// ConditionSucceeded mirrors the phase: Unknown while Pending/Running, True when Succeeded,
	// False when Failed or Error (its reason then says why).
	ConditionSucceeded = "Succeeded"
	// ConditionExecutorPrivileged is True when the executor runs as root: main's UID or GID was
	// unknown (it then takes main's IDs once it finds main), main runs as root, main is
	// privileged, or spec.executor.ptrace asked for SYS_PTRACE. Its reason says which. False when
	// it runs as main's non-root UID/GID with no capability.
	ConditionExecutorPrivileged = "ExecutorPrivileged"
	// ConditionExitCodeMismatch is set True when the executor's reported exit code differs from
	// the kubelet's containerStatuses for main.
	ConditionExitCodeMismatch = "ExitCodeMismatch"
	// ConditionMainStarted says whether main ever started. The executor sets it True with its
	// reports; the controller sets it False (ReasonMainNeverStarted) when it ends a run whose main
	// never started: such a run had no side effects and is safe to retry (see
	// NeverStartedInfrastructureFailure).
	ConditionMainStarted = "MainStarted"
)

// Reasons, used in status.reason and in condition reasons.
const (
	ReasonPodCreated = "PodCreated"
	ReasonRunning    = "Running"
	ReasonSucceeded  = "Succeeded"
	// ReasonExitCode: main exited non-zero.
	ReasonExitCode = "NonZeroExitCode"
	// ReasonDeadlineExceeded: the run outlived activeDeadlineSeconds.
	ReasonDeadlineExceeded = "DeadlineExceeded"
	// ReasonOutputMissing: a declared output without a default was not found.
	ReasonOutputMissing = "OutputMissing"
	// ReasonOutputTooLarge: an output exceeded MaxParameterValueBytes.
	ReasonOutputTooLarge = "OutputTooLarge"
	// ReasonOutputsLost: main exited before the executor held its root, and an output lives in
	// main's image filesystem, so it cannot be read.
	ReasonOutputsLost = "OutputsLost"
	// ReasonOutputUnreadable: an output path could not be read (e.g. a symlink escaping main's
	// root, or a directory).
	ReasonOutputUnreadable = "OutputUnreadable"

	ReasonPodForbidden            = "PodForbidden"
	ReasonInvalidPod              = "InvalidPod"
	ReasonServiceAccountForbidden = "ServiceAccountForbidden"
	ReasonImagePullFailed         = "ImagePullFailed"
	ReasonPodDeleted              = "PodDeleted"
	ReasonPodEvicted              = "PodEvicted"
	ReasonNodeLost                = "NodeLost"
	ReasonOOMKilled               = "OOMKilled"
	ReasonExecutorLost            = "ExecutorLost"
	ReasonContainerCreateFailed   = "ContainerCreateFailed"
	// ReasonMainStartFailed: the container runtime could not start main (StartError).
	ReasonMainStartFailed = "MainStartFailed"
	// ReasonMainNeverStarted is the MainStarted condition's reason when main never started.
	ReasonMainNeverStarted = "MainNeverStarted"
	// ReasonMainStarted is the MainStarted condition's reason when main was seen running.
	ReasonMainStarted = "MainStarted"

	ReasonUIDAndGIDKnown  = "UIDAndGIDKnown"
	ReasonUIDOrGIDUnknown = "UIDOrGIDUnknown"
	// ReasonMainRunsAsRoot: main runs as UID 0, so the executor runs as root with main's
	// capabilities.
	ReasonMainRunsAsRoot = "MainRunsAsRoot"
	// ReasonMainPrivileged: main is a privileged container, so the executor is one too.
	ReasonMainPrivileged = "MainPrivileged"
	// ReasonPtraceRequested: spec.executor.ptrace gave the executor SYS_PTRACE.
	ReasonPtraceRequested  = "PtraceRequested"
	ReasonExitCodeMismatch = "ExitCodeMismatch"
	// ReasonArtifactRepositoryUnavailable: the run's artifact repository is not configured, its
	// ConfigMap is invalid, or the kubelet could not give the executor its credentials (a missing
	// Secret).
	ReasonArtifactRepositoryUnavailable = "ArtifactRepositoryUnavailable"
	// ReasonArtifactUploadFailed: storing an output artifact failed after retries.
	ReasonArtifactUploadFailed = "ArtifactUploadFailed"
	// ReasonArtifactNotFound: a non-optional output artifact's path does not exist (Failed), or a
	// non-optional input artifact's object does not exist (Error).
	ReasonArtifactNotFound = "ArtifactNotFound"
	// ReasonArtifactLoadFailed: loading an input artifact failed: the repository refused or
	// failed after retries, or its archive was refused (an entry outside the target).
	ReasonArtifactLoadFailed = "ArtifactLoadFailed"
)

// mainStartFailures are the terminated reasons the kubelet gives a container the runtime could
// not start at all (runc failing to create it, for instance).
var mainStartFailures = map[string]bool{"StartError": true, "ContainerCannotRun": true}

// MainStartFailure says whether main's terminated reason means the runtime never started it,
// and if so the status message for Error/MainStartFailed. The executor and the controller both
// end such runs; one definition keeps them agreeing.
func MainStartFailure(reason, message string) (string, bool) {
	if !mainStartFailures[reason] {
		return "", false
	}
	return fmt.Sprintf("the container runtime could not start main (%s): %s", reason, message), true
}
