package steprun

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/podspec"
)

// The default identity is set up once per namespace and then remembered; when its ServiceAccount
// has gone since (the namespace made again under the same name), repair makes it again.
func TestRepairMakesTheDefaultIdentityAgainOnlyWhenItWentMissing(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).Build()
	ids := &identities{client: c}
	ctx := context.Background()
	sr := &v1alpha1.StepRun{ObjectMeta: metav1.ObjectMeta{Name: "sr", Namespace: "ns"}}
	sa := client.ObjectKey{Namespace: "ns", Name: ExecutorIdentity}

	if created, err := ids.ensureDefault(ctx, "ns"); err != nil || !created {
		t.Fatalf("first setup = %v, %v; want created", created, err)
	}
	if created, err := ids.ensureDefault(ctx, "ns"); err != nil || created {
		t.Fatalf("second setup = %v, %v; want remembered, nothing created", created, err)
	}
	if repaired, err := ids.repair(ctx, sr); err != nil || repaired {
		t.Fatalf("repair with everything there = %v, %v; want nothing to repair", repaired, err)
	}

	if err := c.Delete(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: ExecutorIdentity}}); err != nil {
		t.Fatal(err)
	}
	if created, err := ids.ensureDefault(ctx, "ns"); err != nil || created {
		t.Fatalf("setup after the account went = %v, %v; want still remembered (no API call per step)", created, err)
	}
	if repaired, err := ids.repair(ctx, sr); err != nil || !repaired {
		t.Fatalf("repair after the account went = %v, %v; want repaired", repaired, err)
	}
	if err := c.Get(ctx, sa, &corev1.ServiceAccount{}); err != nil {
		t.Fatalf("the ServiceAccount was not made again: %v", err)
	}
	if err := c.Get(ctx, sa, &rbacv1.RoleBinding{}); err != nil {
		t.Fatalf("the RoleBinding is gone: %v", err)
	}

	own := sr.DeepCopy()
	own.Spec.ServiceAccountName = "mine"
	if repaired, err := ids.repair(ctx, own); err != nil || repaired {
		t.Fatalf("repair of a run with its own account = %v, %v; want nothing done (its account is the user's)", repaired, err)
	}
}

// A StepRun whose Pod create is forbidden because the remembered executor ServiceAccount is gone
// is not ended Error/PodForbidden: the account is made again and the create retried.
func TestAPodForbiddenForAMissingExecutorAccountIsRetriedNotFinished(t *testing.T) {
	ctx := context.Background()
	sr := &v1alpha1.StepRun{ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: "ns", UID: "sr-uid"},
		Spec: v1alpha1.StepRunSpec{Image: "busybox", Command: []string{"true"}}}
	// The ServiceAccount admission plugin's refusal of a Pod whose account does not exist.
	admitted := func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
		if pod, ok := obj.(*corev1.Pod); ok {
			err := c.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: pod.Spec.ServiceAccountName}, &corev1.ServiceAccount{})
			if apierrors.IsNotFound(err) {
				return apierrors.NewForbidden(corev1.Resource("pods"), pod.Name,
					fmt.Errorf("error looking up service account %s/%s: %w", pod.Namespace, pod.Spec.ServiceAccountName, err))
			}
		}
		return c.Create(ctx, obj, opts...)
	}
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(sr).WithStatusSubresource(sr).
		WithInterceptorFuncs(interceptor.Funcs{Create: admitted}).Build()
	r := &Reconciler{Client: c, APIReader: c, Clock: clock.RealClock{}, Policy: DefaultPolicy,
		Recorder: events.NewFakeRecorder(10), Pod: podspec.Config{ExecutorImage: "executor"},
		identities: &identities{client: c}}
	// The namespace was set up once, then lost its account (made again under the same name).
	if _, err := r.identities.ensureDefault(ctx, "ns"); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: ExecutorIdentity}}); err != nil {
		t.Fatal(err)
	}

	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(sr)}
	if _, err := r.Reconcile(ctx, req); err == nil {
		t.Fatal("Reconcile with the account missing succeeded; want an error, so the run is retried")
	}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatalf("Reconcile after the account was made again: %v", err)
	}
	got := &v1alpha1.StepRun{}
	if err := c.Get(ctx, req.NamespacedName, got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase.IsTerminal() {
		t.Fatalf("the run ended %s/%s: %s", got.Status.Phase, got.Status.Reason, got.Status.Message)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "ns", Name: podspec.PodName("run")}, &corev1.Pod{}); err != nil {
		t.Fatalf("no Pod after the retry: %v", err)
	}
}
