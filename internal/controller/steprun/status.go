package steprun

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

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
}

// Policy holds the durations the decision depends on.
type Policy struct {
	// ImagePullGrace is how long a Pod may sit in ErrImagePull/ImagePullBackOff (or fail to
	// create a container) before the run is given up: pulls are retried by kubelet and may
	// recover, but a run must end in bounded time.
	ImagePullGrace time.Duration
	// DeadlineSlack is added to activeDeadlineSeconds before the controller enforces the
	// deadline itself (kubelet enforces it on running Pods; nothing does on unscheduled ones).
	DeadlineSlack time.Duration
}

// DefaultPolicy is what the manager ships with.
var DefaultPolicy = Policy{ImagePullGrace: 60 * time.Second, DeadlineSlack: 15 * time.Second}

// Decide looks at the run's Pod and says whether the controller must end the run itself, and
// when to look again if nothing has happened by then. It never decides for a terminal StepRun.
func Decide(sr *v1alpha1.StepRun, pod *corev1.Pod, now time.Time, p Policy) (*Outcome, time.Duration) {
	if sr.Status.Phase.IsTerminal() || pod == nil {
		return nil, 0
	}
	main := containerStatus(pod, executorconfig.MainContainer)
	executor := containerStatus(pod, executorconfig.ExecutorContainer)
	mainDone := terminated(main)
	executorDone := terminated(executor)

	switch {
	case pod.Status.Reason == "Evicted":
		return withMain(errorOutcome(v1alpha1.ReasonPodEvicted, "the Pod was evicted: "+pod.Status.Message), main), 0
	case pod.Status.Reason == "NodeLost" || pod.Status.Phase == corev1.PodUnknown:
		return withMain(errorOutcome(v1alpha1.ReasonNodeLost, "the Pod's node was lost"), main), 0
	case pod.Status.Reason == "DeadlineExceeded":
		if executorDone || !mainDone {
			o := withMain(&Outcome{Phase: v1alpha1.StepRunFailed, Reason: v1alpha1.ReasonDeadlineExceeded,
				Message: deadlineMessage(sr)}, main)
			return o, 0
		}
	}

	if !pod.DeletionTimestamp.IsZero() {
		// Deleted while running: kubelet stops both containers and publishes no exit code for
		// main in time for the executor, so the deletion, not the executor, is the cause.
		if mainDone && executorDone || pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded {
			return withMain(errorOutcome(v1alpha1.ReasonPodDeleted, PodDeletedMessage(pod.Name)), main), 0
		}
		return nil, 0 // the executor may still report within its grace period
	}
	if mainDone && executorDone {
		// Both containers are gone and no terminal report arrived: the executor died first or
		// failed to report. main's exit code still comes from kubelet.
		if main.State.Terminated.Reason == "OOMKilled" {
			return withMain(errorOutcome(v1alpha1.ReasonOOMKilled, "main was killed for exceeding its memory limit"), main), 0
		}
		return withMain(errorOutcome(v1alpha1.ReasonExecutorLost,
			fmt.Sprintf("the executor ended (%s) without reporting a result", describe(executor))), main), 0
	}
	if executorDone && main == nil || executorDone && main.State.Waiting != nil {
		// The executor's postStart hook failed or it crashed before main was created: kubelet
		// will never start main.
		if pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded {
			return errorOutcome(v1alpha1.ReasonExecutorLost,
				fmt.Sprintf("the executor ended (%s) before main started", describe(executor))), 0
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

// ExitCodeMismatch reports kubelet's exit code for main when it differs from the executor's.
func ExitCodeMismatch(sr *v1alpha1.StepRun, pod *corev1.Pod) (int32, bool) {
	if pod == nil || sr.Status.ExitCode == nil {
		return 0, false
	}
	main := containerStatus(pod, executorconfig.MainContainer)
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
	for i := range pod.Status.ContainerStatuses {
		cs := &pod.Status.ContainerStatuses[i]
		w := cs.State.Waiting
		if w == nil {
			continue
		}
		msg := fmt.Sprintf("container %s: %s: %s", cs.Name, w.Reason, w.Message)
		switch {
		case permanentImageReasons[w.Reason], imagePullReasons[w.Reason] && expired:
			return errorOutcome(v1alpha1.ReasonImagePullFailed, msg)
		case containerCreateReasons[w.Reason] && expired:
			return errorOutcome(v1alpha1.ReasonContainerCreateFailed, msg)
		}
	}
	return nil
}

func pullWaitRemaining(pod *corev1.Pod, now time.Time, p Policy) time.Duration {
	for _, cs := range pod.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && (imagePullReasons[w.Reason] || containerCreateReasons[w.Reason]) {
			return pod.CreationTimestamp.Add(p.ImagePullGrace).Sub(now)
		}
	}
	return 0
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

func containerStatus(pod *corev1.Pod, name string) *corev1.ContainerStatus {
	for i := range pod.Status.ContainerStatuses {
		if pod.Status.ContainerStatuses[i].Name == name {
			return &pod.Status.ContainerStatuses[i]
		}
	}
	return nil
}

func terminated(cs *corev1.ContainerStatus) bool {
	return cs != nil && cs.State.Terminated != nil
}

func describe(cs *corev1.ContainerStatus) string {
	t := cs.State.Terminated
	if t.Reason != "" {
		return fmt.Sprintf("exit code %d, %s", t.ExitCode, t.Reason)
	}
	return fmt.Sprintf("exit code %d", t.ExitCode)
}
