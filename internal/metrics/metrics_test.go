package metrics

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func newRecorder(t *testing.T) *Recorder {
	t.Helper()
	r, err := NewRecorder(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// finishedStepRun ended Succeeded with every stage recorded: 5 ms to create the Pod, 1 s to
// schedule it, 0.8 s to start the executor, 2 s to start main, 40 ms of main, 30 ms to report.
func finishedStepRun() *v1alpha1.StepRun {
	mt := func(ms int) *metav1.MicroTime {
		return v1alpha1.MicroTimeOf(t0.Add(time.Duration(ms) * time.Millisecond))
	}
	sr := &v1alpha1.StepRun{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "ns", CreationTimestamp: metav1.NewTime(t0)}}
	sr.Status.SetPhase(v1alpha1.StepRunSucceeded, v1alpha1.ReasonSucceeded, "", 1, t0)
	sr.Status.Timings = &v1alpha1.StepRunTimings{PodCreated: mt(5), PodScheduled: mt(1005), ExecutorStarted: mt(1805),
		MainStarted: mt(3805), MainExited: mt(3845), Reported: mt(3875)}
	return sr
}

func TestStepRunFinishedCountsThePhaseAndEveryStage(t *testing.T) {
	r := newRecorder(t)
	r.StepRunFinished(finishedStepRun())
	r.StepRunFinished(finishedStepRun())
	failed := finishedStepRun()
	failed.Status.SetPhase(v1alpha1.StepRunFailed, v1alpha1.ReasonExitCode, "", 1, t0)
	failed.Status.Timings = nil
	r.StepRunFinished(failed)

	if got := testutil.ToFloat64(r.stepRunsFinished.WithLabelValues("Succeeded", "Succeeded")); got != 2 {
		t.Errorf("Succeeded/Succeeded = %v, want 2", got)
	}
	if got := testutil.ToFloat64(r.stepRunsFinished.WithLabelValues("Failed", v1alpha1.ReasonExitCode)); got != 1 {
		t.Errorf("Failed/NonZeroExitCode = %v, want 1", got)
	}
	if n := testutil.CollectAndCount(r.stageSeconds); n != 6 {
		t.Errorf("%d stage series, want one per stage (6)", n)
	}
	// The report stage: 30 ms, twice.
	want := histogramOf("pnsflow_executor_report_latency_seconds",
		"From main's exit to the executor's terminal report, for runs the executor ended.", stageBuckets, "", 0.03, 0.03)
	if err := testutil.CollectAndCompare(r.reportSeconds, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	schedule, err := r.stageSeconds.GetMetricWithLabelValues(v1alpha1.StageSchedule)
	if err != nil {
		t.Fatal(err)
	}
	if err := testutil.CollectAndCompare(schedule.(prometheus.Histogram), strings.NewReader(histogramOf("pnsflow_steprun_stage_duration_seconds",
		"How long each stage of a finished StepRun took (status.timings), by stage: pod_create, schedule, executor_start, main_start, main, report.",
		stageBuckets, `stage="schedule"`, 1, 1))); err != nil {
		t.Error(err)
	}
}

func TestWorkflowRunFinishedCountsDurationAndFanOutWidths(t *testing.T) {
	r := newRecorder(t)
	wfr := &v1alpha1.WorkflowRun{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(t0)}}
	wfr.Status.Phase, wfr.Status.Reason = v1alpha1.WorkflowRunFailed, "StepFailed"
	wfr.Status.FinishedAt = &metav1.Time{Time: t0.Add(90 * time.Second)}
	wfr.Status.Steps = []v1alpha1.StepSummary{
		{Name: "one"}, // a single step is no fan-out
		{Name: "fan", Items: &v1alpha1.StepCounts{Total: 5000}},
		{Name: "small", Items: &v1alpha1.StepCounts{Total: 3}},
	}
	r.WorkflowRunFinished(wfr)

	if got := testutil.ToFloat64(r.workflowRunsFinished.WithLabelValues("Failed", "StepFailed")); got != 1 {
		t.Errorf("Failed/StepFailed = %v, want 1", got)
	}
	want := histogramOf("pnsflow_workflowrun_fanout_width", "Items of each fanned-out step of a finished WorkflowRun.",
		widthBuckets, "", 5000, 3)
	if err := testutil.CollectAndCompare(r.fanOutWidth, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	d, err := r.workflowRunSeconds.GetMetricWithLabelValues("Failed")
	if err != nil {
		t.Fatal(err)
	}
	if err := testutil.CollectAndCompare(d.(prometheus.Histogram), strings.NewReader(histogramOf("pnsflow_workflowrun_duration_seconds",
		"From a WorkflowRun's creation to its terminal phase, by phase.", stageBuckets, `phase="Failed"`, 90))); err != nil {
		t.Error(err)
	}
}

// histogramOf is the exposition of a histogram with buckets holding the observations vs.
func histogramOf(name, help string, buckets []float64, labels string, vs ...float64) string {
	with := func(extra string) string { // the series' labels, and extra
		return "{" + strings.Trim(labels+","+extra, ",") + "}"
	}
	var b strings.Builder
	b.WriteString("# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n")
	sum := 0.0
	for _, v := range vs {
		sum += v
	}
	for _, le := range append(buckets, -1) {
		n, bound := 0, "+Inf"
		if le >= 0 {
			bound = strconvF(le)
		}
		for _, v := range vs {
			if le < 0 || v <= le {
				n++
			}
		}
		b.WriteString(name + "_bucket" + with(`le="`+bound+`"`) + " " + strconv.Itoa(n) + "\n")
	}
	b.WriteString(name + "_sum" + strings.TrimSuffix(with(""), "{}") + " " + strconvF(sum) + "\n")
	b.WriteString(name + "_count" + strings.TrimSuffix(with(""), "{}") + " " + strconv.Itoa(len(vs)) + "\n")
	return b.String()
}

func TestHandlersCountARunOnceWhenItTurnsTerminal(t *testing.T) {
	r := newRecorder(t)
	h := r.StepRunHandler()
	running := finishedStepRun()
	running.Status.SetPhase(v1alpha1.StepRunRunning, v1alpha1.ReasonRunning, "", 1, t0)
	done := finishedStepRun()
	ctx := context.Background()

	h.Create(ctx, event.CreateEvent{Object: done}, nil)                           // seen terminal at start: not a transition
	h.Update(ctx, event.UpdateEvent{ObjectOld: running, ObjectNew: running}, nil) // still running
	h.Update(ctx, event.UpdateEvent{ObjectOld: running, ObjectNew: done}, nil)    // the transition
	h.Update(ctx, event.UpdateEvent{ObjectOld: done, ObjectNew: done}, nil)       // a resync afterwards
	if got := testutil.ToFloat64(r.stepRunsFinished.WithLabelValues("Succeeded", "Succeeded")); got != 1 {
		t.Errorf("StepRuns counted %v times, want once", got)
	}

	w := r.WorkflowRunHandler()
	before := &v1alpha1.WorkflowRun{}
	before.Status.Phase = v1alpha1.WorkflowRunRunning
	after := before.DeepCopy()
	after.Status.Phase, after.Status.Reason = v1alpha1.WorkflowRunSucceeded, "Succeeded"
	w.Update(ctx, event.UpdateEvent{ObjectOld: before, ObjectNew: after}, nil)
	w.Update(ctx, event.UpdateEvent{ObjectOld: after, ObjectNew: after}, nil)
	if got := testutil.ToFloat64(r.workflowRunsFinished.WithLabelValues("Succeeded", "Succeeded")); got != 1 {
		t.Errorf("WorkflowRuns counted %v times, want once", got)
	}
}

func TestPhaseCollectorCountsTheCachedRunsByPhase(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	sr := func(name string, phase v1alpha1.StepRunPhase) *v1alpha1.StepRun {
		return &v1alpha1.StepRun{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"},
			Status: v1alpha1.StepRunStatus{Phase: phase}}
	}
	wfr := &v1alpha1.WorkflowRun{ObjectMeta: metav1.ObjectMeta{Name: "w", Namespace: "ns"},
		Status: v1alpha1.WorkflowRunStatus{Phase: v1alpha1.WorkflowRunRunning}}
	reader := fake.NewClientBuilder().WithScheme(scheme).WithObjects(
		sr("a", v1alpha1.StepRunRunning), sr("b", v1alpha1.StepRunRunning), sr("c", ""), sr("d", v1alpha1.StepRunError), wfr,
	).Build()
	want := `
# HELP pnsflow_stepruns StepRuns that exist now, by phase.
# TYPE pnsflow_stepruns gauge
pnsflow_stepruns{phase="Error"} 1
pnsflow_stepruns{phase="Failed"} 0
pnsflow_stepruns{phase="Pending"} 1
pnsflow_stepruns{phase="Running"} 2
pnsflow_stepruns{phase="Succeeded"} 0
# HELP pnsflow_workflowruns WorkflowRuns that exist now, by phase.
# TYPE pnsflow_workflowruns gauge
pnsflow_workflowruns{phase="Cancelled"} 0
pnsflow_workflowruns{phase="Error"} 0
pnsflow_workflowruns{phase="Failed"} 0
pnsflow_workflowruns{phase="Pending"} 0
pnsflow_workflowruns{phase="Running"} 1
pnsflow_workflowruns{phase="Succeeded"} 0
`
	if err := testutil.CollectAndCompare(NewPhaseCollector(reader), strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func strconvF(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func TestRegisterTwiceKeepsCountingAndReplacesTheCache(t *testing.T) {
	reg := prometheus.NewRegistry()
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	first, err := Register(reg, fake.NewClientBuilder().WithScheme(scheme).Build())
	if err != nil {
		t.Fatal(err)
	}
	first.StepRunFinished(finishedStepRun())
	running := &v1alpha1.StepRun{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "ns"},
		Status: v1alpha1.StepRunStatus{Phase: v1alpha1.StepRunRunning}}
	second, err := Register(reg, fake.NewClientBuilder().WithScheme(scheme).WithObjects(running).Build())
	if err != nil {
		t.Fatalf("a rebuilt manager registers again: %v", err)
	}
	second.StepRunFinished(finishedStepRun())
	if got := testutil.ToFloat64(second.stepRunsFinished.WithLabelValues("Succeeded", "Succeeded")); got != 2 {
		t.Errorf("finished = %v after a re-registration, want 2: counting goes on", got)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	runningNow := -1.0
	for _, f := range families {
		if f.GetName() != "pnsflow_stepruns" {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetLabel()[0].GetValue() == "Running" {
				runningNow = m.GetGauge().GetValue()
			}
		}
	}
	if runningNow != 1 {
		t.Errorf("Running StepRuns = %v, want 1 from the second cache (-1: no series)", runningNow)
	}
}
