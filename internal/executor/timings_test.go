package executor

import (
	"context"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// scheduledPod is a Pod created at t0 - 3 s and scheduled at t0 - 2 s, with main in state.
func scheduledPod(rv string, state corev1.ContainerState) corev1.Pod {
	return pod(rv, state, func(p *corev1.Pod) {
		p.CreationTimestamp = metav1.NewTime(t0.Add(-3 * time.Second))
		p.Status.Conditions = []corev1.PodCondition{
			{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(t0)},
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(t0.Add(-2 * time.Second))},
		}
	})
}

func TestRunRecordsTheStageTimesItSaw(t *testing.T) {
	e, fp, _, rep := newTestExecutor(t)
	root, err := os.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	e.Finder = findsAfterReady(42)
	// main started 350 ms before it was found, on the boot clock.
	e.Securer = secureFunc(func(pid int) (*MainProcess, error) {
		return &MainProcess{PID: pid, Root: root, Started: time.Second}, nil
	})
	e.BootTime = func() time.Duration { return time.Second + 350*time.Millisecond }
	reported := make(chan struct{})
	rep.onRunning = func() { close(reported) }
	e.Waiter = waitFunc(func(context.Context, *MainProcess) error {
		<-reported
		p := scheduledPod("2", terminated(0, "Completed"))
		fp.observe(&p, false)
		return nil
	})
	p := scheduledPod("1", running)
	fp.observe(&p, false)

	before := time.Now()
	if err := e.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	got := e.Timings()
	if !got.PodCreated.Equal(ptr(metav1.NewMicroTime(t0.Add(-3*time.Second)))) ||
		!got.PodScheduled.Equal(ptr(metav1.NewMicroTime(t0.Add(-2*time.Second)))) {
		t.Errorf("Pod times = %v, %v; want the Pod's creation and PodScheduled condition", got.PodCreated, got.PodScheduled)
	}
	if got.ExecutorStarted == nil || got.ExecutorStarted.After(after) || got.ExecutorStarted.Time.Before(before) {
		t.Errorf("executorStarted = %v, want when Run started (between %v and %v)", got.ExecutorStarted, before, after)
	}
	if got.MainStarted == nil || got.MainExited == nil {
		t.Fatalf("main's times = %v, %v; want both from the executor's own clock", got.MainStarted, got.MainExited)
	}
	// The executor's own view, not the kubelet's one-second times (t0, t1).
	if ran := got.MainExited.Sub(got.MainStarted.Time); ran < 350*time.Millisecond || ran > 350*time.Millisecond+after.Sub(before) {
		t.Errorf("main ran %v by the recorded times, want 350 ms plus at most the test's own run", ran)
	}
	if got.Reported != nil {
		t.Errorf("reported = %v: only the reporter stamps it", got.Reported)
	}
}

func TestRunTakesMainsTimesFromTheKubeletWhenItNeverSawMain(t *testing.T) {
	e, fp, _, _ := newTestExecutor(t)
	e.Finder = neverFinds()
	e.Ready = func() error {
		p := scheduledPod("1", terminated(1, "Error"))
		fp.observe(&p, false)
		return nil
	}
	if err := e.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := e.Timings()
	if !got.MainStarted.Equal(ptr(metav1.NewMicroTime(t0))) || !got.MainExited.Equal(ptr(metav1.NewMicroTime(t1))) {
		t.Errorf("main's times = %v, %v; want the kubelet's %v, %v", got.MainStarted, got.MainExited, t0, t1)
	}
}

func TestBootToWall(t *testing.T) {
	wall := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		at, boot time.Duration
		want     time.Time
	}{
		{"an instant before now", 10 * time.Second, 12500 * time.Millisecond, wall.Add(-2500 * time.Millisecond)},
		{"unknown", 0, 12 * time.Second, time.Time{}},
		{"in the future: not believed", 13 * time.Second, 12 * time.Second, time.Time{}},
	}
	for _, tc := range tests {
		if got := bootToWall(tc.at, tc.boot, wall); !got.Equal(tc.want) {
			t.Errorf("%s: bootToWall = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// initialised is when the test binary's package variables were set: just after it started.
var initialised = time.Now()

func TestProcessStartIsThisProcesssStart(t *testing.T) {
	got, boot := processStart(DefaultProcRoot)
	if boot <= 0 || boot > bootTime() {
		t.Errorf("processStart on the boot clock = %v, now %v", boot, bootTime())
	}
	// /proc's start time has 10 ms ticks, and the Go runtime starts in far less than 2 s.
	if got.After(initialised.Add(10*time.Millisecond)) || initialised.Sub(got) > 2*time.Second {
		t.Errorf("processStart = %v, the package initialised at %v", got, initialised)
	}
}

func TestMainStartIsWhenItWasFoundUnlessItPredatesTheExecutor(t *testing.T) {
	s := time.Second
	tests := []struct {
		name                           string
		process, found, executor, want time.Duration
	}{
		{"found within a scan of its exec; the runtime's init started earlier", 10 * s, 12 * s, 5 * s, 12 * s},
		{"older than a restarted executor: only its start is known", 10 * s, 60 * s, 50 * s, 10 * s},
		{"process start unknown", 0, 12 * s, 5 * s, 12 * s},
		{"executor start unknown", 10 * s, 12 * s, 0, 12 * s},
	}
	for _, tc := range tests {
		if got := mainStart(tc.process, tc.found, tc.executor); got != tc.want {
			t.Errorf("%s: mainStart = %v, want %v", tc.name, got, tc.want)
		}
	}
}
