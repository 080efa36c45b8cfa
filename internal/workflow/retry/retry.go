// Package retry owns the retry policy of WorkflowRun steps: which failed attempts are retried
// (retryOn, exit codes as data, like a Job's podFailurePolicy) and how long to wait first (a
// pure function of the failure count, the last failure's time and an injected clock). Attempts
// whose main never started because the infrastructure failed them are retried apart from that,
// within the run's infrastructureRetries (DecideItem).
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
	// NeverStarted is set when the infrastructure ended the attempt before main started
	// (StepRunStatus.NeverStartedInfrastructureFailure): it had no side effects.
	NeverStarted bool
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
	// Infrastructure is true when that attempt is an infrastructure retry, outside retries.limit.
	Infrastructure bool
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

// History counts an item's ended attempts, from its StepRuns alone, so a restarted manager
// comes to the same decisions.
type History struct {
	// Failed counts the attempts that ended Failed or Error, the latest included.
	Failed int
	// NeverStarted counts those of them that were never-started infrastructure failures.
	NeverStarted int
}

// Add counts one ended attempt.
func (h *History) Add(a Attempt) {
	if a.Phase != v1alpha1.StepRunFailed && a.Phase != v1alpha1.StepRunError {
		return
	}
	h.Failed++
	if a.NeverStarted {
		h.NeverStarted++
	}
}

// InfrastructureRetries is spec.infrastructureRetries with its default applied.
func InfrastructureRetries(n *int32) int {
	if n == nil {
		return v1alpha1.DefaultInfrastructureRetries
	}
	return max(int(*n), 0)
}

// DecideItem says whether an item whose latest attempt `last` failed is tried again, and when;
// h counts the item's ended attempts, last included. A never-started infrastructure failure is
// retried at once while the item has had at most `infra` of them: main never ran, so nothing
// can have happened twice, and these retries do not count against retries.limit (like a Job's
// podFailurePolicy ignoring disruptions). Every other failure — and a never-started one beyond
// that budget — is the step's retry strategy's to decide, counting the item's failures without
// the infrastructure failures already retried; the budget is spent first, whatever the order.
func DecideItem(s *v1alpha1.RetryStrategy, infra int, h History, last Attempt, clk clock.PassiveClock) Verdict {
	if last.NeverStarted && h.NeverStarted <= infra {
		return Verdict{Retry: true, Infrastructure: true}
	}
	v := Decide(s, h.Failed-min(h.NeverStarted, infra), last, clk)
	if v.Retry || !last.NeverStarted {
		return v
	}
	why := fmt.Sprintf("main never started; infrastructure retries used up (%d)", infra)
	if infra == 0 {
		why = "main never started; infrastructureRetries is 0"
	}
	if s != nil {
		why += "; " + v.Why
	}
	return Verdict{Why: why}
}
