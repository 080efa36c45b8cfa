package v1alpha1

import (
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestStagesAreTheIntervalsBetweenKnownMarks(t *testing.T) {
	created := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return created.Add(time.Duration(ms) * time.Millisecond) }
	all := StepRunTimings{
		PodCreated:      MicroTimeOf(at(0)),
		PodScheduled:    MicroTimeOf(at(1000)),
		ExecutorStarted: MicroTimeOf(at(1800)),
		MainStarted:     MicroTimeOf(at(3100)),
		MainExited:      MicroTimeOf(at(3150)),
		Reported:        MicroTimeOf(at(3190)),
	}
	ms := time.Millisecond
	tests := map[string]struct {
		timings *StepRunTimings
		want    []Stage
	}{
		"no timings": {nil, nil},
		"every mark": {&all, []Stage{
			{StagePodCreate, 0}, {StageSchedule, 1000 * ms}, {StageExecutorStart, 800 * ms},
			{StageMainStart, 1300 * ms}, {StageMain, 50 * ms}, {StageReport, 40 * ms},
		}},
		"a missing mark drops both stages that touch it": {
			&StepRunTimings{PodCreated: all.PodCreated, ExecutorStarted: all.ExecutorStarted,
				MainStarted: all.MainStarted},
			[]Stage{{StagePodCreate, 0}, {StageMainStart, 1300 * ms}},
		},
		"a second-precision mark a little after a finer one counts as zero": {
			&StepRunTimings{ExecutorStarted: MicroTimeOf(at(2400)), MainStarted: MicroTimeOf(at(2000))},
			[]Stage{{StageMainStart, 0}},
		},
		"the kubelet's exit a truncated second before its start counts as zero": {
			// containerd stamps a container's start when its start call returns, after a main
			// as short as `true` may have exited: 51.998 and 52.003 read 51 and 52.
			&StepRunTimings{MainStarted: MicroTimeOf(at(2000)), MainExited: MicroTimeOf(at(1000))},
			[]Stage{{StageMain, 0}},
		},
		"an impossible interval is left out": {
			&StepRunTimings{MainStarted: MicroTimeOf(at(5000)), MainExited: MicroTimeOf(at(1000)),
				Reported: MicroTimeOf(at(5100))},
			[]Stage{{StageReport, 4100 * ms}},
		},
		"a Pod created before the run (clock skew) is left out": {
			&StepRunTimings{PodCreated: MicroTimeOf(created.Add(-3 * time.Second))},
			nil,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tc.timings.Stages(created); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Stages() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestMergeTimingsKeepsWhatWasRecordedFirst(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	first, later := MicroTimeOf(t0), MicroTimeOf(t0.Add(time.Minute))
	got := MergeTimings(&StepRunTimings{ExecutorStarted: first},
		StepRunTimings{ExecutorStarted: later, MainExited: later})
	want := &StepRunTimings{ExecutorStarted: first, MainExited: later}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("MergeTimings = %+v, want %+v", got, want)
	}
	if got := MergeTimings(nil, StepRunTimings{}); got != nil {
		t.Errorf("MergeTimings of nothing = %+v, want nil (no field in the status)", got)
	}
}

func TestWithMainLeavesUnknownTimesUnset(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	pod := StepRunTimings{PodCreated: MicroTimeOf(t0)}
	got := pod.WithMain(t0.Add(time.Second), time.Time{})
	want := StepRunTimings{PodCreated: MicroTimeOf(t0), MainStarted: MicroTimeOf(t0.Add(time.Second))}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("WithMain = %+v, want %+v", got, want)
	}
}

func TestPodTimingsReadCreationAndScheduling(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(t0)}}
	if got := PodTimings(pod); got.PodScheduled != nil || !got.PodCreated.Time.Equal(t0) {
		t.Errorf("unscheduled Pod: %+v", got)
	}
	pod.Status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(t0.Add(time.Hour))},
		{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, LastTransitionTime: metav1.NewTime(t0.Add(time.Second))},
	}
	if got := PodTimings(pod); got.PodScheduled != nil {
		t.Errorf("a Pod not yet scheduled has scheduled time %v", got.PodScheduled)
	}
	pod.Status.Conditions[1].Status = corev1.ConditionTrue
	if got := PodTimings(pod); got.PodScheduled == nil || !got.PodScheduled.Time.Equal(t0.Add(time.Second)) {
		t.Errorf("scheduled Pod: %+v, want scheduled at %v", got, t0.Add(time.Second))
	}
}
