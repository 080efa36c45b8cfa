package runview

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/cli/tree"
	. "github.com/pnsflow/pnsflow/internal/testutil"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func at(sec int) *metav1.Time { return &metav1.Time{Time: t0.Add(time.Duration(sec) * time.Second)} }

func code(n int32) *int32 { return &n }

// child is a StepRun of run "wf" (UID "u1") as the controller labels it.
func child(step string, item, attempt int, phase v1alpha1.StepRunPhase, exit *int32, start, end int) *v1alpha1.StepRun {
	name := "wf-" + step
	labels := map[string]string{v1alpha1.LabelStep: step, v1alpha1.LabelAttempt: strconv.Itoa(attempt)}
	if item >= 0 {
		name += "-" + strconv.Itoa(item)
		labels[v1alpha1.LabelItem] = strconv.Itoa(item)
	}
	if attempt > 0 {
		name += fmt.Sprintf("-r%d", attempt)
	}
	sr := MakeStepRun(name, "ns").Obj()
	sr.Labels = labels
	sr.OwnerReferences = []metav1.OwnerReference{{APIVersion: "workflows.pnsflow.dev/v1alpha1", Kind: "WorkflowRun", Name: "wf", UID: "u1", Controller: new(true)}}
	sr.Status = v1alpha1.StepRunStatus{Phase: phase, ExitCode: exit}
	if start >= 0 {
		sr.Status.StartedAt = at(start)
	}
	if end >= 0 {
		sr.Status.FinishedAt = at(end)
	}
	if phase == v1alpha1.StepRunFailed {
		sr.Status.Reason = v1alpha1.ReasonExitCode
	}
	return sr
}

func TestObserveListsOnlyItemsWhoseLatestAttemptFailed(t *testing.T) {
	cases := []struct {
		name string
		seen []*v1alpha1.StepRun
		want []int
	}{
		{"a failed item is listed", []*v1alpha1.StepRun{child("fan", 3, 0, v1alpha1.StepRunFailed, code(1), 0, 2)}, []int{3}},
		{"a succeeded item is not", []*v1alpha1.StepRun{child("fan", 3, 0, v1alpha1.StepRunSucceeded, code(0), 0, 2)}, nil},
		{"a retry of a failed item removes it", []*v1alpha1.StepRun{
			child("fan", 3, 0, v1alpha1.StepRunFailed, code(1), 0, 2), child("fan", 3, 1, v1alpha1.StepRunPending, nil, -1, -1)}, nil},
		{"a failed retry lists the item again", []*v1alpha1.StepRun{
			child("fan", 3, 0, v1alpha1.StepRunFailed, code(1), 0, 2), child("fan", 3, 1, v1alpha1.StepRunPending, nil, -1, -1),
			child("fan", 3, 1, v1alpha1.StepRunFailed, code(2), 3, 4)}, []int{3}},
		{"an older attempt seen late does not hide the newer one's failure", []*v1alpha1.StepRun{
			child("fan", 3, 1, v1alpha1.StepRunFailed, code(2), 3, 4), child("fan", 3, 0, v1alpha1.StepRunFailed, code(1), 0, 2)}, []int{3}},
		{"seeing the same StepRun twice (a re-list) lists it once", []*v1alpha1.StepRun{
			child("fan", 5, 0, v1alpha1.StepRunError, nil, -1, 1), child("fan", 5, 0, v1alpha1.StepRunError, nil, -1, 1)}, []int{5}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := NewWorkflow("u1", false)
			for _, sr := range tc.seen {
				w.Observe(sr)
			}
			var got []int
			if f := w.steps["fan"]; f != nil {
				for i := range f.failed {
					got = append(got, i)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("failed items (-want +got):\n%s", diff)
			}
		})
	}
}

func TestObserveKeepsMemoryBoundedByStepsNotItems(t *testing.T) {
	w := NewWorkflow("u1", false)
	for i := range 5000 {
		phase := v1alpha1.StepRunSucceeded
		if i%10 == 0 {
			phase = v1alpha1.StepRunFailed
		}
		w.Observe(child("fan", i, 0, phase, code(1), i%60, i%60+5))
	}
	f := w.steps["fan"]
	if len(w.steps) != 1 || len(f.failed) != MaxFailedItems {
		t.Fatalf("remembered %d steps and %d failed items, want 1 and %d", len(w.steps), len(f.failed), MaxFailedItems)
	}
	if !f.first.Equal(t0) || !f.last.Equal(t0.Add(64*time.Second)) {
		t.Errorf("first %s last %s", f.first, f.last)
	}
}

func TestObserveIgnoresStepRunsOfAnotherRun(t *testing.T) {
	w := NewWorkflow("u2", false)
	w.Observe(child("fan", 1, 0, v1alpha1.StepRunFailed, code(1), 0, 1))
	if len(w.steps) != 0 {
		t.Error("a StepRun owned by another UID was folded in")
	}
}

func TestOrderPutsEachStepAfterItsDependencies(t *testing.T) {
	wf := MakeWorkflowRun("wf", "ns").Steps(MakeStep("d").DependsOn("b", "c"), MakeStep("a"),
		MakeStep("c").DependsOn("a"), MakeStep("b").DependsOn("a")).Obj()
	names, level := Order(&wf.Spec)
	pos := map[string]int{}
	for i, n := range names {
		pos[n] = i
	}
	if !(pos["a"] < pos["b"] && pos["a"] < pos["c"] && pos["b"] < pos["d"] && pos["c"] < pos["d"]) {
		t.Errorf("order %v puts a step before a dependency", names)
	}
	if diff := cmp.Diff(map[string]int{"b": 1, "c": 1, "d": 2}, level); diff != "" {
		t.Errorf("levels (-want +got):\n%s", diff)
	}

	cyclic := MakeWorkflowRun("wf", "ns").Steps(MakeStep("x").DependsOn("y"), MakeStep("y").DependsOn("x")).Obj()
	names, level = Order(&cyclic.Spec)
	if diff := cmp.Diff([]string{"x", "y"}, names); diff != "" || len(level) != 0 {
		t.Errorf("a cycle should keep the declared order, flat: %v %v", names, level)
	}
}

func TestModelTakesCountsFromStatusAndTimesFromStepRuns(t *testing.T) {
	wf := MakeWorkflowRun("wf", "ns").Steps(MakeStep("prep"), MakeStep("fan").Sequence(5000).DependsOn("prep")).
		OnExit(MakeStep("notify")).Obj()
	wf.UID = types.UID("u1")
	wf.CreationTimestamp = metav1.Time{Time: t0}
	wf.Status = v1alpha1.WorkflowRunStatus{Phase: v1alpha1.WorkflowRunRunning, StartedAt: at(0),
		Counts: v1alpha1.StepCounts{Total: 5002, Succeeded: 4313, Running: 64, Failed: 30, Error: 2},
		Steps: []v1alpha1.StepSummary{
			{Name: "prep", Phase: v1alpha1.StepSucceeded, ExitCode: code(0), Attempts: 1, StepRun: "wf-prep"},
			{Name: "fan", Phase: v1alpha1.StepRunning, Items: &v1alpha1.StepCounts{Total: 5000, Succeeded: 4312, Running: 64, Failed: 30, Error: 2}},
		}}
	w := NewWorkflow("u1", true)
	prep := child("prep", -1, 0, v1alpha1.StepRunSucceeded, code(0), 0, 2)
	prep.Status.Outputs = &v1alpha1.StepRunOutputs{Parameters: []v1alpha1.OutputParameterValue{{Name: "x", Value: "1"}}}
	w.Observe(prep)
	w.Observe(child("fan", 17, 0, v1alpha1.StepRunFailed, code(1), 3, 6))
	w.Observe(child("fan", 4, 0, v1alpha1.StepRunSucceeded, code(0), 2, 9))

	got := w.Model(wf, t0.Add(72*time.Second))
	want := tree.Model{Kind: "WorkflowRun", Namespace: "ns", Name: "wf", Phase: "Running", Done: 4345, Total: 5002,
		Elapsed: 72 * time.Second, HasElapsed: true,
		Steps: []tree.Step{
			{Name: "prep", Phase: "Succeeded", ExitCode: code(0), Attempts: 1, Duration: 2 * time.Second, HasDuration: true,
				Outputs: []tree.Output{{Name: "x", Value: "1"}}},
			{Name: "fan", Level: 1, After: []string{"prep"}, Phase: "Running", Duration: 70 * time.Second, HasDuration: true,
				Items:  &tree.Counts{Total: 5000, Succeeded: 4312, Running: 64, Failed: 30, Error: 2},
				Failed: []tree.Item{{Index: 17, StepRun: "wf-fan-17", Phase: "Failed", Reason: "NonZeroExitCode", ExitCode: code(1), Duration: 3 * time.Second, HasDuration: true}}, MoreFailed: 31},
			{Name: "notify", OnExit: true, Phase: "Pending"},
		}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("model (-want +got):\n%s", diff)
	}
}

func TestModelOfAFinishedRunUsesItsRecordedTimes(t *testing.T) {
	wf := MakeWorkflowRun("wf", "ns").Steps(MakeStep("fan").Items("a", "b")).Suspend(true).Obj()
	wf.Status = v1alpha1.WorkflowRunStatus{Phase: v1alpha1.WorkflowRunSucceeded, StartedAt: at(0), FinishedAt: at(10),
		Steps: []v1alpha1.StepSummary{{Name: "fan", Phase: v1alpha1.StepSucceeded, Items: &v1alpha1.StepCounts{Total: 2, Succeeded: 2}}}}
	w := NewWorkflow("", false)
	w.Observe(child("fan", 0, 0, v1alpha1.StepRunSucceeded, code(0), 1, 4))
	w.Observe(child("fan", 1, 0, v1alpha1.StepRunSucceeded, code(0), 2, 8))
	got := w.Model(wf, t0.Add(time.Hour))
	if !got.Finished || got.Elapsed != 10*time.Second || got.Suspended {
		t.Errorf("finished %v elapsed %s suspended %v", got.Finished, got.Elapsed, got.Suspended)
	}
	if s := got.Steps[0]; s.Duration != 7*time.Second {
		t.Errorf("fan duration %s, want first start to last finish, 7s", s.Duration)
	}
}

func TestStepRunModelShowsOutputsAndArtifacts(t *testing.T) {
	sr := MakeStepRun("hello", "ns").Obj()
	sr.Status = v1alpha1.StepRunStatus{Phase: v1alpha1.StepRunSucceeded, ExitCode: code(0), PodName: "hello-pod", StartedAt: at(0), FinishedAt: at(1),
		Outputs: &v1alpha1.StepRunOutputs{Parameters: []v1alpha1.OutputParameterValue{{Name: "greeting", Value: "world"}},
			Artifacts: []v1alpha1.ArtifactStatus{{Name: "report", Key: "p/ns/hello/report", Size: 2048, SHA256: "4f2a0c1d9e8b7a6f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7"}}}}
	got := StepRun(sr, t0)
	want := []tree.Output{{Name: "greeting", Value: "world"}, {Name: "report", Value: "p/ns/hello/report (2.0 KiB, sha256 4f2a0c1d9e8b…)", Artifact: true}}
	if diff := cmp.Diff(want, got.Outputs); diff != "" {
		t.Errorf("outputs (-want +got):\n%s", diff)
	}
	if got.Elapsed != time.Second || !got.Finished || got.PodName != "hello-pod" {
		t.Errorf("model %+v", got)
	}
}

func TestBytesReadsLikeLsH(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 30: "5.0 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestStepRunModelNamesEachRecordedStage(t *testing.T) {
	sr := MakeStepRun("hello", "ns").Obj()
	sr.CreationTimestamp = metav1.NewTime(t0)
	mt := func(ms int) *metav1.MicroTime {
		return v1alpha1.MicroTimeOf(t0.Add(time.Duration(ms) * time.Millisecond))
	}
	sr.Status = v1alpha1.StepRunStatus{Phase: v1alpha1.StepRunSucceeded, Timings: &v1alpha1.StepRunTimings{
		PodCreated: mt(0), PodScheduled: mt(1000), ExecutorStarted: mt(1500), MainStarted: mt(2500),
		MainExited: mt(2600), Reported: mt(2650)}}
	ms := time.Millisecond
	want := []tree.Stage{{Label: "create Pod"}, {Label: "schedule", Duration: 1000 * ms}, {Label: "start executor", Duration: 500 * ms},
		{Label: "start main", Duration: 1000 * ms}, {Label: "main", Duration: 100 * ms}, {Label: "report", Duration: 50 * ms}}
	if diff := cmp.Diff(want, StepRun(sr, t0).Stages); diff != "" {
		t.Errorf("stages (-want +got):\n%s", diff)
	}
}
