package workflowrun

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	. "github.com/pnsflow/pnsflow/internal/testutil"
)

func diamond() *WorkflowRunWrapper {
	return MakeWorkflowRun("wf", "ns").Param("greeting", "hi").Steps(
		MakeStep("a").Output("p", "/tmp/p").Args("{{workflow.parameters.greeting}}"),
		MakeStep("b").DependsOn("a").Output("p", "/tmp/p").Args("{{steps.a.outputs.parameters.p}}"),
		MakeStep("c").DependsOn("a").Output("p", "/tmp/p").Args("{{steps.a.outputs.parameters.p}}"),
		MakeStep("d").DependsOn("b", "c").Args("{{steps.b.outputs.parameters.p}}+{{steps.c.outputs.parameters.p}}"),
	)
}

func withParams(k kid, kv ...string) kid {
	k.params = map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		k.params[kv[i]] = kv[i+1]
	}
	return k
}

func TestEvaluateDiamond(t *testing.T) {
	wfr := newRun(diamond())
	a := withParams(ok("a", -1), "p", "from-a")
	b := withParams(ok("b", -1), "p", "B")
	c := withParams(ok("c", -1), "p", "C")
	cases := []struct {
		name       string
		kids       []kid
		wantStarts []string
		wantArgs   [][]string
		wantPhases map[string]v1alpha1.WorkflowStepPhase
		wantRun    v1alpha1.WorkflowRunPhase
	}{
		{name: "fresh: only the root starts", wantStarts: []string{"wf-a"}, wantArgs: [][]string{{"hi"}},
			wantPhases: map[string]v1alpha1.WorkflowStepPhase{"a": "Pending", "b": "Pending", "c": "Pending", "d": "Pending"}},
		{name: "a running", kids: []kid{running("a", -1)},
			wantPhases: map[string]v1alpha1.WorkflowStepPhase{"a": "Running", "b": "Pending", "c": "Pending", "d": "Pending"}},
		{name: "a done: b and c start with its output", kids: []kid{a}, wantStarts: []string{"wf-b", "wf-c"},
			wantArgs: [][]string{{"from-a"}, {"from-a"}}},
		{name: "b done, c running: d waits", kids: []kid{a, b, running("c", -1)}},
		{name: "b and c done: d gets both", kids: []kid{a, b, c}, wantStarts: []string{"wf-d"}, wantArgs: [][]string{{"B+C"}}},
		{name: "all done", kids: []kid{a, b, c, ok("d", -1)}, wantRun: v1alpha1.WorkflowRunSucceeded,
			wantPhases: map[string]v1alpha1.WorkflowStepPhase{"a": "Succeeded", "b": "Succeeded", "c": "Succeeded", "d": "Succeeded"}},
		{name: "b failed: d omitted, c goes on", kids: []kid{a, failed("b", -1, 0), running("c", -1)},
			wantPhases: map[string]v1alpha1.WorkflowStepPhase{"a": "Succeeded", "b": "Failed", "c": "Running", "d": "Omitted"}},
		{name: "b failed, c done: run failed", kids: []kid{a, failed("b", -1, 0), c}, wantRun: v1alpha1.WorkflowRunFailed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev := eval(t, wfr, t0, tc.kids...)
			if d := cmp.Diff(tc.wantStarts, started(wfr, ev)); d != "" {
				t.Errorf("starts (-want +got):\n%s", d)
			}
			for i, args := range tc.wantArgs {
				if d := cmp.Diff(args, ev.starts[i].spec.Args); d != "" {
					t.Errorf("args of start %d (-want +got):\n%s", i, d)
				}
			}
			if tc.wantPhases != nil {
				if d := cmp.Diff(tc.wantPhases, phases(ev)); d != "" {
					t.Errorf("step phases (-want +got):\n%s", d)
				}
			}
			if ev.outcome.phase != tc.wantRun {
				t.Errorf("run phase: got %q, want %q (%s)", ev.outcome.phase, tc.wantRun, ev.outcome.message)
			}
		})
	}
}

func TestEvaluateFanOutParallelism(t *testing.T) {
	wfr := newRun(MakeWorkflowRun("wf", "ns").Parallelism(5).Steps(MakeStep("fan").Sequence(50).Args("n={{item}}")))
	t.Run("starts the first five", func(t *testing.T) {
		ev := eval(t, wfr, t0)
		if d := cmp.Diff([]string{"wf-fan-0", "wf-fan-1", "wf-fan-2", "wf-fan-3", "wf-fan-4"}, started(wfr, ev)); d != "" {
			t.Errorf("(-want +got):\n%s", d)
		}
		if ev.deferred != 45 || ev.starts[3].spec.Args[0] != "n=3" {
			t.Errorf("deferred %d, args %v", ev.deferred, ev.starts[3].spec.Args)
		}
	})
	t.Run("refills the budget in item order", func(t *testing.T) {
		ev := eval(t, wfr, t0, ok("fan", 0), ok("fan", 1), running("fan", 2), running("fan", 3), running("fan", 4))
		if d := cmp.Diff([]string{"wf-fan-5", "wf-fan-6"}, started(wfr, ev)); d != "" {
			t.Errorf("(-want +got):\n%s", d)
		}
		if c := ev.steps[0].counts; c.Succeeded != 2 || c.Running != 3 || c.Total != 50 {
			t.Errorf("counts %+v", c)
		}
	})
	t.Run("created but not yet seen counts against the budget", func(t *testing.T) {
		expected := map[string]expectation{
			"wf-fan-5": {key: itemKey{"fan", 5}},
			"wf-fan-6": {key: itemKey{"fan", 6}},
		}
		ev := evalExpecting(t, wfr, t0, expected, ok("fan", 0), ok("fan", 1), running("fan", 2), running("fan", 3), running("fan", 4))
		if len(ev.starts) != 0 || ev.active != 5 {
			t.Errorf("starts %v, active %d", started(wfr, ev), ev.active)
		}
	})
}

func TestEvaluateWithParamFromOutput(t *testing.T) {
	wfr := newRun(MakeWorkflowRun("wf", "ns").Steps(
		MakeStep("list").Output("items", "/tmp/items"),
		MakeStep("each").DependsOn("list").Param("{{steps.list.outputs.parameters.items}}").Args("{{item.name}}"),
	))
	ev := eval(t, wfr, t0, withParams(ok("list", -1), "items", `[{"name":"x"},{"name":"y"}]`))
	if d := cmp.Diff([]string{"wf-each-0", "wf-each-1"}, started(wfr, ev)); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if ev.starts[1].spec.Args[0] != "y" {
		t.Errorf("args %v", ev.starts[1].spec.Args)
	}

	ev = eval(t, wfr, t0, withParams(ok("list", -1), "items", `not json`))
	if se := ev.byName["each"]; se.phase != v1alpha1.StepError || !strings.Contains(se.message, "is not a JSON list") {
		t.Errorf("phase %s, message %q", se.phase, se.message)
	}
	if ev.outcome.phase != v1alpha1.WorkflowRunFailed {
		t.Errorf("run phase %q", ev.outcome.phase)
	}

	ev = eval(t, wfr, t0, withParams(ok("list", -1), "items", `[]`))
	if se := ev.byName["each"]; se.phase != v1alpha1.StepSkipped || ev.outcome.phase != v1alpha1.WorkflowRunSucceeded {
		t.Errorf("empty list: step %s, run %q", se.phase, ev.outcome.phase)
	}
}

func TestEvaluateItemErrors(t *testing.T) {
	wfr := newRun(MakeWorkflowRun("wf", "ns").Steps(MakeStep("fan").JSONItems(`{"a":"1"}`, `{"b":"2"}`).Args("{{item.a}}")))
	ev := eval(t, wfr, t0)
	if d := cmp.Diff([]string{"wf-fan-0"}, started(wfr, ev)); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	se := ev.byName["fan"]
	if !se.failed || !strings.Contains(se.message, `item 1: unresolved reference {{item.a}}: the item has no field "a"`) {
		t.Errorf("failed %v, message %q", se.failed, se.message)
	}
}

func TestEvaluateFailFast(t *testing.T) {
	build := func(failFast bool) *v1alpha1.WorkflowRun {
		w := MakeWorkflowRun("wf", "ns").Parallelism(2).Steps(MakeStep("fan").Sequence(4), MakeStep("other"))
		if failFast {
			w.FailFast()
		}
		return newRun(w)
	}
	t.Run("without failFast the rest goes on", func(t *testing.T) {
		wfr := build(false)
		ev := eval(t, wfr, t0, failed("fan", 0, 0), ok("fan", 1))
		if d := cmp.Diff([]string{"wf-fan-2", "wf-fan-3"}, started(wfr, ev)); d != "" {
			t.Errorf("(-want +got):\n%s", d)
		}
	})
	t.Run("with failFast nothing new starts and running items finish", func(t *testing.T) {
		wfr := build(true)
		ev := eval(t, wfr, t0, failed("fan", 0, 0), running("fan", 1))
		if len(ev.starts) != 0 || ev.outcome.phase != "" {
			t.Errorf("starts %v, outcome %+v", started(wfr, ev), ev.outcome)
		}
		ev = eval(t, wfr, t0, failed("fan", 0, 0), ok("fan", 1))
		if ev.outcome.phase != v1alpha1.WorkflowRunFailed || !strings.Contains(ev.outcome.message, `step "fan" failed: StepRun wf-fan-0 ended Failed`) {
			t.Errorf("outcome %+v", ev.outcome)
		}
		want := map[string]v1alpha1.WorkflowStepPhase{"fan": "Failed", "other": "Omitted"}
		if d := cmp.Diff(want, phases(ev)); d != "" {
			t.Errorf("(-want +got):\n%s", d)
		}
		if c := ev.byName["fan"].counts; c.Failed != 1 || c.Succeeded != 1 || c.Omitted != 2 {
			t.Errorf("counts %+v", c)
		}
		if !strings.Contains(ev.byName["other"].message, "failFast") {
			t.Errorf("message %q", ev.byName["other"].message)
		}
	})
}

func TestEvaluateRetries(t *testing.T) {
	wfr := newRun(MakeWorkflowRun("wf", "ns").Steps(MakeStep("flaky").Retries(2, 10*time.Second)))
	cases := []struct {
		name       string
		now        time.Time
		kids       []kid
		wantStarts []string
		wantRetry  time.Duration
		wantPhase  v1alpha1.WorkflowStepPhase
		wantRun    v1alpha1.WorkflowRunPhase
	}{
		{name: "first failure waits its backoff", now: t0.Add(4 * time.Second), kids: []kid{failed("flaky", -1, 0)},
			wantRetry: 6 * time.Second, wantPhase: v1alpha1.StepRunning},
		{name: "backoff over: attempt 1", now: t0.Add(10 * time.Second), kids: []kid{failed("flaky", -1, 0)},
			wantStarts: []string{"wf-flaky-r1"}, wantPhase: v1alpha1.StepRunning},
		{name: "second failure doubles the wait", now: t0.Add(10 * time.Second), kids: []kid{failed("flaky", -1, 0), failed("flaky", -1, 1)},
			wantRetry: 10 * time.Second, wantPhase: v1alpha1.StepRunning},
		{name: "third attempt succeeds", now: t0, kids: []kid{failed("flaky", -1, 0), failed("flaky", -1, 1),
			{step: "flaky", item: -1, attempt: 2, phase: v1alpha1.StepRunSucceeded}},
			wantPhase: v1alpha1.StepSucceeded, wantRun: v1alpha1.WorkflowRunSucceeded},
		{name: "retries exhausted", now: t0.Add(time.Hour), kids: []kid{failed("flaky", -1, 0), failed("flaky", -1, 1), failed("flaky", -1, 2)},
			wantPhase: v1alpha1.StepFailed, wantRun: v1alpha1.WorkflowRunFailed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev := eval(t, wfr, tc.now, tc.kids...)
			if d := cmp.Diff(tc.wantStarts, started(wfr, ev)); d != "" {
				t.Errorf("starts (-want +got):\n%s", d)
			}
			if ev.retryIn != tc.wantRetry {
				t.Errorf("retryIn %v, want %v", ev.retryIn, tc.wantRetry)
			}
			if se := ev.byName["flaky"]; se.phase != tc.wantPhase {
				t.Errorf("step phase %s, want %s (%s)", se.phase, tc.wantPhase, se.message)
			}
			if ev.outcome.phase != tc.wantRun {
				t.Errorf("run %q, want %q", ev.outcome.phase, tc.wantRun)
			}
		})
	}
	ev := eval(t, wfr, t0.Add(time.Hour), failed("flaky", -1, 0), failed("flaky", -1, 1), failed("flaky", -1, 2))
	if msg := ev.byName["flaky"].message; !strings.HasSuffix(msg, "retry limit 2 reached") {
		t.Errorf("message %q", msg)
	}
	if s := summary(ev.byName["flaky"]); s.Attempts != 3 || s.StepRun != "wf-flaky-r2" || *s.ExitCode != 1 {
		t.Errorf("summary %+v", s)
	}
}

func TestEvaluateWhen(t *testing.T) {
	wfr := newRun(MakeWorkflowRun("wf", "ns").Param("env", "dev").Steps(
		MakeStep("a"),
		MakeStep("deploy").DependsOn("a").When(`workflow.parameters.env == "prod" && steps.a.exitCode == 0`),
		MakeStep("after").DependsOn("deploy"),
	))
	ev := eval(t, wfr, t0, ok("a", -1))
	if se := ev.byName["deploy"]; se.phase != v1alpha1.StepSkipped || !strings.Contains(se.message, "is false") {
		t.Errorf("deploy %s %q", se.phase, se.message)
	}
	if d := cmp.Diff([]string{"wf-after"}, started(wfr, ev)); d != "" {
		t.Errorf("a skipped step's dependents run (-want +got):\n%s", d)
	}
}

func TestEvaluateOnExit(t *testing.T) {
	wfr := newRun(MakeWorkflowRun("wf", "ns").Steps(MakeStep("a"), MakeStep("b").DependsOn("a")).
		OnExit(MakeStep("notify").Args("{{workflow.phase}}")))
	ev := eval(t, wfr, t0, failed("a", -1, 0))
	if d := cmp.Diff([]string{"wf-notify"}, started(wfr, ev)); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if got := ev.starts[0].spec.Args; !cmp.Equal(got, []string{"Failed"}) {
		t.Errorf("args %v", got)
	}
	if ev.outcome.phase != "" {
		t.Errorf("the run ends after onExit, got %+v", ev.outcome)
	}
	ev = eval(t, wfr, t0, failed("a", -1, 0), ok("notify", -1))
	if ev.outcome.phase != v1alpha1.WorkflowRunFailed || ev.outcome.reason != v1alpha1.ReasonStepFailed {
		t.Errorf("outcome %+v", ev.outcome)
	}
	ev = eval(t, wfr, t0, ok("a", -1), ok("b", -1), failed("notify", -1, 0))
	if ev.outcome.phase != v1alpha1.WorkflowRunFailed || ev.outcome.reason != v1alpha1.ReasonExitHandlerFailed {
		t.Errorf("outcome %+v", ev.outcome)
	}
	ev = eval(t, wfr, t0, running("a", -1))
	if len(ev.starts) != 0 || ev.byName["notify"].phase != v1alpha1.StepPending {
		t.Errorf("onExit waits: %v %s", started(wfr, ev), ev.byName["notify"].phase)
	}
}

func TestEvaluateSuspendAndCancel(t *testing.T) {
	base := func() *WorkflowRunWrapper {
		return MakeWorkflowRun("wf", "ns").Steps(MakeStep("fan").Sequence(3)).OnExit(MakeStep("exit"))
	}
	suspended := newRun(base().Suspend(true))
	ev := eval(t, suspended, t0)
	if len(ev.starts) != 0 || ev.outcome.phase != "" || ev.started {
		t.Errorf("suspended: starts %v outcome %+v", started(suspended, ev), ev.outcome)
	}
	ev = eval(t, suspended, t0, ok("fan", 0), ok("fan", 1), ok("fan", 2))
	if len(ev.starts) != 0 || ev.outcome.phase != "" {
		t.Errorf("suspended holds back onExit too: %v %+v", started(suspended, ev), ev.outcome)
	}

	cancelled := newRun(base().Cancel())
	ev = eval(t, cancelled, t0, running("fan", 0), ok("fan", 1))
	if len(ev.starts) != 0 || len(ev.running) != 1 || ev.outcome.reason != v1alpha1.ReasonCancelling {
		t.Errorf("cancelling: starts %v running %d outcome %+v", started(cancelled, ev), len(ev.running), ev.outcome)
	}
	stopped := kid{step: "fan", item: 0, phase: v1alpha1.StepRunError}
	ev = eval(t, cancelled, t0, stopped, ok("fan", 1))
	if ev.outcome.phase != v1alpha1.WorkflowRunCancelled {
		t.Errorf("outcome %+v", ev.outcome)
	}
	want := map[string]v1alpha1.WorkflowStepPhase{"fan": "Error", "exit": "Omitted"}
	if d := cmp.Diff(want, phases(ev)); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if c := ev.byName["fan"].counts; c.Omitted != 1 || c.Error != 1 || c.Succeeded != 1 {
		t.Errorf("counts %+v", c)
	}
}
