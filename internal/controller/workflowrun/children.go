package workflowrun

import (
	"context"
	"fmt"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

// OwnerUIDIndex indexes StepRuns by the UID of the WorkflowRun that controls them, so a
// reconcile lists its children once, from the cache, by identity rather than by name.
const OwnerUIDIndex = ".metadata.controller.workflowrun.uid"

// OwnerUID is the OwnerUIDIndex function.
func OwnerUID(obj client.Object) []string {
	ref := metav1.GetControllerOf(obj)
	if ref == nil || ref.Kind != "WorkflowRun" || ref.APIVersion != v1alpha1.GroupVersion.String() {
		return nil
	}
	return []string{string(ref.UID)}
}

// itemKey names one item of one step; item is -1 for a step without fan-out.
type itemKey struct {
	step string
	item int
}

// attempt is one StepRun of an item. sr is nil for a StepRun this controller created and its
// cache has not shown yet: it counts as running, and is never created twice.
type attempt struct {
	name string
	n    int
	sr   *v1alpha1.StepRun
}

func (a *attempt) phase() v1alpha1.StepRunPhase {
	if a.sr == nil {
		return ""
	}
	return a.sr.Status.Phase
}

func (a *attempt) terminal() bool { return a.phase().IsTerminal() }

// children are a run's StepRuns sorted by item, attempts in order.
type children struct {
	items map[itemKey][]attempt
	// steps holds the steps that have at least one StepRun.
	steps map[string]bool
	// created counts StepRuns seen or expected: anything at all means the run has started.
	created int
}

// last returns the item's latest attempt, or nil.
func (c *children) last(k itemKey) *attempt {
	a := c.items[k]
	if len(a) == 0 {
		return nil
	}
	return &a[len(a)-1]
}

// sortChildren sorts a run's StepRuns, plus the ones it created but has not seen yet, by item
// and attempt. StepRuns without the step label (not made by this controller) are ignored.
func sortChildren(list []v1alpha1.StepRun, expected map[string]expectation) *children {
	c := &children{items: map[itemKey][]attempt{}, steps: map[string]bool{}}
	seen := make(map[string]bool, len(list))
	for i := range list {
		sr := &list[i]
		step, ok := sr.Labels[v1alpha1.LabelStep]
		if !ok {
			continue
		}
		k := itemKey{step: step, item: v1alpha1.IntLabel(sr.Labels, v1alpha1.LabelItem, -1)}
		c.items[k] = append(c.items[k], attempt{name: sr.Name, n: v1alpha1.IntLabel(sr.Labels, v1alpha1.LabelAttempt, 0), sr: sr})
		seen[sr.Name] = true
		c.steps[step] = true
		c.created++
	}
	for name, e := range expected {
		if !seen[name] {
			c.items[e.key] = append(c.items[e.key], attempt{name: name, n: e.attempt})
			c.steps[e.key.step] = true
			c.created++
		}
	}
	for _, a := range c.items {
		slices.SortFunc(a, func(x, y attempt) int { return x.n - y.n })
	}
	return c
}

// loadChildren lists the run's StepRuns from the cache through the owner index. The objects
// are the cache's own (no deep copy: a wide fan-out lists thousands per reconcile) and must
// never be modified.
func (r *Reconciler) loadChildren(ctx context.Context, wfr *v1alpha1.WorkflowRun) ([]v1alpha1.StepRun, error) {
	list := &v1alpha1.StepRunList{}
	if err := r.Client.List(ctx, list, client.InNamespace(wfr.Namespace),
		client.MatchingFields{OwnerUIDIndex: string(wfr.UID)}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing stepruns: %w", err)
	}
	return list.Items, nil
}

// expectation is a StepRun created by this controller and not seen in its cache yet.
type expectation struct {
	key     itemKey
	attempt int
	at      time.Time
}
