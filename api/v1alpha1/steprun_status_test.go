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

func TestMainNeverStartedAndInfrastructureFailure(t *testing.T) {
	mainStarted := func(status metav1.ConditionStatus, reason string) []metav1.Condition {
		return []metav1.Condition{{Type: ConditionMainStarted, Status: status, Reason: reason}}
	}
	neverStarted := mainStarted(metav1.ConditionFalse, ReasonMainNeverStarted)
	cases := []struct {
		name                        string
		status                      StepRunStatus
		wantNeverStarted, wantInfra bool
	}{
		{"executor lost before main started", StepRunStatus{Phase: StepRunError, Reason: ReasonExecutorLost, Conditions: neverStarted}, true, true},
		{"pod evicted before main started", StepRunStatus{Phase: StepRunError, Reason: ReasonPodEvicted, Conditions: neverStarted}, true, true},
		{"pod deleted before main started", StepRunStatus{Phase: StepRunError, Reason: ReasonPodDeleted, Conditions: neverStarted}, true, true},
		{"node lost before main started", StepRunStatus{Phase: StepRunError, Reason: ReasonNodeLost, Conditions: neverStarted}, true, true},
		{"runtime refused the container", StepRunStatus{Phase: StepRunError, Reason: ReasonContainerCreateFailed, Conditions: neverStarted}, true, true},
		{"pod forbidden is the user's", StepRunStatus{Phase: StepRunError, Reason: ReasonPodForbidden, Conditions: neverStarted}, true, false},
		{"invalid pod is the user's", StepRunStatus{Phase: StepRunError, Reason: ReasonInvalidPod, Conditions: neverStarted}, true, false},
		{"service account forbidden is the user's", StepRunStatus{Phase: StepRunError, Reason: ReasonServiceAccountForbidden, Conditions: neverStarted}, true, false},
		{"image pull failure is the user's", StepRunStatus{Phase: StepRunError, Reason: ReasonImagePullFailed, Conditions: neverStarted}, true, false},
		{"main started, then the executor was lost", StepRunStatus{Phase: StepRunError, Reason: ReasonExecutorLost,
			Conditions: mainStarted(metav1.ConditionTrue, ReasonMainStarted)}, false, false},
		{"no MainStarted condition", StepRunStatus{Phase: StepRunError, Reason: ReasonExecutorLost}, false, false},
		{"MainStarted unknown", StepRunStatus{Phase: StepRunError, Reason: ReasonExecutorLost,
			Conditions: mainStarted(metav1.ConditionUnknown, ReasonMainNeverStarted)}, false, false},
		{"Failed is never a never-started run", StepRunStatus{Phase: StepRunFailed, Reason: ReasonDeadlineExceeded, Conditions: neverStarted}, false, false},
		{"still pending", StepRunStatus{Phase: StepRunPending, Conditions: neverStarted}, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.status.MainNeverStarted(); got != tc.wantNeverStarted {
				t.Errorf("MainNeverStarted() = %v, want %v", got, tc.wantNeverStarted)
			}
			if got := tc.status.NeverStartedInfrastructureFailure(); got != tc.wantInfra {
				t.Errorf("NeverStartedInfrastructureFailure() = %v, want %v", got, tc.wantInfra)
			}
		})
	}
}

func TestIntLabel(t *testing.T) {
	labels := map[string]string{"n": "7", "bad": "x", "empty": ""}
	for key, want := range map[string]int{"n": 7, "bad": -1, "empty": -1, "missing": -1} {
		if got := IntLabel(labels, key, -1); got != want {
			t.Errorf("IntLabel(%q) = %d, want %d", key, got, want)
		}
	}
}
