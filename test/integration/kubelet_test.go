package integration

import (
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/podspec"
)

// The test plays kubelet: these helpers write what a kubelet would into a Pod's status.

func running() corev1.ContainerState {
	return corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}
}

func exited(code int32, reason string) corev1.ContainerState {
	now := metav1.Now()
	return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: code, Reason: reason, StartedAt: metav1.NewTime(now.Add(-time.Second)), FinishedAt: now}}
}

func waiting(reason, message string) corev1.ContainerState {
	return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}}
}

// setPodStatus writes the executor's and main's states and the Pod phase.
func setPodStatus(sr *v1alpha1.StepRun, phase corev1.PodPhase, executor, main corev1.ContainerState) {
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pod := &corev1.Pod{}
		if err := k8s.Get(ctx, key(sr.Namespace, podspec.PodName(sr.Name)), pod); err != nil {
			return err
		}
		pod.Status.Phase = phase
		// The executor is a native sidecar: kubelet lists it with the init containers.
		pod.Status.InitContainerStatuses = []corev1.ContainerStatus{
			{Name: "pns-executor", Image: executorImage, State: executor},
		}
		pod.Status.ContainerStatuses = []corev1.ContainerStatus{
			{Name: "main", Image: sr.Spec.Image, State: main},
		}
		return k8s.Status().Update(ctx, pod)
	})).To(Succeed())
}

// podsOf lists the Pods labelled as the StepRun's.
func podsOf(sr *v1alpha1.StepRun) []corev1.Pod {
	pods := &corev1.PodList{}
	ExpectWithOffset(1, k8s.List(ctx, pods, inNamespace(sr.Namespace),
		matchingLabels(map[string]string{v1alpha1.LabelStepRun: podspec.LabelValue(sr.Name)}))).To(Succeed())
	return pods.Items
}

// createMuteAndBoundAccounts makes two ServiceAccounts in ns for a chosen serviceAccountName:
// "mute", which may not report, and "bound", bound to the pnsflow-executor ClusterRole.
func createMuteAndBoundAccounts(ns string) {
	for _, name := range []string{"mute", "bound"} {
		ExpectWithOffset(1, k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}})).To(Succeed())
	}
	ExpectWithOffset(1, k8s.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "bound-executor", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "pnsflow-executor"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "bound", Namespace: ns}},
	})).To(Succeed())
}
