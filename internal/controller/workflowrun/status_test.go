package workflowrun

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	. "github.com/pnsflow/pnsflow/internal/testutil"
)

func sizeOf(t *testing.T, v any) int {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return len(raw)
}

// TestStatusSizeAt5000 measures a 5000-item run: its status holds counts and one summary per
// step, so it is the same size at 5 or 5000 items.
func TestStatusSizeAt5000(t *testing.T) {
	const n = 5000
	wfr := newRun(MakeWorkflowRun("fanout-5000", "bench").Steps(MakeStep("work").Sequence(n).Args("{{item}}")))
	kids := make([]kid, 0, n)
	for i := range n {
		kids = append(kids, kid{step: "work", item: i, phase: v1alpha1.StepRunSucceeded, exitCode: code(0),
			params: map[string]string{"out": strings.Repeat("x", 1024)}})
	}
	kids[17] = kid{step: "work", item: 17, phase: v1alpha1.StepRunFailed, exitCode: code(3)}
	ev := eval(t, wfr, t0, kids...)
	wfr.Status = nextStatus(wfr, ev, t0.Add(time.Minute))

	status, object := sizeOf(t, wfr.Status), sizeOf(t, wfr)
	t.Logf("N=%d: status %d bytes, whole WorkflowRun %d bytes", n, status, object)
	if wfr.Status.Progress != "5000/5000" || wfr.Status.Counts.Succeeded != n-1 || wfr.Status.Counts.Failed != 1 {
		t.Errorf("progress %s counts %+v", wfr.Status.Progress, wfr.Status.Counts)
	}
	if wfr.Status.Phase != v1alpha1.WorkflowRunFailed || wfr.Status.Steps[0].StepRun != "fanout-5000-work-17" {
		t.Errorf("phase %s, step %+v", wfr.Status.Phase, wfr.Status.Steps[0])
	}
	if status > 2048 || object > 20*1024 {
		t.Errorf("too large: status %d bytes, object %d bytes", status, object)
	}

	// The same fan-out over 5000 inline items: the spec grows with the items, the status does not.
	items := make([]string, n)
	for i := range items {
		items[i] = fmt.Sprintf("item-%04d", i)
	}
	inline := newRun(MakeWorkflowRun("fanout-5000", "bench").Steps(MakeStep("work").Items(items...).Args("{{item}}")))
	inline.Status = wfr.Status
	t.Logf("N=%d with withItems inline: whole WorkflowRun %d bytes", n, sizeOf(t, inline))
}

// TestStatusSizeWorstCase bounds the status at the schema's limits: every step (and onExit)
// summarised with a full message.
func TestStatusSizeWorstCase(t *testing.T) {
	w := MakeWorkflowRun(strings.Repeat("w", 63), "ns")
	for i := range v1alpha1.MaxWorkflowSteps {
		w.Steps(MakeStep(fmt.Sprintf("step-with-a-long-name-%040d", i)).Sequence(v1alpha1.MaxStepItems))
	}
	wfr := newRun(w.OnExit(MakeStep("exit")))
	ev := eval(t, wfr, t0)
	for _, se := range ev.steps {
		se.message = strings.Repeat("m", 1000)
		se.counts = v1alpha1.StepCounts{Total: 10000, Pending: 10000, Running: 10000, Succeeded: 10000, Failed: 10000,
			Error: 10000, Skipped: 10000, Omitted: 10000, Retries: 1000000}
		se.shown = &attempt{name: strings.Repeat("s", 253), sr: &v1alpha1.StepRun{Status: v1alpha1.StepRunStatus{ExitCode: code(255)}}}
	}
	st := nextStatus(wfr, ev, t0)
	size := sizeOf(t, st)
	t.Logf("worst case (%d steps + onExit, full messages): status %d bytes", v1alpha1.MaxWorkflowSteps, size)
	if size > 128*1024 {
		t.Errorf("status %d bytes", size)
	}
}

func TestNextStatus(t *testing.T) {
	wfr := newRun(MakeWorkflowRun("wf", "ns").Steps(MakeStep("a"), MakeStep("fan").DependsOn("a").Sequence(3)))
	now := t0.Add(5 * time.Second)

	st := nextStatus(wfr, eval(t, wfr, now), now)
	if st.Phase != v1alpha1.WorkflowRunPending || st.Progress != "0/4" || st.StartedAt != nil {
		t.Errorf("before the start: %s %s %v", st.Phase, st.Progress, st.StartedAt)
	}

	wfr.Status = nextStatus(wfr, eval(t, wfr, now, running("a", -1)), now)
	if wfr.Status.Phase != v1alpha1.WorkflowRunRunning || wfr.Status.StartedAt == nil || wfr.Status.Counts.Running != 1 {
		t.Errorf("running: %+v", wfr.Status)
	}

	later := now.Add(90 * time.Second)
	st = nextStatus(wfr, eval(t, wfr, later, ok("a", -1), ok("fan", 0), ok("fan", 1), ok("fan", 2)), later)
	if st.Phase != v1alpha1.WorkflowRunSucceeded || st.Progress != "4/4" || st.Duration != "1m30s" || !st.StartedAt.Equal(wfr.Status.StartedAt) {
		t.Errorf("done: %s %s %s", st.Phase, st.Progress, st.Duration)
	}
	if st.Steps[1].Items == nil || st.Steps[1].Items.Succeeded != 3 || st.Steps[0].Attempts != 1 || st.Steps[0].StepRun != "wf-a" {
		t.Errorf("summaries %+v", st.Steps)
	}
}

func TestUrgent(t *testing.T) {
	wfr := newRun(MakeWorkflowRun("wf", "ns").Parallelism(1).Steps(MakeStep("fan").Sequence(3)))
	old := nextStatus(wfr, eval(t, wfr, t0, ok("fan", 0), running("fan", 1)), t0)
	// As from the API server: the next status is built on the last one.
	wfr.Status = old
	progressed := nextStatus(wfr, eval(t, wfr, t0, ok("fan", 0), ok("fan", 1)), t0)
	if urgent(&old, &progressed) {
		t.Error("counts and progress alone are not urgent")
	}
	done := nextStatus(wfr, eval(t, wfr, t0, ok("fan", 0), ok("fan", 1), ok("fan", 2)), t0)
	if !urgent(&old, &done) {
		t.Error("the end of the run is urgent")
	}
}

// BenchmarkEvaluate5000 is one reconcile's decision over a 5000-item fan-out (resolutions
// remembered, as the reconciler does).
func BenchmarkEvaluate5000(b *testing.B) {
	wfr := newRun(MakeWorkflowRun("wf", "ns").Param("p", "v").Steps(
		MakeStep("work").Sequence(5000).Args("{{item}}", "{{workflow.parameters.p}}")))
	plan, err := Compile(wfr)
	if err != nil {
		b.Fatal(err)
	}
	list := make([]v1alpha1.StepRun, 0, 5000)
	for i := range 2500 {
		list = append(list, ok("work", i).obj(wfr))
	}
	rm := (&memory{}).get(typesKey("wf"), wfr.UID)
	b.ResetTimer()
	for b.Loop() {
		evaluate(&input{run: wfr, plan: plan, kids: sortChildren(list, nil), clock: fakeClock(t0), resolve: rm.resolve})
	}
}

// BenchmarkResolve5000 is the one-time cost of substituting a 5000-item fan-out's templates.
func BenchmarkResolve5000(b *testing.B) {
	wfr := newRun(MakeWorkflowRun("wf", "ns").Param("p", "v").Steps(
		MakeStep("work").Sequence(5000).Args("{{item}}", "{{workflow.parameters.p}}")))
	plan, err := Compile(wfr)
	if err != nil {
		b.Fatal(err)
	}
	in := &input{run: wfr, plan: plan, kids: sortChildren(nil, nil)}
	scope := in.scope(&evaluation{byName: map[string]*stepEval{}}, plan.Steps[0], "")
	for b.Loop() {
		resolveStep(plan.Steps[0], scope)
	}
}
