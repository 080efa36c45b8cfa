package v1alpha1

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestFormatDuration(t *testing.T) {
	tests := map[time.Duration]string{
		-1: "",
		0:  "0s",
		350*time.Millisecond + 400*time.Microsecond: "350ms",
		3*time.Second + 200*time.Millisecond:        "3s",
		62 * time.Second:                            "1m2s",
		time.Hour + 500*time.Millisecond:            "1h0m1s",
	}
	for d, want := range tests {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestSetPhaseMirrorsTheSucceededCondition(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	for phase, want := range map[StepRunPhase]metav1.ConditionStatus{
		StepRunPending: metav1.ConditionUnknown, StepRunRunning: metav1.ConditionUnknown,
		StepRunSucceeded: metav1.ConditionTrue, StepRunFailed: metav1.ConditionFalse, StepRunError: metav1.ConditionFalse,
	} {
		var s StepRunStatus
		s.SetPhase(phase, "", strings.Repeat("€", MaxMessageBytes), 3, now)
		c := meta.FindStatusCondition(s.Conditions, ConditionSucceeded)
		if c == nil || c.Status != want || c.Reason != string(phase) || c.ObservedGeneration != 3 || !c.LastTransitionTime.Time.Equal(now) {
			t.Errorf("%s: condition %+v, want status %s reason %s", phase, c, want, phase)
		}
		if len(s.Message) > MaxMessageBytes || !strings.HasSuffix(s.Message, "€") || c.Message != s.Message {
			t.Errorf("%s: message of %d bytes not capped at a rune boundary, or not mirrored", phase, len(s.Message))
		}
	}
}
