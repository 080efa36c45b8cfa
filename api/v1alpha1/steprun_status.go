package v1alpha1

import (
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SetPhase sets phase, reason and message together with the Succeeded condition that mirrors
// them, so a writer can never leave the two disagreeing. Whoever writes a phase (the executor or
// the controller) writes its condition in the same request.
func (s *StepRunStatus) SetPhase(phase StepRunPhase, reason, message string, generation int64, now time.Time) {
	s.Phase = phase
	s.Reason = reason
	s.Message = truncate(message, MaxMessageBytes)
	cond := metav1.ConditionUnknown
	switch phase {
	case StepRunSucceeded:
		cond = metav1.ConditionTrue
	case StepRunFailed, StepRunError:
		cond = metav1.ConditionFalse
	}
	setSucceeded(&s.Conditions, cond, reason, string(phase), s.Message, generation, now)
}

// setSucceeded sets the Succeeded condition that mirrors a phase; the reason defaults to the
// phase. A zero now lets meta.SetStatusCondition stamp the current time.
func setSucceeded(conds *[]metav1.Condition, status metav1.ConditionStatus, reason, phase, message string, generation int64, now time.Time) {
	if reason == "" {
		reason = phase
	}
	c := metav1.Condition{Type: ConditionSucceeded, Status: status, Reason: reason, Message: message, ObservedGeneration: generation}
	if !now.IsZero() {
		c.LastTransitionTime = metav1.NewTime(now)
	}
	meta.SetStatusCondition(conds, c)
}

// SetTimes records when main started and finished and the rounded duration between them.
// A nil argument leaves the field as it is.
func (s *StepRunStatus) SetTimes(started, finished *time.Time) {
	if started != nil {
		s.StartedAt = &metav1.Time{Time: *started}
	}
	if finished != nil {
		s.FinishedAt = &metav1.Time{Time: *finished}
	}
	if s.StartedAt != nil && s.FinishedAt != nil {
		s.Duration = FormatDuration(s.FinishedAt.Sub(s.StartedAt.Time))
	}
}

// clockSkewAllowance is how far before its StepRun's creation a kubelet's timestamp may lie and
// still be believed: nodes' clocks and the API server's differ a little.
const clockSkewAllowance = time.Minute

// PlausibleRunTime returns t when it can be a time of a run created at created, and nil when it
// cannot: zero, or before the creation (the kubelet reports 1970 for a container that never
// started). Better no time, and no duration, than an impossible one.
func PlausibleRunTime(t, created time.Time) *time.Time {
	if t.IsZero() || (!created.IsZero() && t.Before(created.Add(-clockSkewAllowance))) {
		return nil
	}
	return &t
}

// FormatDuration renders a run's length for people: "350ms", "3s", "1m2s".
func FormatDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "" // clock skew: better no duration than a wrong one
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// MainNeverStarted reports whether the run ended Error with the controller's word that main
// never started.
func (s *StepRunStatus) MainNeverStarted() bool {
	if s.Phase != StepRunError {
		return false
	}
	c := meta.FindStatusCondition(s.Conditions, ConditionMainStarted)
	return c != nil && c.Status == metav1.ConditionFalse
}

// userCausedErrors are Error reasons that a new attempt cannot fix: the Pod or its image is
// wrong, not the infrastructure it met.
var userCausedErrors = map[string]bool{
	ReasonPodForbidden:            true,
	ReasonInvalidPod:              true,
	ReasonServiceAccountForbidden: true,
	ReasonImagePullFailed:         true,
}

// NeverStartedInfrastructureFailure reports whether a run ended because of the infrastructure
// before main ever started (the runtime refused the container, the Pod was evicted, deleted or
// lost, the executor never came up): main had no chance to cause side effects, so a new attempt
// is safe. Failures the user's spec caused are excluded: retrying cannot help them.
func (s *StepRunStatus) NeverStartedInfrastructureFailure() bool {
	return s.MainNeverStarted() && !userCausedErrors[s.Reason]
}
