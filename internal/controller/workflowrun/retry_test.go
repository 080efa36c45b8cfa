package workflowrun

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	. "github.com/pnsflow/pnsflow/internal/testutil"
)

func TestEvaluateInfrastructureRetries(t *testing.T) {
	single := func(mutate ...func(*WorkflowRunWrapper, *StepWrapper)) *v1alpha1.WorkflowRun {
		w, s := MakeWorkflowRun("wf", "ns"), MakeStep("s")
		for _, m := range mutate {
			m(w, s)
		}
		return newRun(w.Steps(s))
	}
	infra := func(n int32) func(*WorkflowRunWrapper, *StepWrapper) {
		return func(w *WorkflowRunWrapper, _ *StepWrapper) { w.InfrastructureRetries(n) }
	}
	retryOnError := func(_ *WorkflowRunWrapper, s *StepWrapper) {
		s.Retries(1, 0).RetryOnPhases(v1alpha1.StepRunError)
	}
	withBackoff := func(_ *WorkflowRunWrapper, s *StepWrapper) { s.Retries(2, 10*time.Second) }
	cancelled := func(w *WorkflowRunWrapper, _ *StepWrapper) { w.Cancel() }
	imagePull := neverStarted("s", -1, 0)
	imagePull.reason = v1alpha1.ReasonImagePullFailed
	noCondition := kid{step: "s", item: -1, phase: v1alpha1.StepRunError, reason: v1alpha1.ReasonExecutorLost}
	succeeded := func(attempt int) kid { k := ok("s", -1); k.attempt = attempt; return k }

	cases := []struct {
		name        string
		wfr         *v1alpha1.WorkflowRun
		kids        []kid
		wantStarts  []string
		wantPhase   v1alpha1.WorkflowStepPhase
		wantRun     v1alpha1.WorkflowRunPhase
		wantMessage string
		wantCounts  v1alpha1.StepCounts
	}{
		{name: "never started: retried by default without retries", wfr: single(), kids: []kid{neverStarted("s", -1, 0)},
			wantStarts: []string{"wf-s-r1"}, wantPhase: v1alpha1.StepRunning,
			wantCounts: v1alpha1.StepCounts{Total: 1, Pending: 1}},
		{name: "never started twice: the second infrastructure retry", wfr: single(),
			kids:       []kid{neverStarted("s", -1, 0), neverStarted("s", -1, 1)},
			wantStarts: []string{"wf-s-r2"}, wantPhase: v1alpha1.StepRunning,
			wantCounts: v1alpha1.StepCounts{Total: 1, Pending: 1, Retries: 1}},
		{name: "the retry succeeds", wfr: single(), kids: []kid{neverStarted("s", -1, 0), succeeded(1)},
			wantPhase: v1alpha1.StepSucceeded, wantRun: v1alpha1.WorkflowRunSucceeded,
			wantCounts: v1alpha1.StepCounts{Total: 1, Succeeded: 1, Retries: 1}},
		{name: "infrastructure retries used up", wfr: single(),
			kids:      []kid{neverStarted("s", -1, 0), neverStarted("s", -1, 1), neverStarted("s", -1, 2)},
			wantPhase: v1alpha1.StepError, wantRun: v1alpha1.WorkflowRunFailed,
			wantMessage: "StepRun wf-s-r2 ended Error (ExecutorLost); main never started; infrastructure retries used up (2)",
			wantCounts:  v1alpha1.StepCounts{Total: 1, Error: 1, Retries: 2}},
		{name: "infrastructureRetries 0 turns them off", wfr: single(infra(0)), kids: []kid{neverStarted("s", -1, 0)},
			wantPhase: v1alpha1.StepError, wantRun: v1alpha1.WorkflowRunFailed,
			wantMessage: "StepRun wf-s ended Error (ExecutorLost); main never started; infrastructureRetries is 0",
			wantCounts:  v1alpha1.StepCounts{Total: 1, Error: 1}},
		{name: "main started: not retried without retries", wfr: single(), kids: []kid{lost("s", -1, 0)},
			wantPhase: v1alpha1.StepError, wantRun: v1alpha1.WorkflowRunFailed,
			wantMessage: "StepRun wf-s ended Error (ExecutorLost)", wantCounts: v1alpha1.StepCounts{Total: 1, Error: 1}},
		{name: "no MainStarted condition counts as started", wfr: single(), kids: []kid{noCondition},
			wantPhase: v1alpha1.StepError, wantRun: v1alpha1.WorkflowRunFailed,
			wantMessage: "StepRun wf-s ended Error (ExecutorLost)", wantCounts: v1alpha1.StepCounts{Total: 1, Error: 1}},
		{name: "an image pull failure is the user's, not retried", wfr: single(), kids: []kid{imagePull},
			wantPhase: v1alpha1.StepError, wantRun: v1alpha1.WorkflowRunFailed,
			wantMessage: "StepRun wf-s ended Error (ImagePullFailed)", wantCounts: v1alpha1.StepCounts{Total: 1, Error: 1}},
		{name: "main started: retried by retryOn Error", wfr: single(retryOnError), kids: []kid{lost("s", -1, 0)},
			wantStarts: []string{"wf-s-r1"}, wantPhase: v1alpha1.StepRunning,
			wantCounts: v1alpha1.StepCounts{Total: 1, Pending: 1}},
		{name: "infrastructure retries leave retries.limit alone", wfr: single(retryOnError),
			kids:       []kid{neverStarted("s", -1, 0), neverStarted("s", -1, 1), lost("s", -1, 2)},
			wantStarts: []string{"wf-s-r3"}, wantPhase: v1alpha1.StepRunning,
			wantCounts: v1alpha1.StepCounts{Total: 1, Pending: 1, Retries: 2}},
		{name: "beyond the budget a never-started failure is the step's retries' to decide", wfr: single(infra(1), retryOnError),
			kids:       []kid{neverStarted("s", -1, 0), neverStarted("s", -1, 1)},
			wantStarts: []string{"wf-s-r2"}, wantPhase: v1alpha1.StepRunning,
			wantCounts: v1alpha1.StepCounts{Total: 1, Pending: 1, Retries: 1}},
		{name: "beyond the budget and the limit", wfr: single(infra(1), retryOnError),
			kids:      []kid{neverStarted("s", -1, 0), neverStarted("s", -1, 1), neverStarted("s", -1, 2)},
			wantPhase: v1alpha1.StepError, wantRun: v1alpha1.WorkflowRunFailed,
			wantMessage: "StepRun wf-s-r2 ended Error (ExecutorLost); main never started; infrastructure retries used up (1); retry limit 1 reached",
			wantCounts:  v1alpha1.StepCounts{Total: 1, Error: 1, Retries: 2}},
		{name: "no backoff for an infrastructure retry", wfr: single(withBackoff), kids: []kid{neverStarted("s", -1, 0)},
			wantStarts: []string{"wf-s-r1"}, wantPhase: v1alpha1.StepRunning,
			wantCounts: v1alpha1.StepCounts{Total: 1, Pending: 1}},
		{name: "no retry after a cancel", wfr: single(cancelled), kids: []kid{neverStarted("s", -1, 0)},
			wantPhase: v1alpha1.StepError, wantRun: v1alpha1.WorkflowRunCancelled,
			wantMessage: "StepRun wf-s ended Error (ExecutorLost)", wantCounts: v1alpha1.StepCounts{Total: 1, Error: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev := eval(t, tc.wfr, t0, tc.kids...)
			if d := cmp.Diff(tc.wantStarts, started(tc.wfr, ev)); d != "" {
				t.Errorf("starts (-want +got):\n%s", d)
			}
			if ev.retryIn != 0 {
				t.Errorf("retryIn %v, want none", ev.retryIn)
			}
			se := ev.byName["s"]
			if se.phase != tc.wantPhase {
				t.Errorf("step phase %s, want %s (%s)", se.phase, tc.wantPhase, se.message)
			}
			if ev.outcome.phase != tc.wantRun {
				t.Errorf("run %q, want %q (%s)", ev.outcome.phase, tc.wantRun, ev.outcome.message)
			}
			if se.message != tc.wantMessage {
				t.Errorf("message %q, want %q", se.message, tc.wantMessage)
			}
			if d := cmp.Diff(tc.wantCounts, se.counts); d != "" {
				t.Errorf("counts (-want +got):\n%s", d)
			}
		})
	}
}

func TestEvaluateInfrastructureRetriesFanOut(t *testing.T) {
	wfr := newRun(MakeWorkflowRun("wf", "ns").FailFast().Steps(MakeStep("fan").Sequence(3)))
	ev := eval(t, wfr, t0, ok("fan", 0), neverStarted("fan", 1, 0))
	if d := cmp.Diff([]string{"wf-fan-1-r1", "wf-fan-2"}, started(wfr, ev)); d != "" {
		t.Errorf("an infrastructure retry is no failure for failFast (-want +got):\n%s", d)
	}
	ev = eval(t, wfr, t0, ok("fan", 0), neverStarted("fan", 1, 0), neverStarted("fan", 1, 1), neverStarted("fan", 1, 2), running("fan", 2))
	se := ev.byName["fan"]
	if !se.failed || len(ev.starts) != 0 || !strings.Contains(ev.failure, "wf-fan-1-r2 ended Error (ExecutorLost); main never started") {
		t.Errorf("failed %v, starts %v, failure %q", se.failed, started(wfr, ev), ev.failure)
	}
	if s := summary(se); s.StepRun != "wf-fan-1-r2" || s.Items.Retries != 2 || s.Items.Error != 1 {
		t.Errorf("summary %+v, items %+v", s, s.Items)
	}
}
