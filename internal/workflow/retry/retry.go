// Package retry owns the retry policy of WorkflowRun steps: which failed attempts are retried
// (retryOn, exit codes as data, like a Job's podFailurePolicy) and how long to wait first (a
// pure function of the failure count, the last failure's time and an injected clock).
package retry

import (
	"fmt"
	"math"
	"slices"
	"time"

	"k8s.io/utils/clock"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

const (
	// DefaultFactor multiplies the wait after each failure when backoff.factor is unset.
	DefaultFactor = 2
	// DefaultMaxDuration caps the wait when backoff.maxDuration is unset.
	DefaultMaxDuration = time.Hour
)

// Attempt is what retrying needs to know of one ended StepRun.
type Attempt struct {
	Phase    v1alpha1.StepRunPhase
	ExitCode *int32
	// FinishedAt is when the attempt ended (its StepRun's finishedAt, else when it was seen ended).
	FinishedAt time.Time
}

// Matches reports whether a failed attempt is one retryOn selects; nil selects every failure.
func Matches(on *v1alpha1.RetryOn, a Attempt) bool {
	if a.Phase != v1alpha1.StepRunFailed && a.Phase != v1alpha1.StepRunError {
		return false
	}
	if on == nil {
		return true
	}
	if slices.Contains(on.Phases, a.Phase) {
		return true
	}
	return a.ExitCode != nil && slices.Contains(on.ExitCodes, *a.ExitCode)
}

// Delay is the wait before retry number failures (1 for the first retry):
// duration × factor^(failures-1), capped at maxDuration.
func Delay(b *v1alpha1.Backoff, failures int) time.Duration {
	if b == nil || failures < 1 || b.Duration.Duration <= 0 {
		return 0
	}
	factor := float64(DefaultFactor)
	if b.Factor != nil {
		factor = float64(*b.Factor)
	}
	limit := DefaultMaxDuration
	if b.MaxDuration != nil && b.MaxDuration.Duration > 0 {
		limit = b.MaxDuration.Duration
	}
	// Computed in floating point so a large failure count saturates instead of overflowing.
	d := float64(b.Duration.Duration) * math.Pow(factor, float64(failures-1))
	if d >= float64(limit) {
		return limit
	}
	return time.Duration(d)
}

// Verdict is what to do after a failed attempt.
type Verdict struct {
	// Retry is true when another attempt will run.
	Retry bool
	// After is how long until it may start; zero means now.
	After time.Duration
	// Why explains a verdict of no retry.
	Why string
}

// Decide says whether an item whose attempts have failed `failures` times, the last being
// `last`, is retried, and when.
func Decide(s *v1alpha1.RetryStrategy, failures int, last Attempt, clk clock.PassiveClock) Verdict {
	switch {
	case s == nil:
		return Verdict{Why: "no retries"}
	case !Matches(s.RetryOn, last):
		return Verdict{Why: fmt.Sprintf("%s is not retried by retryOn", describe(last))}
	case failures > int(s.Limit):
		return Verdict{Why: fmt.Sprintf("retry limit %d reached", s.Limit)}
	}
	wait := last.FinishedAt.Add(Delay(s.Backoff, failures)).Sub(clk.Now())
	return Verdict{Retry: true, After: max(wait, 0)}
}

func describe(a Attempt) string {
	if a.ExitCode != nil {
		return fmt.Sprintf("%s with exit code %d", a.Phase, *a.ExitCode)
	}
	return string(a.Phase)
}
