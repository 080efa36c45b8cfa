package podspec

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

// nodeLoss is the pair of tolerations the builder adds, for seconds.
func nodeLoss(seconds int64) []corev1.Toleration {
	return []corev1.Toleration{
		{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &seconds},
		{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &seconds},
	}
}

func TestNodeLossTolerationsLeaveTheStepRunsOwnChoice(t *testing.T) {
	forever := corev1.Toleration{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists}
	everything := corev1.Toleration{Operator: corev1.TolerationOpExists}
	onlyNoSchedule := corev1.Toleration{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}
	tests := []struct {
		name string
		user []corev1.Toleration
		want []corev1.Toleration
	}{
		{"none: both added", nil, nodeLoss(45)},
		{"unreachable tolerated for ever: only not-ready added", []corev1.Toleration{forever},
			[]corev1.Toleration{forever, nodeLoss(45)[0]}},
		{"every taint tolerated: nothing added", []corev1.Toleration{everything}, []corev1.Toleration{everything}},
		{"not-ready tolerated for NoSchedule only: both added", []corev1.Toleration{onlyNoSchedule},
			append([]corev1.Toleration{onlyNoSchedule}, nodeLoss(45)...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, withNodeLossTolerations(tc.user, 45*time.Second)); diff != "" {
				t.Errorf("tolerations (-want +got):\n%s", diff)
			}
		})
	}
}
