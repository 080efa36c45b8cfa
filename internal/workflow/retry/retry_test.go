package retry

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

func code(c int32) *int32 { return &c }

func TestMatches(t *testing.T) {
	failed := func(c int32) Attempt { return Attempt{Phase: v1alpha1.StepRunFailed, ExitCode: code(c)} }
	errored := Attempt{Phase: v1alpha1.StepRunError}
	oom := Attempt{Phase: v1alpha1.StepRunError, ExitCode: code(137)}
	cases := []struct {
		name string
		on   *v1alpha1.RetryOn
		a    Attempt
		want bool
	}{
		{"nil retries a failure", nil, failed(1), true},
		{"nil retries an error", nil, errored, true},
		{"success is never retried", nil, Attempt{Phase: v1alpha1.StepRunSucceeded, ExitCode: code(0)}, false},
		{"phase Error only: failure not retried", &v1alpha1.RetryOn{Phases: []v1alpha1.StepRunPhase{v1alpha1.StepRunError}}, failed(1), false},
		{"phase Error only: error retried", &v1alpha1.RetryOn{Phases: []v1alpha1.StepRunPhase{v1alpha1.StepRunError}}, errored, true},
		{"listed exit code", &v1alpha1.RetryOn{ExitCodes: []int32{2, 75}}, failed(75), true},
		{"unlisted exit code", &v1alpha1.RetryOn{ExitCodes: []int32{2, 75}}, failed(1), false},
		{"exit code on an Error (OOMKilled)", &v1alpha1.RetryOn{ExitCodes: []int32{137}}, oom, true},
		{"error without exit code and exit-code rule", &v1alpha1.RetryOn{ExitCodes: []int32{137}}, errored, false},
		{"phase or exit code", &v1alpha1.RetryOn{Phases: []v1alpha1.StepRunPhase{v1alpha1.StepRunError}, ExitCodes: []int32{3}}, failed(3), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Matches(tc.on, tc.a); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDelay(t *testing.T) {
	d := func(s string) metav1.Duration { x, _ := time.ParseDuration(s); return metav1.Duration{Duration: x} }
	dp := func(s string) *metav1.Duration { x := d(s); return &x }
	f := func(n int32) *int32 { return &n }
	cases := []struct {
		name     string
		b        *v1alpha1.Backoff
		failures int
		want     time.Duration
	}{
		{"no backoff", nil, 1, 0},
		{"first retry waits duration", &v1alpha1.Backoff{Duration: d("10s")}, 1, 10 * time.Second},
		{"default factor 2", &v1alpha1.Backoff{Duration: d("10s")}, 3, 40 * time.Second},
		{"factor 3", &v1alpha1.Backoff{Duration: d("1s"), Factor: f(3)}, 4, 27 * time.Second},
		{"factor 1 is constant", &v1alpha1.Backoff{Duration: d("5s"), Factor: f(1)}, 9, 5 * time.Second},
		{"capped by maxDuration", &v1alpha1.Backoff{Duration: d("10s"), MaxDuration: dp("25s")}, 3, 25 * time.Second},
		{"default cap one hour", &v1alpha1.Backoff{Duration: d("1m")}, 10, time.Hour},
		{"huge failure count saturates", &v1alpha1.Backoff{Duration: d("1s"), Factor: f(10), MaxDuration: dp("2h")}, 1000, 2 * time.Hour},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Delay(tc.b, tc.failures); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakePassiveClock(t0.Add(3 * time.Second))
	backoff := &v1alpha1.Backoff{Duration: metav1.Duration{Duration: 10 * time.Second}}
	failed := Attempt{Phase: v1alpha1.StepRunFailed, ExitCode: code(1), FinishedAt: t0}
	cases := []struct {
		name     string
		s        *v1alpha1.RetryStrategy
		failures int
		last     Attempt
		want     Verdict
	}{
		{"no strategy", nil, 1, failed, Verdict{Why: "no retries"}},
		{"immediate retry", &v1alpha1.RetryStrategy{Limit: 2}, 1, failed, Verdict{Retry: true}},
		{"last retry allowed", &v1alpha1.RetryStrategy{Limit: 2}, 2, failed, Verdict{Retry: true}},
		{"limit reached", &v1alpha1.RetryStrategy{Limit: 2}, 3, failed, Verdict{Why: "retry limit 2 reached"}},
		{"limit zero", &v1alpha1.RetryStrategy{Limit: 0}, 1, failed, Verdict{Why: "retry limit 0 reached"}},
		{"waits the rest of the backoff", &v1alpha1.RetryStrategy{Limit: 5, Backoff: backoff}, 1, failed,
			Verdict{Retry: true, After: 7 * time.Second}},
		{"second failure doubles", &v1alpha1.RetryStrategy{Limit: 5, Backoff: backoff}, 2, failed,
			Verdict{Retry: true, After: 17 * time.Second}},
		{"backoff already over", &v1alpha1.RetryStrategy{Limit: 5, Backoff: backoff}, 1,
			Attempt{Phase: v1alpha1.StepRunFailed, ExitCode: code(1), FinishedAt: t0.Add(-time.Minute)}, Verdict{Retry: true}},
		{"not selected by retryOn", &v1alpha1.RetryStrategy{Limit: 5, RetryOn: &v1alpha1.RetryOn{ExitCodes: []int32{2}}}, 1, failed,
			Verdict{Why: "Failed with exit code 1 is not retried by retryOn"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, Decide(tc.s, tc.failures, tc.last, clk)); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestInfrastructureRetries(t *testing.T) {
	n := func(v int32) *int32 { return &v }
	for _, tc := range []struct {
		in   *int32
		want int
	}{{nil, v1alpha1.DefaultInfrastructureRetries}, {n(0), 0}, {n(5), 5}, {n(-1), 0}} {
		if got := InfrastructureRetries(tc.in); got != tc.want {
			t.Errorf("InfrastructureRetries(%v) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestHistoryCountsFailuresByKind(t *testing.T) {
	var h History
	for _, a := range []Attempt{
		{Phase: v1alpha1.StepRunError, NeverStarted: true},
		{Phase: v1alpha1.StepRunFailed, ExitCode: code(1)},
		{Phase: v1alpha1.StepRunError},
		{Phase: v1alpha1.StepRunSucceeded},
		{Phase: v1alpha1.StepRunError, NeverStarted: true},
	} {
		h.Add(a)
	}
	if want := (History{Failed: 4, NeverStarted: 2}); h != want {
		t.Errorf("got %+v, want %+v", h, want)
	}
}

func TestDecideItem(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakePassiveClock(t0.Add(3 * time.Second))
	neverStarted := Attempt{Phase: v1alpha1.StepRunError, NeverStarted: true, FinishedAt: t0}
	executorLost := Attempt{Phase: v1alpha1.StepRunError, FinishedAt: t0}
	failed := Attempt{Phase: v1alpha1.StepRunFailed, ExitCode: code(1), FinishedAt: t0}
	onError := &v1alpha1.RetryStrategy{Limit: 1, RetryOn: &v1alpha1.RetryOn{Phases: []v1alpha1.StepRunPhase{v1alpha1.StepRunError}}}
	backoff := &v1alpha1.RetryStrategy{Limit: 3, Backoff: &v1alpha1.Backoff{Duration: metav1.Duration{Duration: 10 * time.Second}}}
	infraRetry := Verdict{Retry: true, Infrastructure: true}
	cases := []struct {
		name  string
		s     *v1alpha1.RetryStrategy
		infra int
		h     History
		last  Attempt
		want  Verdict
	}{
		{"never started: retried without retries", nil, 2, History{1, 1}, neverStarted, infraRetry},
		{"never started: the last infrastructure retry", nil, 2, History{2, 2}, neverStarted, infraRetry},
		{"never started: infrastructure retries used up", nil, 2, History{3, 3}, neverStarted,
			Verdict{Why: "main never started; infrastructure retries used up (2)"}},
		{"never started: infrastructure retries off", nil, 0, History{1, 1}, neverStarted,
			Verdict{Why: "main never started; infrastructureRetries is 0"}},
		{"never started: retried at once even with a backoff", backoff, 2, History{1, 1}, neverStarted, infraRetry},
		{"never started beyond the budget: retries.limit takes over", onError, 2, History{3, 3}, neverStarted,
			Verdict{Retry: true}},
		{"never started beyond the budget and retries.limit", onError, 2, History{4, 4}, neverStarted,
			Verdict{Why: "main never started; infrastructure retries used up (2); retry limit 1 reached"}},
		{"never started beyond the budget, not selected by retryOn", &v1alpha1.RetryStrategy{Limit: 5, RetryOn: &v1alpha1.RetryOn{ExitCodes: []int32{3}}},
			1, History{2, 2}, neverStarted,
			Verdict{Why: "main never started; infrastructure retries used up (1); Error is not retried by retryOn"}},
		{"main started: not retried without retries", nil, 2, History{1, 0}, executorLost, Verdict{Why: "no retries"}},
		{"main started: retried by retryOn Error", onError, 2, History{1, 0}, executorLost, Verdict{Retry: true}},
		{"infrastructure retries do not count against the limit", onError, 2, History{3, 2}, executorLost, Verdict{Retry: true}},
		{"the limit still counts the item's other failures", onError, 2, History{4, 2}, executorLost,
			Verdict{Why: "retry limit 1 reached"}},
		{"backoff grows with the item's other failures only", backoff, 2, History{3, 2}, failed,
			Verdict{Retry: true, After: 7 * time.Second}},
		{"a failed main is never an infrastructure retry", nil, 2, History{1, 0}, failed, Verdict{Why: "no retries"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, DecideItem(tc.s, tc.infra, tc.h, tc.last, clk)); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}
