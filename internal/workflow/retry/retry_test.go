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
