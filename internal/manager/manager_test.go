package manager

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

// The Pod cache keeps what the StepRun controller reads (metadata, status) and drops the rest.
func TestCacheOptionsPodTransform(t *testing.T) {
	var transform func(any) (any, error)
	for obj, by := range CacheOptions().ByObject {
		if _, ok := obj.(*corev1.Pod); ok {
			transform = by.Transform
		}
	}
	if transform == nil {
		t.Fatal("no Pod transform")
	}
	now := metav1.Now()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", CreationTimestamp: now, DeletionTimestamp: &now,
			Labels:          map[string]string{v1alpha1.LabelStepRun: "s"},
			OwnerReferences: []metav1.OwnerReference{{Name: "s", UID: "u"}},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "m"}}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "busybox"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Reason: "r",
			ContainerStatuses: []corev1.ContainerStatus{{Name: "main", State: corev1.ContainerState{
				Terminated: &corev1.ContainerStateTerminated{ExitCode: 3}}}}},
	}
	out, err := transform(pod)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*corev1.Pod)
	if len(got.Spec.Containers) != 0 || got.ManagedFields != nil {
		t.Errorf("spec or managedFields kept: %+v", got)
	}
	if got.Name != "p" || !got.CreationTimestamp.Equal(&now) || got.DeletionTimestamp == nil ||
		len(got.OwnerReferences) != 1 || got.Labels[v1alpha1.LabelStepRun] != "s" ||
		got.Status.ContainerStatuses[0].State.Terminated.ExitCode != 3 || got.Status.Phase != corev1.PodRunning {
		t.Errorf("metadata or status lost: %+v", got)
	}
}

// Zero values mean the shipped defaults, never client-go's 5 QPS or one worker.
func TestWithDefaults(t *testing.T) {
	var o Options
	o.withDefaults()
	d := DefaultOptions()
	if o.QPS != d.QPS || o.Burst != d.Burst || o.StepRunWorkers != d.StepRunWorkers || o.WorkflowRunWorkers != d.WorkflowRunWorkers {
		t.Errorf("withDefaults() = %+v, want the values of DefaultOptions() %+v", o, d)
	}
}
