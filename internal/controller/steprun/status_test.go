package steprun

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

type podOpt func(*corev1.Pod)

func testPod(opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "s-pod", CreationTimestamp: metav1.NewTime(t0)},
		Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	for _, o := range opts {
		o(p)
	}
	return p
}

func container(name string, state corev1.ContainerState) podOpt {
	return func(p *corev1.Pod) {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{Name: name, State: state})
	}
}

// sidecar is the executor's status: a native sidecar, listed with the init containers.
func sidecar(state corev1.ContainerState, restarts ...int32) podOpt {
	return func(p *corev1.Pod) {
		cs := corev1.ContainerStatus{Name: "pns-executor", State: state}
		if len(restarts) > 0 {
			cs.RestartCount = restarts[0]
			cs.LastTerminationState = exited(2, "Error")
		}
		p.Status.InitContainerStatuses = append(p.Status.InitContainerStatuses, cs)
	}
}

// loader is the input loader's status, an init container before the executor.
func loader(state corev1.ContainerState) podOpt {
	return func(p *corev1.Pod) {
		p.Status.InitContainerStatuses = append(p.Status.InitContainerStatuses, corev1.ContainerStatus{Name: "load-artifacts", State: state})
	}
}

func loaderExit(code int32, reason, message string) corev1.ContainerState {
	st := exited(code, reason)
	st.Terminated.Message = message
	return st
}

func podPhase(phase corev1.PodPhase, reason string) podOpt {
	return func(p *corev1.Pod) { p.Status.Phase, p.Status.Reason = phase, reason }
}

func running() corev1.ContainerState {
	return corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(t0.Add(time.Second))}}
}

func exited(code int32, reason string) corev1.ContainerState {
	return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason,
		StartedAt: metav1.NewTime(t0.Add(time.Second)), FinishedAt: metav1.NewTime(t0.Add(3 * time.Second))}}
}

func waiting(reason string) corev1.ContainerState {
	return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: "details"}}
}

func stepRun(phase v1alpha1.StepRunPhase, deadline *int64) *v1alpha1.StepRun {
	return &v1alpha1.StepRun{Spec: v1alpha1.StepRunSpec{Image: "busybox", ActiveDeadlineSeconds: deadline},
		Status: v1alpha1.StepRunStatus{Phase: phase}}
}

func TestDecide(t *testing.T) {
	started, finished := t0.Add(time.Second), t0.Add(3*time.Second)
	withTimes := func(o Outcome, code int32) *Outcome {
		o.ExitCode, o.StartedAt, o.FinishedAt = &code, &started, &finished
		return &o
	}
	tests := []struct {
		name     string
		sr       *v1alpha1.StepRun
		pod      *corev1.Pod
		now      time.Time
		want     *Outcome
		wantNext time.Duration
	}{
		{name: "terminal run is never decided again", sr: stepRun(v1alpha1.StepRunFailed, nil),
			pod: testPod(sidecar(exited(1, "Error")), container("main", exited(0, "Completed")))},
		{name: "both running: the executor is in charge", sr: stepRun(v1alpha1.StepRunRunning, nil),
			pod: testPod(sidecar(running()), container("main", running()))},
		{name: "main exited, executor still collecting", sr: stepRun(v1alpha1.StepRunRunning, nil),
			pod: testPod(sidecar(running()), container("main", exited(3, "Error")))},
		{name: "executor died first: main's exit code kept", sr: stepRun(v1alpha1.StepRunRunning, nil),
			pod: testPod(podPhase(corev1.PodFailed, ""), sidecar(exited(137, "Error")), container("main", exited(4, "Error"))),
			want: withTimes(Outcome{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonExecutorLost,
				Message: "the executor ended (exit code 137, Error) without reporting a result"}, 4)},
		{name: "executor died, main still running: wait for main's exit code", sr: stepRun(v1alpha1.StepRunRunning, nil),
			pod: testPod(sidecar(exited(137, "Error")), container("main", running()))},
		{name: "OOMKilled main", sr: stepRun(v1alpha1.StepRunRunning, nil),
			pod: testPod(podPhase(corev1.PodFailed, ""), sidecar(exited(0, "Completed")), container("main", exited(137, "OOMKilled"))),
			want: withTimes(Outcome{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonOOMKilled,
				Message: "main was killed for exceeding its memory limit"}, 137)},
		{name: "the Pod ended before main started", sr: stepRun(v1alpha1.StepRunPending, nil),
			pod: testPod(podPhase(corev1.PodFailed, ""), sidecar(exited(1, "Error")), container("main", waiting("PodInitializing"))),
			want: &Outcome{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonExecutorLost,
				Message: "the Pod ended (Failed) before main started", MainNeverStarted: true}},
		{name: "executor restarting while main runs: kubelet brings it back", sr: stepRun(v1alpha1.StepRunRunning, nil),
			pod: testPod(sidecar(waiting("CrashLoopBackOff"), 2), container("main", running()))},
		{name: "executor restarted once before main started: kubelet may yet start it", sr: stepRun(v1alpha1.StepRunPending, nil),
			pod: testPod(podPhase(corev1.PodPending, ""), sidecar(waiting("CrashLoopBackOff"), 1), container("main", waiting("PodInitializing")))},
		{name: "executor failed three times before main started: given up, safe to retry", sr: stepRun(v1alpha1.StepRunPending, nil),
			pod: testPod(podPhase(corev1.PodPending, ""), sidecar(waiting("CrashLoopBackOff"), 3), container("main", waiting("PodInitializing"))),
			want: &Outcome{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonExecutorLost,
				Message: "the executor failed 3 times before main started (last: exit code 2, Error)", MainNeverStarted: true, ExecutorRestarts: 3}},
		{name: "main ended while the executor waited to be restarted: lost, main's exit code kept", sr: stepRun(v1alpha1.StepRunRunning, nil),
			pod: testPod(podPhase(corev1.PodSucceeded, ""), sidecar(waiting("CrashLoopBackOff"), 1), container("main", exited(0, "Completed"))),
			want: func() *Outcome {
				o := withTimes(Outcome{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonExecutorLost,
					Message: "the executor ended (exit code 2, Error) without reporting a result"}, 0)
				o.ExecutorRestarts = 1
				return o
			}()},
		{name: "the runtime could not start main: never started, no impossible times", sr: stepRun(v1alpha1.StepRunPending, nil),
			pod: testPod(podPhase(corev1.PodFailed, ""), sidecar(exited(0, "Completed")), container("main", corev1.ContainerState{
				Terminated: &corev1.ContainerStateTerminated{ExitCode: 128, Reason: "StartError", Message: "runc create failed",
					StartedAt: metav1.NewTime(time.Unix(0, 0)), FinishedAt: metav1.NewTime(t0.Add(time.Second))}})),
			want: &Outcome{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonMainStartFailed,
				Message: "the container runtime could not start main (StartError): runc create failed", MainNeverStarted: true}},
		{name: "a Pod made before the executor was a sidecar: executor among the containers", sr: stepRun(v1alpha1.StepRunRunning, nil),
			pod: testPod(podPhase(corev1.PodFailed, ""), container("pns-executor", exited(137, "Error")), container("main", exited(4, "Error"))),
			want: withTimes(Outcome{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonExecutorLost,
				Message: "the executor ended (exit code 137, Error) without reporting a result"}, 4)},
		{name: "deleted while running: kubelet stopped both, main's exit code kept", sr: stepRun(v1alpha1.StepRunRunning, nil),
			pod: testPod(func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: t0.Add(2 * time.Second)} },
				podPhase(corev1.PodFailed, ""), sidecar(exited(3, "Error")), container("main", exited(143, "Error"))),
			want: withTimes(Outcome{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonPodDeleted,
				Message: "pod s-pod was deleted before the run reported a result"}, 143)},
		{name: "being deleted, containers still stopping: the executor may yet report; look again past the grace period", sr: stepRun(v1alpha1.StepRunRunning, nil),
			pod: testPod(func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: t0.Add(2 * time.Second)} },
				sidecar(running()), container("main", exited(143, "Error"))),
			wantNext: 27 * time.Second},
		{name: "being deleted past its grace period and the slack, its node silent: node lost", sr: stepRun(v1alpha1.StepRunRunning, nil),
			pod: testPod(func(p *corev1.Pod) {
				p.DeletionTimestamp, p.Spec.NodeName = &metav1.Time{Time: t0.Add(2 * time.Second)}, "worker-1"
			}, sidecar(running()), container("main", running())),
			now: t0.Add(32 * time.Second),
			want: &Outcome{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonNodeLost, StartedAt: new(t0.Add(time.Second)),
				Message: `the Pod's node "worker-1" did not finish deleting it within its grace period: it is lost or unreachable`}},
		{name: "evicted by the taint manager from a node not ready or unreachable: node lost at once", sr: stepRun(v1alpha1.StepRunRunning, nil),
			pod: testPod(func(p *corev1.Pod) {
				p.DeletionTimestamp, p.Spec.NodeName = &metav1.Time{Time: t0.Add(90 * time.Second)}, "worker-2"
				p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.DisruptionTarget,
					Status: corev1.ConditionTrue, Reason: "DeletionByTaintManager", Message: "Taint manager: deleting due to NoExecute taint"})
			}, sidecar(running()), container("main", running())),
			want: &Outcome{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonNodeLost, StartedAt: new(t0.Add(time.Second)),
				Message: `the Pod's node "worker-2" was lost (DeletionByTaintManager): Taint manager: deleting due to NoExecute taint`}},
		{name: "deleted by the Pod garbage collector, its node gone: node lost", sr: stepRun(v1alpha1.StepRunPending, nil),
			pod: testPod(func(p *corev1.Pod) {
				p.DeletionTimestamp, p.Spec.NodeName = &metav1.Time{Time: t0}, "worker-3"
				p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.DisruptionTarget,
					Status: corev1.ConditionTrue, Reason: "DeletionByPodGC", Message: "PodGC: node no longer exists"})
			}),
			want: &Outcome{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonNodeLost, MainNeverStarted: true,
				Message: `the Pod's node "worker-3" was lost (DeletionByPodGC): PodGC: node no longer exists`}},
		{name: "evicted", sr: stepRun(v1alpha1.StepRunRunning, nil),
			pod: testPod(func(p *corev1.Pod) {
				p.Status.Phase, p.Status.Reason, p.Status.Message = corev1.PodFailed, "Evicted", "low on memory"
			}),
			want: &Outcome{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonPodEvicted, Message: "the Pod was evicted: low on memory"}},
		{name: "node lost", sr: stepRun(v1alpha1.StepRunRunning, nil), pod: testPod(podPhase(corev1.PodUnknown, "")),
			want: &Outcome{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonNodeLost, Message: "the Pod's node was lost"}},
		{name: "kubelet enforced the deadline", sr: stepRun(v1alpha1.StepRunRunning, new(int64(5))),
			pod: testPod(podPhase(corev1.PodFailed, "DeadlineExceeded"), sidecar(exited(143, "Error")), container("main", exited(143, "Error"))),
			want: withTimes(Outcome{Phase: v1alpha1.StepRunFailed, Reason: v1alpha1.ReasonDeadlineExceeded,
				Message: "the run exceeded activeDeadlineSeconds (5s)"}, 143)},
		{name: "deadline on a Pod nobody runs: the controller enforces it", sr: stepRun(v1alpha1.StepRunPending, new(int64(5))),
			pod: testPod(podPhase(corev1.PodPending, "")), now: t0.Add(20 * time.Second),
			want: &Outcome{Phase: v1alpha1.StepRunFailed, Reason: v1alpha1.ReasonDeadlineExceeded, Message: "the run exceeded activeDeadlineSeconds (5s)", MainNeverStarted: true}},
		{name: "deadline not reached: look again when it is", sr: stepRun(v1alpha1.StepRunPending, new(int64(5))),
			pod: testPod(podPhase(corev1.PodPending, "")), now: t0.Add(10 * time.Second), wantNext: 10 * time.Second},
		{name: "invalid image name fails at once", sr: stepRun(v1alpha1.StepRunPending, nil),
			pod:  testPod(sidecar(running()), container("main", waiting("InvalidImageName"))),
			want: &Outcome{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonImagePullFailed, Message: "container main: InvalidImageName: details", MainNeverStarted: true}},
		{name: "pull failure within the grace period: look again at its end", sr: stepRun(v1alpha1.StepRunPending, nil),
			pod: testPod(sidecar(running()), container("main", waiting("ImagePullBackOff"))), now: t0.Add(20 * time.Second),
			wantNext: 40 * time.Second},
		{name: "pull failure past the grace period", sr: stepRun(v1alpha1.StepRunPending, nil),
			pod: testPod(sidecar(running()), container("main", waiting("ErrImagePull"))), now: t0.Add(61 * time.Second),
			want: &Outcome{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonImagePullFailed, Message: "container main: ErrImagePull: details", MainNeverStarted: true}},
		{name: "executor image cannot be pulled", sr: stepRun(v1alpha1.StepRunPending, nil),
			pod: testPod(sidecar(waiting("ImagePullBackOff")), container("main", waiting("ContainerCreating"))), now: t0.Add(2 * time.Minute),
			want: &Outcome{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonImagePullFailed, Message: "container pns-executor: ImagePullBackOff: details", MainNeverStarted: true}},
		{name: "missing ConfigMap past the grace period", sr: stepRun(v1alpha1.StepRunPending, nil),
			pod: testPod(sidecar(running()), container("main", waiting("CreateContainerConfigError"))), now: t0.Add(2 * time.Minute),
			want: &Outcome{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonContainerCreateFailed, Message: "container main: CreateContainerConfigError: details", MainNeverStarted: true}},
		{name: "evicted through the Eviction API: PodEvicted, not PodDeleted", sr: stepRun(v1alpha1.StepRunRunning, nil),
			pod: testPod(podPhase(corev1.PodFailed, ""), evicting(), sidecar(exited(143, "Error")), container("main", exited(137, "Error"))),
			want: withTimes(Outcome{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonPodEvicted,
				Message: "the Pod was evicted (EvictionByEvictionAPI): Eviction API: evicting"}, 137)},
		{name: "the executor cannot get the artifact repository's Secret: unavailable at once", sr: stepRun(v1alpha1.StepRunPending, nil),
			pod: testPod(podPhase(corev1.PodPending, ""), sidecar(waiting("CreateContainerConfigError")), container("main", waiting("PodInitializing"))), now: t0.Add(2 * time.Second),
			want: &Outcome{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonArtifactRepositoryUnavailable, Message: "container pns-executor: CreateContainerConfigError: details", MainNeverStarted: true}},
		{name: "a missing input: the loader's reason and message", sr: stepRun(v1alpha1.StepRunPending, nil),
			pod: testPod(podPhase(corev1.PodFailed, ""), loader(loaderExit(1, "Error", `{"reason":"ArtifactNotFound","message":"input artifact \"a\": key ns/x/a does not exist"}`)),
				sidecar(waiting("PodInitializing")), container("main", waiting("PodInitializing"))),
			want: &Outcome{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonArtifactNotFound,
				Message: `input artifact "a": key ns/x/a does not exist`, MainNeverStarted: true}},
		{name: "a loader killed before it said why: what kubelet knows", sr: stepRun(v1alpha1.StepRunPending, nil),
			pod: testPod(podPhase(corev1.PodFailed, ""), loader(loaderExit(137, "OOMKilled", "")), container("main", waiting("PodInitializing"))),
			want: &Outcome{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonArtifactLoadFailed,
				Message: "loading input artifacts failed: container load-artifacts ended with exit code 137 (OOMKilled)", MainNeverStarted: true}},
		{name: "a loader's reason that is not one it may give reads ArtifactLoadFailed", sr: stepRun(v1alpha1.StepRunPending, nil),
			pod: testPod(podPhase(corev1.PodFailed, ""), loader(loaderExit(1, "Error", `{"reason":"Succeeded","message":"no"}`)), container("main", waiting("PodInitializing"))),
			want: &Outcome{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonArtifactLoadFailed,
				Message: `loading input artifacts failed: container load-artifacts ended with exit code 1 (Error): {"reason":"Succeeded","message":"no"}`, MainNeverStarted: true}},
		{name: "inputs loaded: the executor is in charge", sr: stepRun(v1alpha1.StepRunRunning, nil),
			pod: testPod(loader(exited(0, "Completed")), sidecar(running()), container("main", running()))},
		{name: "the loader cannot get the artifact repository's Secret: unavailable at once", sr: stepRun(v1alpha1.StepRunPending, nil),
			pod: testPod(podPhase(corev1.PodPending, ""), loader(waiting("CreateContainerConfigError")), container("main", waiting("PodInitializing"))), now: t0.Add(2 * time.Second),
			want: &Outcome{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonArtifactRepositoryUnavailable, Message: "container load-artifacts: CreateContainerConfigError: details", MainNeverStarted: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := tt.now
			if now.IsZero() {
				now = t0.Add(5 * time.Second)
			}
			got, next := Decide(tt.sr, tt.pod, now, DefaultPolicy)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("outcome (-want +got):\n%s", diff)
			}
			if next != tt.wantNext {
				t.Errorf("next look = %v, want %v", next, tt.wantNext)
			}
		})
	}
}

func TestExitCodeMismatch(t *testing.T) {
	sr := stepRun(v1alpha1.StepRunSucceeded, nil)
	sr.Status.ExitCode = new(int32(0))
	if _, bad := ExitCodeMismatch(sr, testPod(container("main", exited(0, "Completed")))); bad {
		t.Error("agreeing exit codes reported as a mismatch")
	}
	if code, bad := ExitCodeMismatch(sr, testPod(container("main", exited(2, "Error")))); !bad || code != 2 {
		t.Errorf("mismatch = %v (kubelet %d), want true (2)", bad, code)
	}
	if _, bad := ExitCodeMismatch(sr, testPod(container("main", running()))); bad {
		t.Error("a running main cannot disagree")
	}
}

// evicting marks a Pod as the Eviction API leaves it: being deleted, with a DisruptionTarget condition.
func evicting() podOpt {
	return func(p *corev1.Pod) {
		now := metav1.Now()
		p.DeletionTimestamp = &now
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.DisruptionTarget,
			Status: corev1.ConditionTrue, Reason: "EvictionByEvictionAPI", Message: "Eviction API: evicting"})
	}
}

func TestWaitForEarlierPod(t *testing.T) {
	sr := stepRun(v1alpha1.StepRunPending, nil)
	sr.UID = "new"
	owned := func(kind, name, uid string) *corev1.Pod {
		return testPod(func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: v1alpha1.GroupVersion.String(), Kind: kind,
				Name: name, UID: types.UID(uid), Controller: new(true)}}
		})
	}
	created := sr.CreationTimestamp.Time
	tests := []struct {
		name string
		pod  *corev1.Pod
		now  time.Time
		want time.Duration
	}{
		{"an earlier StepRun of this name: look again soon", owned("StepRun", sr.Name, "old"), created.Add(time.Second), 2 * time.Second},
		{"near the end of the wait: only what is left", owned("StepRun", sr.Name, "old"), created.Add(59500 * time.Millisecond), 500 * time.Millisecond},
		{"still there a minute after the run was made: give up", owned("StepRun", sr.Name, "old"), created.Add(time.Minute), 0},
		{"another StepRun's name", owned("StepRun", "other", "old"), created, 0},
		{"not a StepRun's", owned("Job", sr.Name, "old"), created, 0},
		{"no owner", testPod(), created, 0},
	}
	for _, tc := range tests {
		if got := waitForEarlierPod(sr, tc.pod, tc.now); got != tc.want {
			t.Errorf("%s: wait %v, want %v", tc.name, got, tc.want)
		}
	}
}
