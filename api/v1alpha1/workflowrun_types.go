package v1alpha1

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Size caps of a WorkflowRun. The schema enforces them at admission; they keep the object (and its
// status, which holds counts and one summary per step, never per item) far below etcd's limit.
const (
	// MaxWorkflowSteps is how many steps a WorkflowRun may declare (onExit not included).
	MaxWorkflowSteps = 100
	// MaxStepItems caps one step's fan-out, whether from withItems, withSequence or withParam.
	MaxStepItems = 10000
	// MaxDependsOn is how many steps one step may depend on.
	MaxDependsOn = 16
	// MaxWorkflowParameters is how many arguments a WorkflowRun may take.
	MaxWorkflowParameters = 64
	// MaxRetryLimit caps retries of one item.
	MaxRetryLimit = 100
	// DefaultInfrastructureRetries is spec.infrastructureRetries when unset.
	DefaultInfrastructureRetries = 2
	// MaxStepMessageBytes caps a step summary's message.
	MaxStepMessageBytes = 256
	// MaxWorkflowMessageBytes caps status.message.
	MaxWorkflowMessageBytes = 1024
)

// WorkflowRunPhase is a convenience summary of a WorkflowRun's progress; conditions are the contract.
// +kubebuilder:validation:Enum=Pending;Running;Succeeded;Failed;Error;Cancelled
type WorkflowRunPhase string

const (
	// WorkflowRunPending: accepted, no StepRun started yet (also while suspended before the start).
	WorkflowRunPending WorkflowRunPhase = "Pending"
	// WorkflowRunRunning: at least one StepRun was started and the run has not ended.
	WorkflowRunRunning WorkflowRunPhase = "Running"
	// WorkflowRunSucceeded: every step succeeded or was skipped, and so did onExit.
	WorkflowRunSucceeded WorkflowRunPhase = "Succeeded"
	// WorkflowRunFailed: a step failed (its StepRun ended Failed or Error after its retries, or
	// its template could not be resolved at run time), or onExit failed.
	WorkflowRunFailed WorkflowRunPhase = "Failed"
	// WorkflowRunError: the run could not be carried out as written (a dependency cycle, an
	// unknown reference, an invalid `when`, a StepRun name taken by another object). Nothing
	// was started when the definition itself is invalid.
	WorkflowRunError WorkflowRunPhase = "Error"
	// WorkflowRunCancelled: spec.cancel stopped the run; every StepRun it had started has ended.
	WorkflowRunCancelled WorkflowRunPhase = "Cancelled"
)

// IsTerminal reports whether the phase can never change again.
func (p WorkflowRunPhase) IsTerminal() bool {
	switch p {
	case WorkflowRunSucceeded, WorkflowRunFailed, WorkflowRunError, WorkflowRunCancelled:
		return true
	}
	return false
}

// WorkflowStepPhase summarises one step across its items and attempts.
// +kubebuilder:validation:Enum=Pending;Running;Succeeded;Failed;Error;Skipped;Omitted
type WorkflowStepPhase string

const (
	// StepPending: waiting for its dependencies, the parallelism budget, a retry's backoff or a resume.
	StepPending WorkflowStepPhase = "Pending"
	// StepRunning: at least one of its StepRuns has not ended.
	StepRunning WorkflowStepPhase = "Running"
	// StepSucceeded: every item's last attempt succeeded.
	StepSucceeded WorkflowStepPhase = "Succeeded"
	// StepFailed: an item failed after its retries.
	StepFailed WorkflowStepPhase = "Failed"
	// StepError: an item's StepRun ended Error after its retries, or the step could not be built
	// (its `when`, withParam or template could not be resolved).
	StepError WorkflowStepPhase = "Error"
	// StepSkipped: its `when` was false, or its fan-out had no items. Dependents still run.
	StepSkipped WorkflowStepPhase = "Skipped"
	// StepOmitted: never started because a dependency did not succeed, or the run stopped
	// (failFast, cancel) before it could.
	StepOmitted WorkflowStepPhase = "Omitted"
)

// IsFinal reports whether the step will not change again.
func (p WorkflowStepPhase) IsFinal() bool {
	switch p {
	case StepSucceeded, StepFailed, StepError, StepSkipped, StepOmitted:
		return true
	}
	return false
}

// WorkflowRunSpec is a DAG of steps, each run as one StepRun per item and attempt.
// +kubebuilder:validation:XValidation:rule="!has(self.onExit) || self.steps.all(s, s.name != self.onExit.name)",message="onExit's name must differ from every step's name"
type WorkflowRunSpec struct {
	// steps run as soon as the steps they depend on have succeeded (or were skipped).
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:XValidation:rule="self.all(s, !has(s.dependsOn) || s.dependsOn.all(d, self.exists(t, t.name == d)))",message="dependsOn must name steps of this WorkflowRun"
	// +required
	Steps []WorkflowStep `json:"steps"`

	// arguments are the run's parameters, referenced as {{workflow.parameters.<name>}} in
	// templates and as workflow.parameters['<name>'] in `when`.
	// +optional
	Arguments *Arguments `json:"arguments,omitempty"`

	// parallelism caps how many StepRuns of this run may be unfinished at once. Unset means no cap.
	// +kubebuilder:validation:Minimum=1
	// +optional
	Parallelism *int32 `json:"parallelism,omitempty"`

	// infrastructureRetries is how many times an item whose main never started is tried again
	// automatically: its StepRun ended Error with the MainStarted condition False because the
	// infrastructure failed it (the runtime could not start a container, the Pod was evicted,
	// deleted or lost, the executor never came up), so no side effect can have happened. These
	// attempts do not count against the step's retries.limit. 0 turns them off; a step whose main
	// ran is retried only by its own retries. They start at once, without backoff, and count in
	// status like any retry; a never-started failure beyond them is left to the step's retries.
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10
	// +optional
	InfrastructureRetries *int32 `json:"infrastructureRetries,omitempty"`

	// failFast stops starting anything new (steps, items, retries) once a step has failed; what
	// runs already finishes, then onExit runs and the run ends Failed.
	// +optional
	FailFast bool `json:"failFast,omitempty"`

	// onExit is a step run after every other step has ended, whatever the outcome (not after a
	// cancel, and not when the definition is invalid). It reads the outcome as
	// {{workflow.phase}} or workflow.phase in `when`.
	// +kubebuilder:validation:XValidation:rule="!has(self.dependsOn)",message="onExit runs after every step and takes no dependsOn"
	// +optional
	OnExit *WorkflowStep `json:"onExit,omitempty"`

	// ttlSecondsAfterFinished deletes the WorkflowRun (and with it, through owner references,
	// its StepRuns and Pods) this long after it ended.
	// +kubebuilder:validation:Minimum=0
	// +optional
	TTLSecondsAfterFinished *int32 `json:"ttlSecondsAfterFinished,omitempty"`

	// suspend, while true, starts nothing new; StepRuns already running go on.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// cancel stops the run: the Pods of unfinished StepRuns are deleted (so each StepRun ends
	// Error/PodDeleted), nothing else starts, onExit does not run, and the run ends Cancelled
	// once every StepRun has ended. It cannot be undone.
	// +optional
	Cancel bool `json:"cancel,omitempty"`
}

// Arguments are the run's inputs.
type Arguments struct {
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Parameters []InputParameter `json:"parameters,omitempty"`
}

// WorkflowStep is one node of the DAG: a StepRun template, run once or once per item.
// withItems holds schemaless values that CEL cannot see, so the controller rejects withItems
// combined with another fan-out; the schema catches the rest.
// +kubebuilder:validation:XValidation:rule="!(has(self.withParam) && has(self.withSequence))",message="withItems, withParam and withSequence are mutually exclusive"
// +kubebuilder:validation:XValidation:rule="!has(self.dependsOn) || !(self.name in self.dependsOn)",message="a step cannot depend on itself"
type WorkflowStep struct {
	// name is a DNS label, unique in the run; it names the step's StepRuns.
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=63
	// +required
	Name string `json:"name"`

	// template is the spec of the step's StepRuns. Its string values may hold references
	// ({{workflow.parameters.x}}, {{steps.<name>.outputs.parameters.<p>}},
	// {{steps.<name>.outputs.result}}, {{steps.<name>.exitCode}}, {{item}}, {{item.<field>}},
	// {{workflow.phase}} in onExit), substituted before each StepRun is created.
	// +required
	Template StepRunSpec `json:"template"`

	// dependsOn names the steps that must have succeeded (or been skipped) before this one starts.
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=63
	// +optional
	DependsOn []string `json:"dependsOn,omitempty"`

	// withItems fans the step out: one StepRun per item. Items are strings or any JSON value.
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=10000
	// +optional
	WithItems []apiextensionsv1.JSON `json:"withItems,omitempty"`

	// withParam fans the step out over a JSON list given by one reference, e.g.
	// "{{steps.list.outputs.parameters.items}}" or "{{workflow.parameters.items}}".
	// +kubebuilder:validation:MaxLength=256
	// +optional
	WithParam string `json:"withParam,omitempty"`

	// withSequence fans the step out over the integers start, start+1, …, start+count-1.
	// +optional
	WithSequence *Sequence `json:"withSequence,omitempty"`

	// when is a CEL expression; the step runs only when it is true, and is Skipped otherwise.
	// It sees workflow.parameters, workflow.name, workflow.namespace, workflow.phase (onExit
	// only) and, for the steps this one depends on (directly or not), steps.<name>.phase,
	// steps.<name>.exitCode, steps.<name>.outputs.parameters and steps.<name>.outputs.result.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	When string `json:"when,omitempty"`

	// retries says how often and when a failed attempt is tried again, as a new StepRun.
	// +optional
	Retries *RetryStrategy `json:"retries,omitempty"`
}

// Sequence is a range of integers to fan out over.
type Sequence struct {
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10000
	// +required
	Count int32 `json:"count"`
	// +optional
	Start int32 `json:"start,omitempty"`
}

// RetryStrategy retries a failed attempt as a new StepRun named <run>-<step>[-<item>]-r<attempt>.
type RetryStrategy struct {
	// limit is how many times one item is retried: it runs at most limit+1 times.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +required
	Limit int32 `json:"limit"`
	// backoff spaces retries out; without it a retry starts at once.
	// +optional
	Backoff *Backoff `json:"backoff,omitempty"`
	// retryOn says which failures are retried; unset means every Failed or Error attempt.
	// +optional
	RetryOn *RetryOn `json:"retryOn,omitempty"`
}

// Backoff is the wait before retry n: duration × factor^(n-1), at most maxDuration.
type Backoff struct {
	// duration is the wait before the first retry, a Go duration such as "10s".
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +required
	Duration metav1.Duration `json:"duration"`
	// factor multiplies the wait after each failure; unset means 2.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10
	// +optional
	Factor *int32 `json:"factor,omitempty"`
	// maxDuration caps the wait; unset means one hour.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +optional
	MaxDuration *metav1.Duration `json:"maxDuration,omitempty"`
}

// RetryOn selects retried failures as data, like a Job's podFailurePolicy: an attempt is retried
// when its phase is listed, or when main's exit code is listed.
// +kubebuilder:validation:XValidation:rule="has(self.phases) || has(self.exitCodes)",message="retryOn needs phases or exitCodes"
type RetryOn struct {
	// phases are the StepRun phases retried whatever the exit code: Failed (main exited
	// non-zero, ran past its deadline, lost an output) and/or Error (the step could not run
	// or report: Pod deleted or evicted, image pull failure, OOMKilled, …).
	// +listType=set
	// +kubebuilder:validation:MaxItems=2
	// +kubebuilder:validation:XValidation:rule="self.all(p, p in ['Failed', 'Error'])",message="retryOn.phases may hold Failed and Error"
	// +optional
	Phases []StepRunPhase `json:"phases,omitempty"`
	// exitCodes are main's exit codes that are retried.
	// +listType=set
	// +kubebuilder:validation:MaxItems=255
	// +optional
	ExitCodes []int32 `json:"exitCodes,omitempty"`
}

// WorkflowRunStatus holds references and counts, never copies of its StepRuns' status: the
// StepRuns are the source of truth, and the object stays small however wide the fan-out.
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.phase) || !(oldSelf.phase in ['Succeeded', 'Failed', 'Error', 'Cancelled']) || (has(self.phase) && self.phase == oldSelf.phase)",message="a terminal phase (Succeeded, Failed, Error, Cancelled) cannot change"
type WorkflowRunStatus struct {
	// +optional
	Phase WorkflowRunPhase `json:"phase,omitempty"`
	// reason is a CamelCase reason for the phase.
	// +kubebuilder:validation:MaxLength=128
	// +optional
	Reason string `json:"reason,omitempty"`
	// message explains the phase to people.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Message string `json:"message,omitempty"`
	// startedAt is when the first StepRun was started.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`
	// finishedAt is when the run ended.
	// +optional
	FinishedAt *metav1.Time `json:"finishedAt,omitempty"`
	// duration is finishedAt - startedAt, rounded, for people.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Duration string `json:"duration,omitempty"`
	// progress is "done/total" items: done counts items that succeeded, failed for good or were
	// skipped; a withParam step not yet expanded counts as one item.
	// +kubebuilder:validation:MaxLength=32
	// +optional
	Progress string `json:"progress,omitempty"`
	// counts are the run's items by state, onExit included.
	// +optional
	Counts StepCounts `json:"counts,omitzero"`
	// steps summarise each step (onExit last), one entry per step whatever its fan-out.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=101
	// +optional
	Steps []StepSummary `json:"steps,omitempty"`
	// conditions: Succeeded (Unknown while running), Suspended.
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// observedGeneration is the generation the controller last acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// StepCounts counts items (one per StepRun to run, retries not included) by state. Items not
// started yet are in total only.
type StepCounts struct {
	// +optional
	Total int32 `json:"total,omitempty"`
	// pending items have a StepRun that has not started, or wait for a retry.
	// +optional
	Pending int32 `json:"pending,omitempty"`
	// +optional
	Running int32 `json:"running,omitempty"`
	// +optional
	Succeeded int32 `json:"succeeded,omitempty"`
	// +optional
	Failed int32 `json:"failed,omitempty"`
	// +optional
	Error int32 `json:"error,omitempty"`
	// +optional
	Skipped int32 `json:"skipped,omitempty"`
	// omitted items were never started (a dependency failed, failFast, cancel).
	// +optional
	Omitted int32 `json:"omitted,omitempty"`
	// retries is how many retry attempts were started.
	// +optional
	Retries int32 `json:"retries,omitempty"`
}

// StepSummary is one step's state: counts for a fan-out, the StepRun for a single run.
type StepSummary struct {
	// +kubebuilder:validation:MaxLength=63
	// +required
	Name string `json:"name"`
	// +optional
	Phase WorkflowStepPhase `json:"phase,omitempty"`
	// items counts a fanned-out step's items.
	// +optional
	Items *StepCounts `json:"items,omitempty"`
	// stepRun is the latest attempt of a single-item step, or a fan-out's first failed StepRun.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	StepRun string `json:"stepRun,omitempty"`
	// attempts is how many StepRuns a single-item step has started.
	// +optional
	Attempts int32 `json:"attempts,omitempty"`
	// exitCode is main's exit code in stepRun, when known.
	// +optional
	ExitCode *int32 `json:"exitCode,omitempty"`
	// message says why the step failed, was skipped or omitted.
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Message string `json:"message,omitempty"`
}

// WorkflowRun runs a DAG of steps, fanning each out as StepRuns it owns.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=wfr,categories=pnsflow
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Progress",type=string,JSONPath=`.status.progress`
// +kubebuilder:printcolumn:name="Duration",type=string,JSONPath=`.status.duration`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type WorkflowRun struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Only suspend, cancel, parallelism, failFast and ttlSecondsAfterFinished may change after
	// creation: the StepRuns already made must keep matching the definition.
	// +kubebuilder:validation:XValidation:rule="self.steps == oldSelf.steps && has(self.arguments) == has(oldSelf.arguments) && (!has(self.arguments) || self.arguments == oldSelf.arguments) && has(self.onExit) == has(oldSelf.onExit) && (!has(self.onExit) || self.onExit == oldSelf.onExit)",message="steps, arguments and onExit are immutable"
	// +kubebuilder:validation:XValidation:rule="!has(oldSelf.cancel) || !oldSelf.cancel || (has(self.cancel) && self.cancel)",message="cancel cannot be undone"
	// +required
	Spec WorkflowRunSpec `json:"spec"`

	// +optional
	Status WorkflowRunStatus `json:"status,omitempty"`
}

// WorkflowRunList is a list of WorkflowRuns.
// +kubebuilder:object:root=true
type WorkflowRunList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []WorkflowRun `json:"items"`
}

func init() {
	SchemeBuilder.Register(&WorkflowRun{}, &WorkflowRunList{})
}
