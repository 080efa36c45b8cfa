//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

// awaitStepRun watches one StepRun until done is true and returns it with the time the watch
// delivered it (the bench measures with that time). It lists first, so a run that is already
// done returns at once, and re-watches from the last resourceVersion when a watch ends.
// Safe to call from goroutines: it uses no Gomega.
func awaitStepRun(ctx context.Context, k client.ObjectKey, timeout time.Duration, done func(*v1alpha1.StepRun) bool) (*v1alpha1.StepRun, time.Time, error) {
	return await(ctx, k, timeout, &v1alpha1.StepRunList{}, done)
}

// awaitPod is awaitStepRun for a Pod.
func awaitPod(ctx context.Context, k client.ObjectKey, timeout time.Duration, done func(*corev1.Pod) bool) (*corev1.Pod, time.Time, error) {
	return await(ctx, k, timeout, &corev1.PodList{}, done)
}

func await[T client.Object](ctx context.Context, k client.ObjectKey, timeout time.Duration, list client.ObjectList, done func(T) bool) (T, time.Time, error) {
	var last T
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	byName := client.MatchingFields{"metadata.name": k.Name}
	rv := ""
	for {
		if rv == "" {
			l := list.DeepCopyObject().(client.ObjectList)
			if err := k8s.List(ctx, l, client.InNamespace(k.Namespace), byName); err != nil {
				return last, time.Time{}, fmt.Errorf("listing %s: %w (last seen: %v)", k, err, last)
			}
			items, err := meta.ExtractList(l)
			if err != nil {
				return last, time.Time{}, err
			}
			if len(items) == 1 {
				last = items[0].(T)
				if done(last) {
					return last, time.Now(), nil
				}
			}
			rv = l.GetResourceVersion()
		}
		w, err := k8s.Watch(ctx, list.DeepCopyObject().(client.ObjectList), client.InNamespace(k.Namespace), byName,
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}})
		if err != nil {
			if ctx.Err() != nil {
				return last, time.Time{}, fmt.Errorf("waiting for %s: %w; last seen: %s", k, ctx.Err(), describe(last))
			}
			rv = "" // e.g. 410 Gone: list again
			continue
		}
		for ev := range w.ResultChan() {
			switch ev.Type {
			case watch.Error:
				rv = ""
			case watch.Bookmark:
				if o, ok := ev.Object.(client.Object); ok {
					rv = o.GetResourceVersion()
				}
			case watch.Added, watch.Modified:
				o, ok := ev.Object.(T)
				if !ok {
					continue
				}
				at := time.Now()
				last, rv = o, o.GetResourceVersion()
				if done(o) {
					w.Stop()
					return o, at, nil
				}
			case watch.Deleted:
				if o, ok := ev.Object.(T); ok {
					rv = o.GetResourceVersion()
				}
			}
			if rv == "" {
				break
			}
		}
		w.Stop()
		if ctx.Err() != nil {
			return last, time.Time{}, fmt.Errorf("waiting for %s: %w; last seen: %s", k, ctx.Err(), describe(last))
		}
	}
}

func describe(o client.Object) string {
	switch v := o.(type) {
	case *v1alpha1.StepRun:
		if v != nil {
			return describeStatus(v)
		}
	case *corev1.Pod:
		if v != nil {
			return fmt.Sprintf("pod %s/%s phase=%s", v.Namespace, v.Name, v.Status.Phase)
		}
	}
	return "nothing"
}
