package steprun

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

// Outcome is the controller's verdict on a StepRun whose executor cannot (or can no longer)
// report. A nil *Outcome means "nothing to write: the executor is in charge".
type Outcome struct {
	Phase    v1alpha1.StepRunPhase
	Reason   string
	Message  string
	ExitCode *int32
	// StartedAt and FinishedAt come from main's container status when kubelet knows them.
	StartedAt, FinishedAt *time.Time
	// MainNeverStarted: main never ran, so the run had no side effects (safe to retry).
	MainNeverStarted bool
	// ExecutorRestarts is how often kubelet restarted the executor.
	ExecutorRestarts int32
}

// Policy holds the durations and bounds the decision depends on.
type Policy struct {
	// ImagePullGrace is how long a Pod may sit in ErrImagePull/ImagePullBackOff (or fail to
	// create a container) before the run is given up: pulls are retried by kubelet and may
	// recover, but a run must end in bounded time.
	ImagePullGrace time.Duration
	// DeadlineSlack is added to activeDeadlineSeconds before the controller enforces the
	// deadline itself (kubelet enforces it on running Pods; nothing does on unscheduled ones).
	DeadlineSlack time.Duration
	// DeletionSlack is how long past its deletion deadline (deletionTimestamp) a Pod may go on
	// existing with main unfinished before its node counts as lost: a kubelet that answers ends
	// its containers within the grace period.
	DeletionSlack time.Duration
	// ExecutorStartRestarts is how many times kubelet may restart the executor before main has
	// started; then the run is given up (kubelet would go on restarting it, and main, waiting for
	// the executor's startup probe, would never start). Zero means the default.
	ExecutorStartRestarts int32
}

func (p Policy) executorStartRestarts() int32 {
	if p.ExecutorStartRestarts <= 0 {
		return DefaultPolicy.ExecutorStartRestarts
	}
	return p.ExecutorStartRestarts
}

func (p Policy) deletionSlack() time.Duration {
	if p.DeletionSlack <= 0 {
		return DefaultPolicy.DeletionSlack
	}
	return p.DeletionSlack
}

// DefaultPolicy is what the manager ships with.
var DefaultPolicy = Policy{ImagePullGrace: 60 * time.Second, DeadlineSlack: 15 * time.Second, DeletionSlack: 30 * time.Second,
	ExecutorStartRestarts: 3}

// Decide looks at the run's Pod and says whether the controller must end the run itself, and
// when to look again if nothing has happened by then. It never decides for a terminal StepRun.
func Decide(sr *v1alpha1.StepRun, pod *corev1.Pod, now time.Time, p Policy) (*Outcome, time.Duration) {
	if sr.Status.Phase.IsTerminal() || pod == nil {
		return nil, 0
	}
	o, next := decide(sr, pod, now, p)
	if o != nil {
		o.MainNeverStarted = mainNeverStarted(sr, pod)
		if o.MainNeverStarted {
			o.StartedAt, o.FinishedAt, o.ExitCode = nil, nil, nil
		}
		if ex := executorconfig.ExecutorStatus(pod); ex != nil {
			o.ExecutorRestarts = ex.RestartCount
		}
	}
	return o, next
}

func decide(sr *v1alpha1.StepRun, pod *corev1.Pod, now time.Time, p Policy) (*Outcome, time.Duration) {
	main := executorconfig.MainStatus(pod)
	executor := executorconfig.ExecutorStatus(pod)
	mainDone := terminated(main)
	executorDone := terminated(executor)
	podDone := pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded

	switch {
	case pod.Status.Reason == "Evicted":
		return withMain(errorOutcome(v1alpha1.ReasonPodEvicted, "the Pod was evicted: "+pod.Status.Message), main), 0
	case pod.Status.Reason == "NodeLost" || pod.Status.Phase == corev1.PodUnknown:
		return withMain(errorOutcome(v1alpha1.ReasonNodeLost, "the Pod's node was lost"), main), 0
	case pod.Status.Reason == "DeadlineExceeded":
		if executorDone || !mainDone {
			return withMain(&Outcome{Phase: v1alpha1.StepRunFailed, Reason: v1alpha1.ReasonDeadlineExceeded,
				Message: deadlineMessage(sr)}, main), 0
		}
	}

	if o := loaderFailure(pod); o != nil {
		return o, 0
	}

	if msg, ok := nodeLost(pod); ok {
		return withMain(errorOutcome(v1alpha1.ReasonNodeLost, msg), main), 0
	}
	if !pod.DeletionTimestamp.IsZero() {
		if !(mainDone && executorDone || podDone) {
			// A kubelet that answers ends the containers within the grace period (the executor
			// may still report meanwhile); past it and some slack, the node is not doing its part.
			gone := pod.DeletionTimestamp.Add(p.deletionSlack())
			if now.Before(gone) {
				return nil, gone.Sub(now)
			}
			return withMain(errorOutcome(v1alpha1.ReasonNodeLost, fmt.Sprintf(
				"the Pod's node %q did not finish deleting it within its grace period: it is lost or unreachable",
				pod.Spec.NodeName)), main), 0
		}
		// Deleted while running: kubelet stopped both containers and published no exit code for
		// main in time for the executor, so the deletion, not the executor, is the cause.
		if msg, ok := EvictionMessage(pod); ok {
			return withMain(errorOutcome(v1alpha1.ReasonPodEvicted, msg), main), 0
		}
		return withMain(errorOutcome(v1alpha1.ReasonPodDeleted, PodDeletedMessage(pod.Name)), main), 0
	}
	if mainDone && (executorDone || podDone) {
		// main has ended and the executor is gone without a terminal report: kubelet does not
		// restart a sidecar once main has ended. main's exit code still comes from kubelet.
		t := main.State.Terminated
		if t.Reason == "OOMKilled" {
			return withMain(errorOutcome(v1alpha1.ReasonOOMKilled, "main was killed for exceeding its memory limit"), main), 0
		}
		if msg, ok := v1alpha1.MainStartFailure(t.Reason, t.Message); ok {
			return errorOutcome(v1alpha1.ReasonMainStartFailed, msg), 0
		}
		return withMain(errorOutcome(v1alpha1.ReasonExecutorLost,
			fmt.Sprintf("the executor ended (%s) without reporting a result", describeExecutor(executor))), main), 0
	}
	if !mainStarted(main) {
		// The executor keeps failing before main starts (a crash, a runtime error creating it, its
		// startup probe never passing): kubelet would restart it for ever, and main would wait.
		if executor != nil && executor.RestartCount >= p.executorStartRestarts() {
			return errorOutcome(v1alpha1.ReasonExecutorLost, fmt.Sprintf(
				"the executor failed %d times before main started (last: %s)", executor.RestartCount, describeExecutor(executor))), 0
		}
		if podDone {
			return errorOutcome(v1alpha1.ReasonExecutorLost,
				fmt.Sprintf("the Pod ended (%s) before main started", pod.Status.Phase)), 0
		}
	}

	if o := waitingFailure(pod, now, p); o != nil {
		return o, 0
	}

	var next time.Duration
	if d := sr.Spec.ActiveDeadlineSeconds; d != nil && !mainDone {
		deadline := pod.CreationTimestamp.Add(time.Duration(*d)*time.Second + p.DeadlineSlack)
		if !now.Before(deadline) {
			return withMain(&Outcome{Phase: v1alpha1.StepRunFailed, Reason: v1alpha1.ReasonDeadlineExceeded,
				Message: deadlineMessage(sr)}, main), 0
		}
		next = deadline.Sub(now)
	}
	if w := pullWaitRemaining(pod, now, p); w > 0 && (next == 0 || w < next) {
		next = w
	}
	return nil, next
}

// mainStarted reports whether kubelet has ever seen main run.
func mainStarted(main *corev1.ContainerStatus) bool {
	if main == nil {
		return false
	}
	if main.State.Running != nil || main.LastTerminationState.Terminated != nil || main.RestartCount > 0 {
		return true
	}
	t := main.State.Terminated
	if t == nil {
		return false
	}
	_, neverStarted := v1alpha1.MainStartFailure(t.Reason, t.Message)
	return !neverStarted
}

// mainNeverStarted reports whether main certainly never ran: kubelet never saw it run and the
// executor never reported it running. Anything less certain counts as started, since retrying
// a run whose main ran may repeat its side effects.
func mainNeverStarted(sr *v1alpha1.StepRun, pod *corev1.Pod) bool {
	if sr.Status.StartedAt != nil || sr.Status.Phase == v1alpha1.StepRunRunning ||
		meta.IsStatusConditionTrue(sr.Status.Conditions, v1alpha1.ConditionMainStarted) {
		return false
	}
	return !mainStarted(executorconfig.MainStatus(pod))
}

// ExitCodeMismatch reports kubelet's exit code for main when it differs from the executor's.
func ExitCodeMismatch(sr *v1alpha1.StepRun, pod *corev1.Pod) (int32, bool) {
	if pod == nil || sr.Status.ExitCode == nil {
		return 0, false
	}
	main := executorconfig.MainStatus(pod)
	if !terminated(main) {
		return 0, false
	}
	kubelet := main.State.Terminated.ExitCode
	return kubelet, kubelet != *sr.Status.ExitCode
}

var (
	imagePullReasons       = map[string]bool{"ErrImagePull": true, "ImagePullBackOff": true, "RegistryUnavailable": true}
	permanentImageReasons  = map[string]bool{"InvalidImageName": true, "ErrImageNeverPull": true}
	containerCreateReasons = map[string]bool{"CreateContainerConfigError": true, "CreateContainerError": true, "RunContainerError": true}
)

func waitingFailure(pod *corev1.Pod, now time.Time, p Policy) *Outcome {
	expired := !now.Before(pod.CreationTimestamp.Add(p.ImagePullGrace))
	for _, cs := range allStatuses(pod) {
		w := cs.State.Waiting
		if w == nil {
			continue
		}
		msg := fmt.Sprintf("container %s: %s: %s", cs.Name, w.Reason, w.Message)
		switch {
		// The executor's and the loader's only Secret is the artifact repository's: the kubelet
		// cannot give them the credentials, and waiting will not make the Secret appear.
		case (cs.Name == executorconfig.ExecutorContainer || cs.Name == executorconfig.LoaderContainer) &&
			w.Reason == "CreateContainerConfigError":
			return errorOutcome(v1alpha1.ReasonArtifactRepositoryUnavailable, msg)
		case permanentImageReasons[w.Reason], imagePullReasons[w.Reason] && expired:
			return errorOutcome(v1alpha1.ReasonImagePullFailed, msg)
		case containerCreateReasons[w.Reason] && expired:
			return errorOutcome(v1alpha1.ReasonContainerCreateFailed, msg)
		}
	}
	return nil
}

func pullWaitRemaining(pod *corev1.Pod, now time.Time, p Policy) time.Duration {
	for _, cs := range allStatuses(pod) {
		if w := cs.State.Waiting; w != nil && (imagePullReasons[w.Reason] || containerCreateReasons[w.Reason]) {
			return pod.CreationTimestamp.Add(p.ImagePullGrace).Sub(now)
		}
	}
	return 0
}

// loaderReasons are the reasons a loader may give; anything else reads ArtifactLoadFailed.
var loaderReasons = map[string]bool{v1alpha1.ReasonArtifactNotFound: true, v1alpha1.ReasonArtifactLoadFailed: true}

// loaderFailure ends a run whose input artifacts could not be loaded, with the reason the loader
// wrote as its termination message (or what kubelet says when it wrote none: killed, OOM).
func loaderFailure(pod *corev1.Pod) *Outcome {
	var t *corev1.ContainerStateTerminated
	for i := range pod.Status.InitContainerStatuses {
		if cs := &pod.Status.InitContainerStatuses[i]; cs.Name == executorconfig.LoaderContainer {
			t = cs.State.Terminated
		}
	}
	if t == nil || t.ExitCode == 0 {
		return nil
	}
	if f, ok := executorconfig.DecodeLoaderFailure(t.Message); ok && loaderReasons[f.Reason] {
		return errorOutcome(f.Reason, f.Message)
	}
	msg := fmt.Sprintf("loading input artifacts failed: container %s ended with exit code %d", executorconfig.LoaderContainer, t.ExitCode)
	if t.Reason != "" {
		msg += " (" + t.Reason + ")"
	}
	if t.Message != "" {
		msg += ": " + t.Message
	}
	return errorOutcome(v1alpha1.ReasonArtifactLoadFailed, msg)
}

// EvictionMessage says why a Pod being deleted was evicted, when its DisruptionTarget condition
// says so (the Eviction API, a drain, preemption, the taint manager): a deletion the user did not
// ask for, which must read PodEvicted, not PodDeleted.
func EvictionMessage(pod *corev1.Pod) (string, bool) {
	if c := disruptionTarget(pod); c != nil {
		return fmt.Sprintf("the Pod was evicted (%s): %s", c.Reason, c.Message), true
	}
	return "", false
}

// disruptionTarget is the Pod's DisruptionTarget condition when True: why it is being removed.
func disruptionTarget(pod *corev1.Pod) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if c := &pod.Status.Conditions[i]; c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue {
			return c
		}
	}
	return nil
}

// nodeLossReasons are the DisruptionTarget reasons of a Pod deleted because of its node: the
// taint manager evicts Pods from a node tainted not-ready or unreachable once their toleration
// ends (the Pod builder sets it: podspec.Config.NodeLostAfter), and the Pod garbage collector
// deletes those of a node that no longer exists.
var nodeLossReasons = map[string]bool{"DeletionByTaintManager": true, "DeletionByPodGC": true}

// nodeLost reports a Pod deleted because its node went away or stopped answering. No report can
// come from such a node in time, so the run ends at once rather than when the node returns.
func nodeLost(pod *corev1.Pod) (string, bool) {
	if pod.DeletionTimestamp.IsZero() {
		return "", false
	}
	if c := disruptionTarget(pod); c != nil && nodeLossReasons[c.Reason] {
		return fmt.Sprintf("the Pod's node %q was lost (%s): %s", pod.Spec.NodeName, c.Reason, c.Message), true
	}
	return "", false
}

// PodDeletedMessage explains a run whose Pod was deleted before it reported.
func PodDeletedMessage(pod string) string {
	return fmt.Sprintf("pod %s was deleted before the run reported a result", pod)
}

func errorOutcome(reason, message string) *Outcome {
	return &Outcome{Phase: v1alpha1.StepRunError, Reason: reason, Message: message}
}

// withMain records what kubelet knows of main: its exit code and times.
func withMain(o *Outcome, main *corev1.ContainerStatus) *Outcome {
	if main == nil {
		return o
	}
	// Times are checked against the run's creation by finish (v1alpha1.PlausibleRunTime).
	if t := main.State.Terminated; t != nil {
		code := t.ExitCode
		o.ExitCode = &code
		if !t.StartedAt.IsZero() {
			s := t.StartedAt.Time
			o.StartedAt = &s
		}
		if !t.FinishedAt.IsZero() {
			f := t.FinishedAt.Time
			o.FinishedAt = &f
		}
	} else if r := main.State.Running; r != nil && !r.StartedAt.IsZero() {
		s := r.StartedAt.Time
		o.StartedAt = &s
	}
	return o
}

func deadlineMessage(sr *v1alpha1.StepRun) string {
	return fmt.Sprintf("the run exceeded activeDeadlineSeconds (%ds)", *sr.Spec.ActiveDeadlineSeconds)
}

// allStatuses lists the init containers' statuses (the executor) and the containers' (main).
func allStatuses(pod *corev1.Pod) []*corev1.ContainerStatus {
	out := make([]*corev1.ContainerStatus, 0, len(pod.Status.InitContainerStatuses)+len(pod.Status.ContainerStatuses))
	for i := range pod.Status.InitContainerStatuses {
		out = append(out, &pod.Status.InitContainerStatuses[i])
	}
	for i := range pod.Status.ContainerStatuses {
		out = append(out, &pod.Status.ContainerStatuses[i])
	}
	return out
}

func terminated(cs *corev1.ContainerStatus) bool {
	return cs != nil && cs.State.Terminated != nil
}

// describeExecutor says how the executor last ended: its current termination, else the last
// one kubelet remembers (a restarted sidecar waits in CrashLoopBackOff), else its waiting reason.
func describeExecutor(cs *corev1.ContainerStatus) string {
	if cs == nil {
		return "no status"
	}
	t := cs.State.Terminated
	if t == nil {
		t = cs.LastTerminationState.Terminated
	}
	if t == nil {
		if w := cs.State.Waiting; w != nil {
			return w.Reason
		}
		return "no exit code"
	}
	if t.Reason != "" {
		return fmt.Sprintf("exit code %d, %s", t.ExitCode, t.Reason)
	}
	return fmt.Sprintf("exit code %d", t.ExitCode)
}

// earlierPodWait bounds how long a run waits for the Pod of an earlier StepRun of its name to go.
const earlierPodWait = time.Minute

// waitForEarlierPod says how long to wait before looking again when pod belongs to an earlier
// StepRun of sr's name (deleted and made again): the garbage collector deletes that Pod, since its
// owner is gone, and this run's own Pod can then be made. Zero means do not wait: the Pod is
// someone else's, or it outlived earlierPodWait from sr's creation.
func waitForEarlierPod(sr *v1alpha1.StepRun, pod *corev1.Pod, now time.Time) time.Duration {
	owner := metav1.GetControllerOf(pod)
	if owner == nil || owner.Kind != "StepRun" || owner.Name != sr.Name || owner.UID == sr.UID ||
		owner.APIVersion != v1alpha1.GroupVersion.String() {
		return 0
	}
	left := sr.CreationTimestamp.Add(earlierPodWait).Sub(now)
	if left <= 0 {
		return 0
	}
	return min(left, 2*time.Second)
}
