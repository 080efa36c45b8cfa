package podspec

import (
	"time"

	corev1 "k8s.io/api/core/v1"
)

// nodeLossTaints are the taints the node lifecycle controller puts on a node that stopped
// answering (unreachable) or says it is not ready.
var nodeLossTaints = []string{corev1.TaintNodeNotReady, corev1.TaintNodeUnreachable}

// withNodeLossTolerations adds to the StepRun's tolerations one for each node-loss taint, for
// after: then the taint manager evicts the Pod and the controller ends the run Error/NodeLost
// (a WorkflowRun may retry it elsewhere). Without them the API server's admission adds 300 s.
// A taint the StepRun already tolerates for NoExecute is left to the StepRun.
func withNodeLossTolerations(user []corev1.Toleration, after time.Duration) []corev1.Toleration {
	out := append([]corev1.Toleration(nil), user...)
	seconds := int64(after / time.Second)
	for _, key := range nodeLossTaints {
		if toleratesNoExecute(user, key) {
			continue
		}
		out = append(out, corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists,
			Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &seconds})
	}
	return out
}

// toleratesNoExecute reports whether one of ts tolerates a NoExecute taint with key.
func toleratesNoExecute(ts []corev1.Toleration, key string) bool {
	for _, t := range ts {
		keyMatches := t.Key == key || (t.Key == "" && t.Operator == corev1.TolerationOpExists)
		if keyMatches && (t.Effect == "" || t.Effect == corev1.TaintEffectNoExecute) {
			return true
		}
	}
	return false
}
