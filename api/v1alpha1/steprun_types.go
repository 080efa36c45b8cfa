package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Size caps. They keep a StepRun far below etcd's object limit whatever main prints or writes;
// the executor enforces them in bytes before it reports, the schema enforces them again.
const (
	// MaxOutputParameters is how many output parameters a StepRun may declare.
	MaxOutputParameters = 32
	// MaxOutputArtifacts is how many output artifacts a StepRun may declare.
	MaxOutputArtifacts = 32
	// MaxParameterValueBytes caps one output parameter's value.
	MaxParameterValueBytes = 16 * 1024
	// MaxResultBytes caps status.outputs.result, the tail of main's log.
	MaxResultBytes = 8 * 1024
	// MainLogsArtifact is the output artifact main's archived log is recorded as (see
	// spec.archiveLogs); no declared artifact may take the name.
	MainLogsArtifact = "main-logs"
	// MaxStdinBytes caps spec.stdin.
	MaxStdinBytes = 64 * 1024
	// MaxMessageBytes caps status.message.
	MaxMessageBytes = 4 * 1024
)

// StepRunPhase is a convenience summary of a StepRun's progress; conditions are the contract.
// +kubebuilder:validation:Enum=Pending;Running;Succeeded;Failed;Error
type StepRunPhase string

const (
	// StepRunPending: the Pod exists (or is being made) and main has not started.
	StepRunPending StepRunPhase = "Pending"
	// StepRunRunning: the executor saw main start.
	StepRunRunning StepRunPhase = "Running"
	// StepRunSucceeded: main exited 0 and every output was collected.
	StepRunSucceeded StepRunPhase = "Succeeded"
	// StepRunFailed: main exited non-zero, ran past its deadline, or a required output is missing.
	StepRunFailed StepRunPhase = "Failed"
	// StepRunError: the step could not run or could not report (Pod refused, deleted or evicted,
	// image pull failure, OOMKilled, executor lost, outputs lost).
	StepRunError StepRunPhase = "Error"
)

// IsTerminal reports whether the phase can never change again.
func (p StepRunPhase) IsTerminal() bool {
	return p == StepRunSucceeded || p == StepRunFailed || p == StepRunError
}

// StepRunSpec describes one run of one container. The main-container fields are passed to the
// `main` container unchanged; the Pod-level fields to its Pod.
type StepRunSpec struct {
	// image is main's container image.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +required
	Image string `json:"image"`
	// command overrides the image's entrypoint. Left empty, the image's own entrypoint runs.
	// +kubebuilder:validation:MaxItems=256
	// +optional
	Command []string `json:"command,omitempty"`
	// args are passed to main's entrypoint.
	// +kubebuilder:validation:MaxItems=1024
	// +optional
	Args []string `json:"args,omitempty"`
	// env sets environment variables in main.
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:XValidation:rule="self.all(e, !(e.name in ['PNSFLOW_STEPRUN_UID', 'PNSFLOW_OUTPUTS']))",message="PNSFLOW_STEPRUN_UID and PNSFLOW_OUTPUTS are set by pnsflow and cannot be overridden"
	// +optional
	Env []corev1.EnvVar `json:"env,omitempty"`
	// envFrom fills main's environment from ConfigMaps and Secrets.
	// +kubebuilder:validation:MaxItems=64
	// +optional
	EnvFrom []corev1.EnvFromSource `json:"envFrom,omitempty"`
	// workingDir is main's working directory.
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	WorkingDir string `json:"workingDir,omitempty"`
	// imagePullPolicy is main's image pull policy.
	// +kubebuilder:validation:Enum=Always;Never;IfNotPresent
	// +optional
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`
	// resources are main's requests and limits.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`
	// securityContext is main's, exactly as given. Its runAsUser and runAsGroup decide whether
	// the executor can run unprivileged (see docs/architecture.md).
	// +optional
	SecurityContext *corev1.SecurityContext `json:"securityContext,omitempty"`
	// volumeMounts mount the Pod's volumes into main. The executor mounts the same volumes
	// under /pnsflow/volumes/<name> so outputs on them survive main's exit.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:XValidation:rule="self.all(m, m.mountPath != '/pnsflow' && !m.mountPath.startsWith('/pnsflow/'))",message="mount paths under /pnsflow are reserved for pnsflow"
	// +optional
	VolumeMounts []corev1.VolumeMount `json:"volumeMounts,omitempty"`

	// volumes are the Pod's volumes.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:XValidation:rule="self.all(v, !v.name.startsWith('pnsflow-'))",message="volume names starting with 'pnsflow-' are reserved for pnsflow"
	// +optional
	Volumes []corev1.Volume `json:"volumes,omitempty"`
	// serviceAccountName is the Pod's service account, and so the executor's identity. It must
	// be allowed to patch stepruns/status. Empty means the pnsflow-executor account that the
	// controller keeps in every namespace it runs steps in.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
	// automountServiceAccountToken, when true, gives main the Pod's service-account token too.
	// By default only the executor holds a (short-lived) token.
	// +optional
	AutomountServiceAccountToken *bool `json:"automountServiceAccountToken,omitempty"`
	// nodeSelector constrains the Pod to matching nodes.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// tolerations are the Pod's tolerations.
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`
	// affinity is the Pod's affinity.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`
	// imagePullSecrets are the Pod's image pull secrets.
	// +kubebuilder:validation:MaxItems=16
	// +optional
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`
	// podSecurityContext is the Pod's security context.
	// +optional
	PodSecurityContext *corev1.PodSecurityContext `json:"podSecurityContext,omitempty"`

	// stdin, when set, is written to main's standard input, which is then closed.
	// +kubebuilder:validation:MaxLength=65536
	// +optional
	Stdin *string `json:"stdin,omitempty"`
	// inputs are recorded with the run (a WorkflowRun fills them from its templates).
	// +optional
	Inputs *Inputs `json:"inputs,omitempty"`
	// outputs declares what the executor collects after main exits.
	// +optional
	Outputs *Outputs `json:"outputs,omitempty"`
	// activeDeadlineSeconds becomes the Pod's; a run past it ends Failed/DeadlineExceeded.
	// +kubebuilder:validation:Minimum=1
	// +optional
	ActiveDeadlineSeconds *int64 `json:"activeDeadlineSeconds,omitempty"`
	// executor tunes the pns-executor sidecar.
	// +optional
	Executor *ExecutorOptions `json:"executor,omitempty"`
	// artifactRepositoryRef names a ConfigMap in the run's namespace that describes the S3
	// repository output artifacts are stored in (see docs/architecture.md for its keys). Empty
	// means the manager's default repository.
	// +optional
	ArtifactRepositoryRef *corev1.LocalObjectReference `json:"artifactRepositoryRef,omitempty"`
	// archiveLogs, when true, makes the executor follow main's log while main runs and store it in
	// the artifact repository as the artifact "main-logs" (stdout and stderr as the kubelet keeps
	// them), readable after the Pod is gone; status.outputs.result then comes from the same
	// stream, so it survives the kubelet's log rotation. Unset means the repository ConfigMap's
	// archiveLogs (false when it has none, or when there is no repository).
	// +optional
	ArchiveLogs *bool `json:"archiveLogs,omitempty"`
}

// ExecutorOptions tunes the pns-executor sidecar of one run.
type ExecutorOptions struct {
	// ptrace, when true, runs the executor as root with the runtime's default capabilities plus
	// SYS_PTRACE, so it can inspect a main that holds capabilities the executor otherwise would
	// not (an entrypoint with file capabilities or the setuid bit). Pod Security "baseline"
	// refuses such Pods. Without it the executor never holds a capability main lacks, beyond
	// SETUID and SETGID when it must take main's UID and GID (see docs/architecture.md).
	// +optional
	Ptrace bool `json:"ptrace,omitempty"`
}

// Inputs are named values a run was started with.
type Inputs struct {
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Parameters []InputParameter `json:"parameters,omitempty"`
	// artifacts are loaded from the run's artifact repository into main's filesystem before
	// main starts, by an init container (see docs/architecture.md, "Input artifacts").
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Artifacts []InputArtifact `json:"artifacts,omitempty"`
}

// InputArtifact is an object of the artifact repository placed at path in main's filesystem
// before main starts: a file as is, a tgz archive extracted into a directory.
type InputArtifact struct {
	// name is DNS-label-like: lower-case letters, digits and '-'.
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=63
	// +required
	Name string `json:"name"`
	// path is where main sees the artifact: an absolute path outside /pnsflow, not "/", without
	// "." or ".." segments. Two inputs cannot share a path (the run ends Error/InvalidPod).
	// +kubebuilder:validation:MinLength=2
	// +kubebuilder:validation:MaxLength=4096
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/')",message="path must be absolute (start with '/')"
	// +kubebuilder:validation:XValidation:rule="!(self == '/pnsflow' || self.startsWith('/pnsflow/'))",message="paths under /pnsflow are reserved for pnsflow"
	// +kubebuilder:validation:Pattern=`^(/([^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+))+/?$`
	// +required
	Path string `json:"path"`
	// key is the object's full key in the repository's bucket, as status.outputs.artifacts
	// records it: <keyPrefix>/<namespace>/<steprun>/<name>. It must lie under the run's own
	// namespace (<keyPrefix>/<namespace>/), or the run ends Error/InvalidSpec before any Pod
	// exists. It is relative, without empty, "." or ".." segments. In a WorkflowRun,
	// {{steps.<step>.outputs.artifacts.<name>}} is such a key.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^([^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+)(/([^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+))*$`
	// +required
	Key string `json:"key"`
	// optional: a missing object is skipped (main then finds an empty directory at path) instead
	// of ending the run Error/ArtifactNotFound.
	// +optional
	Optional bool `json:"optional,omitempty"`
	// archive says how the object is stored: "none" (a file, placed at path as is) or "tgz" (a
	// tar+gzip archive, extracted into a directory at path). Empty means as the executor stored
	// it (recorded with the object), else none.
	// +kubebuilder:validation:Enum=none;tgz
	// +optional
	Archive string `json:"archive,omitempty"`
}

// InputParameter is one named input value.
type InputParameter struct {
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=63
	// +required
	Name string `json:"name"`
	// +kubebuilder:validation:MaxLength=16384
	// +optional
	Value string `json:"value,omitempty"`
}

// Outputs declares the values and files a run produces.
type Outputs struct {
	// parameters are small values read from files main writes.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Parameters []OutputParameter `json:"parameters,omitempty"`
	// artifacts are files or directories the executor stores in the run's artifact repository
	// after main exits (see artifactRepositoryRef); status.outputs.artifacts records each one's
	// key, size and sha256.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Artifacts []OutputArtifact `json:"artifacts,omitempty"`
	// keepImageTmp keeps the image's own /tmp in main. By default, when an output's path lies
	// under /tmp and main mounts nothing at /tmp, main's /tmp is an emptyDir the executor also
	// mounts, so outputs there are collected even when main exits before the executor holds its
	// root; the image's own /tmp content is then hidden from main, and that /tmp has mode 0777
	// without the sticky bit. With keepImageTmp, such outputs are read through main's root
	// filesystem like any other image path (and may end Error/OutputsLost).
	// +optional
	KeepImageTmp bool `json:"keepImageTmp,omitempty"`
}

// OutputParameter is a value read from a file in main's filesystem after main exits.
type OutputParameter struct {
	// name is DNS-label-like: lower-case letters, digits and '-'.
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=63
	// +required
	Name string `json:"name"`
	// valueFrom says where the value is read from.
	// +required
	ValueFrom OutputValueFrom `json:"valueFrom"`
	// default is used when the file does not exist. Without a default a missing file fails the run.
	// +kubebuilder:validation:MaxLength=16384
	// +optional
	Default *string `json:"default,omitempty"`
}

// OutputValueFrom names the file an output parameter is read from.
type OutputValueFrom struct {
	// path is an absolute path in main's filesystem. Files under /pnsflow/outputs or on one of
	// main's volumes are always collected; others are read through main's root filesystem.
	// Exactly one trailing newline ("\n") is trimmed from the file's content, as Argo Workflows
	// does, so `echo v > file` gives "v"; "\r", spaces and any further newline are kept, and a
	// default is used as written. The 16384-byte cap applies to the trimmed value.
	// +kubebuilder:validation:MinLength=2
	// +kubebuilder:validation:MaxLength=4096
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/')",message="path must be absolute (start with '/')"
	// +required
	Path string `json:"path"`
}

// OutputArtifact is a file or directory the executor stores in the artifact repository after
// main exits, under the key <keyPrefix>/<namespace>/<steprun>/<name>.
// +kubebuilder:validation:XValidation:rule="self.name != 'main-logs'",message="main-logs is the name of main's archived log (spec.archiveLogs)"
type OutputArtifact struct {
	// name is DNS-label-like: lower-case letters, digits and '-'.
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=63
	// +required
	Name string `json:"name"`
	// path is an absolute path in main's filesystem, found like an output parameter's.
	// +kubebuilder:validation:MinLength=2
	// +kubebuilder:validation:MaxLength=4096
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/')",message="path must be absolute (start with '/')"
	// +required
	Path string `json:"path"`
	// optional: a missing file is skipped instead of failing the run (Failed/ArtifactNotFound).
	// +optional
	Optional bool `json:"optional,omitempty"`
	// archive is how the artifact is stored: "none" stores a file as is, "tgz" a tar+gzip
	// archive. Empty means none for a file and tgz for a directory; a directory cannot be "none".
	// +kubebuilder:validation:Enum=none;tgz
	// +optional
	Archive string `json:"archive,omitempty"`
}

// StepRunStatus is written by two owners: the pns-executor writes Running and the terminal
// Succeeded/Failed with exit code, times and outputs; the controller writes Pending, podName and
// its conditions, and Error only when the executor cannot report. See docs/architecture.md.
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.phase) || !(oldSelf.phase in ['Succeeded', 'Failed', 'Error']) || (has(self.phase) && self.phase == oldSelf.phase && has(self.exitCode) == has(oldSelf.exitCode) && (!has(self.exitCode) || self.exitCode == oldSelf.exitCode))",message="a terminal phase (Succeeded, Failed, Error) and its exitCode cannot change"
type StepRunStatus struct {
	// +optional
	Phase StepRunPhase `json:"phase,omitempty"`
	// exitCode is main's exit code, when known.
	// +optional
	ExitCode *int32 `json:"exitCode,omitempty"`
	// startedAt is when main started.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`
	// finishedAt is when main exited, or when the run was given up.
	// +optional
	FinishedAt *metav1.Time `json:"finishedAt,omitempty"`
	// duration is finishedAt - startedAt, rounded, for people.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Duration string `json:"duration,omitempty"`
	// podName is the run's Pod.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	PodName string `json:"podName,omitempty"`
	// reason is a CamelCase reason for the phase.
	// +kubebuilder:validation:MaxLength=128
	// +optional
	Reason string `json:"reason,omitempty"`
	// message explains the phase to people.
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	Message string `json:"message,omitempty"`
	// outputs are the collected outputs.
	// +optional
	Outputs *StepRunOutputs `json:"outputs,omitempty"`
	// timings records when each stage of the run happened; see StepRunTimings.
	// +optional
	Timings *StepRunTimings `json:"timings,omitempty"`
	// executorRestarts is how many times the kubelet restarted the pns-executor sidecar, as the
	// last writer saw it.
	// +kubebuilder:validation:Minimum=0
	// +optional
	ExecutorRestarts int32 `json:"executorRestarts,omitempty"`
	// conditions: Succeeded (Unknown while running), ExecutorPrivileged, ExitCodeMismatch,
	// MainStarted.
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// observedGeneration is the generation the controller last acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// StepRunOutputs are the values collected from a finished run.
type StepRunOutputs struct {
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Parameters []OutputParameterValue `json:"parameters,omitempty"`
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Artifacts []ArtifactStatus `json:"artifacts,omitempty"`
	// result is the tail of main's log (stdout and stderr as the kubelet keeps them), at most
	// 8 KiB.
	// +kubebuilder:validation:MaxLength=8192
	// +kubebuilder:validation:XValidation:rule="size(bytes(self)) <= 8192",message="result is capped at 8192 bytes"
	// +optional
	Result *string `json:"result,omitempty"`
}

// OutputParameterValue is one collected output parameter.
type OutputParameterValue struct {
	// +kubebuilder:validation:MaxLength=63
	// +required
	Name string `json:"name"`
	// +kubebuilder:validation:MaxLength=16384
	// +kubebuilder:validation:XValidation:rule="size(bytes(self)) <= 16384",message="an output value is capped at 16384 bytes"
	// +required
	Value string `json:"value"`
}

// ArtifactStatus is one stored artifact.
type ArtifactStatus struct {
	// +kubebuilder:validation:MaxLength=63
	// +required
	Name string `json:"name"`
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Key string `json:"key,omitempty"`
	// +optional
	Size int64 `json:"size,omitempty"`
	// +kubebuilder:validation:MaxLength=64
	// +optional
	SHA256 string `json:"sha256,omitempty"`
	// archive is how the object is stored: none (the file as is) or tgz.
	// +kubebuilder:validation:Enum=none;tgz
	// +optional
	Archive string `json:"archive,omitempty"`
	// incomplete, when set, says why the object holds less than it should: main's log archive
	// stops where the executor's grace ended while the kubelet was still serving the log.
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Incomplete string `json:"incomplete,omitempty"`
}

// StepRun runs one container to completion in a Pod watched by the PNS executor.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=sr,categories=pnsflow
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Exit",type=integer,JSONPath=`.status.exitCode`
// +kubebuilder:printcolumn:name="Pod",type=string,JSONPath=`.status.podName`
// +kubebuilder:printcolumn:name="Duration",type=string,JSONPath=`.status.duration`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 249",message="a StepRun name is at most 249 characters, so that its Pod's name (the StepRun's name plus \"-pod\") is at most 253"
type StepRun struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable after creation"
	// +required
	Spec StepRunSpec `json:"spec"`
	// status reads Pending from creation without anyone writing it (a schema default), so the
	// happy path costs no controller write; see docs/architecture.md.
	// +kubebuilder:default={phase: Pending}
	// +optional
	Status StepRunStatus `json:"status,omitempty"`
}

// StepRunList is a list of StepRuns.
// +kubebuilder:object:root=true
type StepRunList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []StepRun `json:"items"`
}

func init() {
	SchemeBuilder.Register(&StepRun{}, &StepRunList{})
}
