package workflowrun

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

func TestBatchDelay(t *testing.T) {
	for _, tc := range []struct {
		cost, want time.Duration
	}{
		{0, 0}, // never reconciled: at once
		{50 * time.Microsecond, 500 * time.Microsecond}, // a small run: next to nothing
		{20 * time.Millisecond, 200 * time.Millisecond}, // thousands of items
		{time.Second, DefaultMaxBatchDelay},             // capped
	} {
		if got := batchDelay(tc.cost, DefaultMaxBatchDelay); got != tc.want {
			t.Errorf("batchDelay(%v) = %v, want %v", tc.cost, got, tc.want)
		}
	}
}

// StepRun events enqueue the controlling run: at once for a run not evaluated yet, after the
// batch delay for an expensive one, never for a StepRun another kind controls.
func TestStepRunEvents(t *testing.T) {
	r := &Reconciler{MaxBatchDelay: time.Hour}
	h := r.stepRunEvents()
	owned := func(run, kind string) *v1alpha1.StepRun {
		sr := &v1alpha1.StepRun{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "ns"}}
		sr.OwnerReferences = []metav1.OwnerReference{{APIVersion: v1alpha1.GroupVersion.String(), Kind: kind,
			Name: run, UID: types.UID(run), Controller: new(true)}}
		return sr
	}
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	defer q.ShutDown()
	ctx := context.Background()

	h.Create(ctx, event.CreateEvent{Object: owned("cheap", "WorkflowRun")}, q)
	h.Create(ctx, event.CreateEvent{Object: owned("other", "Job")}, q)
	if q.Len() != 1 {
		t.Fatalf("queue holds %d requests, want the cheap run's alone", q.Len())
	}
	if req, _ := q.Get(); req.Name != "cheap" || req.Namespace != "ns" {
		t.Errorf("enqueued %v, want ns/cheap", req)
	}

	key := types.NamespacedName{Namespace: "ns", Name: "costly"}
	r.mem.get(key, "costly").cost.Store(int64(time.Second))
	h.Update(ctx, event.UpdateEvent{ObjectOld: owned("costly", "WorkflowRun"), ObjectNew: owned("costly", "WorkflowRun")}, q)
	if q.Len() != 0 {
		t.Errorf("a costly run was enqueued at once; want it batched")
	}
}
