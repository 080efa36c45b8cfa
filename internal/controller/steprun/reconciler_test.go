package steprun

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/podspec"
)

// A Pod the cache has not seen yet is not a deleted Pod: the informer lags behind creates, by up
// to a minute on a loaded cluster, while the executor's first report (which records podName)
// goes straight to the API server.
func TestAPodTheCacheLacksCountsAsDeletedOnlyWhenTheAPIServerLacksItToo(t *testing.T) {
	scheme := testScheme(t)
	running := func() *v1alpha1.StepRun {
		sr := &v1alpha1.StepRun{ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: "ns", UID: "sr-uid"}}
		sr.Status.Phase, sr.Status.PodName = v1alpha1.StepRunRunning, podspec.PodName("run")
		return sr
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: podspec.PodName("run"), Namespace: "ns",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: v1alpha1.GroupVersion.String(), Kind: "StepRun",
			Name: "run", UID: "sr-uid", Controller: new(true)}}}}
	pod.Status.Phase = corev1.PodRunning

	cases := []struct {
		name      string
		apiServer []client.Object
		wantPhase v1alpha1.StepRunPhase
		wantWhy   string
	}{
		{"the API server has it: the run goes on", []client.Object{pod}, v1alpha1.StepRunRunning, ""},
		{"the API server lacks it too: deleted", nil, v1alpha1.StepRunError, v1alpha1.ReasonPodDeleted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sr := running()
			cache := fake.NewClientBuilder().WithScheme(scheme).WithObjects(sr).WithStatusSubresource(sr).Build()
			api := fake.NewClientBuilder().WithScheme(scheme).WithObjects(tc.apiServer...).Build()
			r := &Reconciler{Client: cache, APIReader: api, Clock: clock.RealClock{}, Policy: DefaultPolicy,
				Recorder: events.NewFakeRecorder(10)}
			if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(sr)}); err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			got := &v1alpha1.StepRun{}
			if err := cache.Get(context.Background(), client.ObjectKeyFromObject(sr), got); err != nil {
				t.Fatal(err)
			}
			if got.Status.Phase != tc.wantPhase || got.Status.Reason != tc.wantWhy {
				t.Errorf("phase %q reason %q, want %q %q", got.Status.Phase, got.Status.Reason, tc.wantPhase, tc.wantWhy)
			}
		})
	}
}

// testScheme knows the core types and pnsflow's.
func testScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return scheme
}
