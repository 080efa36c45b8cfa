package workflowrun

import (
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

const (
	// batchFactor: StepRun events for a run are batched for batchFactor times what the run's
	// last evaluation cost, so evaluating it takes at most about 1/(batchFactor+1) of a core.
	batchFactor = 10
	// DefaultMaxBatchDelay caps the batch window, which keeps status.progress fresh (the
	// window plus StatusInterval stays well under 2 s).
	DefaultMaxBatchDelay = 500 * time.Millisecond
)

// batchDelay is how long StepRun events for a run wait for more before it is reconciled:
// batchFactor × the cost of its last evaluation, at most limit. A run reconciled in well under
// a millisecond (a few StepRuns) is reconciled at once; a run of 5000 items, whose every
// reconcile lists and sorts all 5000, is reconciled a few times a second instead of back to
// back while its StepRuns change by the thousand.
func batchDelay(cost, limit time.Duration) time.Duration {
	return min(batchFactor*cost, limit)
}

// stepRunEvents enqueues the WorkflowRun that controls a StepRun, like
// handler.EnqueueRequestForOwner with OnlyControllerOwner, after the run's batch delay.
func (r *Reconciler) stepRunEvents() handler.EventHandler {
	type queue = workqueue.TypedRateLimitingInterface[reconcile.Request]
	enqueue := func(obj client.Object, q queue) {
		ref := metav1.GetControllerOf(obj)
		if ref == nil || ref.Kind != "WorkflowRun" || ref.APIVersion != v1alpha1.GroupVersion.String() {
			return
		}
		key := types.NamespacedName{Namespace: obj.GetNamespace(), Name: ref.Name}
		req := reconcile.Request{NamespacedName: key}
		if d := batchDelay(r.mem.evalCost(key), r.MaxBatchDelay); d > 0 {
			// An already queued request keeps its earlier time: a burst of events waits for
			// the first one's window, never longer.
			q.AddAfter(req, d)
			return
		}
		q.Add(req)
	}
	return handler.Funcs{
		CreateFunc: func(_ context.Context, e event.CreateEvent, q queue) { enqueue(e.Object, q) },
		UpdateFunc: func(_ context.Context, e event.UpdateEvent, q queue) {
			enqueue(e.ObjectNew, q)
			if metav1.GetControllerOf(e.ObjectOld) != nil && !sameController(e.ObjectOld, e.ObjectNew) {
				enqueue(e.ObjectOld, q)
			}
		},
		DeleteFunc:  func(_ context.Context, e event.DeleteEvent, q queue) { enqueue(e.Object, q) },
		GenericFunc: func(_ context.Context, e event.GenericEvent, q queue) { enqueue(e.Object, q) },
	}
}

func sameController(a, b client.Object) bool {
	ra, rb := metav1.GetControllerOf(a), metav1.GetControllerOf(b)
	return ra != nil && rb != nil && ra.UID == rb.UID
}
