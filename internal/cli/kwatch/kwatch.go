// Package kwatch follows objects live: one list, in pages so that thousands of StepRuns never
// sit in memory at once, then a watch from the list's resourceVersion that resumes after a
// dropped connection and lists again when the API server no longer has that version (410).
// Nothing here polls.
package kwatch

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	watchtools "k8s.io/client-go/tools/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// DefaultPageSize is how many objects one list request returns.
const DefaultPageSize = 500

// Event is an object listed (Added) or changed.
type Event struct {
	Type   watch.EventType
	Object client.Object
}

// Source is what to follow: a kind (by its list type) and the options that select objects.
type Source struct {
	Client  client.WithWatch
	NewList func() client.ObjectList
	Options []client.ListOption
	// PageSize is how many objects one list request returns; 0 means DefaultPageSize.
	PageSize int64
}

// List calls fn for every selected object, page by page, and returns the resourceVersion the
// pages were served at.
func (s Source) List(ctx context.Context, fn func(client.Object) error) (string, error) {
	token, rv := "", ""
	size := s.PageSize
	if size <= 0 {
		size = DefaultPageSize
	}
	for {
		list := s.NewList()
		opts := append(append([]client.ListOption{}, s.Options...), client.Limit(size), client.Continue(token))
		if err := s.Client.List(ctx, list, opts...); err != nil {
			return "", fmt.Errorf("listing: %w", err)
		}
		if rv == "" {
			rv = list.GetResourceVersion()
		}
		err := meta.EachListItem(list, func(o runtime.Object) error {
			obj, ok := o.(client.Object)
			if !ok {
				return fmt.Errorf("unexpected %T in list", o)
			}
			return fn(obj)
		})
		if err != nil {
			return "", err
		}
		if token = list.GetContinue(); token == "" {
			return rv, nil
		}
	}
}

// Follow sends every selected object, then every change, to out until ctx ends (returning nil)
// or the API server refuses (returning why). A watch that expired is followed by a new list,
// so objects may be sent again: consumers must accept seeing an object twice.
func (s Source) Follow(ctx context.Context, out chan<- Event) error {
	for {
		rv, err := s.List(ctx, func(o client.Object) error {
			return send(ctx, out, Event{Type: watch.Added, Object: o})
		})
		if err != nil {
			return quiet(ctx, err)
		}
		expired, err := s.watch(ctx, rv, out)
		if err != nil || !expired {
			return quiet(ctx, err)
		}
	}
}

// watch follows changes after rv; it reports expired when a new list is needed.
func (s Source) watch(ctx context.Context, rv string, out chan<- Event) (expired bool, err error) {
	rw, err := watchtools.NewRetryWatcherWithContext(ctx, rv, watcher{s})
	if err != nil {
		return false, fmt.Errorf("watching: %w", err)
	}
	defer rw.Stop()
	for ev := range rw.ResultChan() {
		switch ev.Type {
		case watch.Error:
			err := apierrors.FromObject(ev.Object)
			if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
				return true, nil
			}
			return false, fmt.Errorf("watching: %w", err)
		case watch.Added, watch.Modified, watch.Deleted:
			obj, ok := ev.Object.(client.Object)
			if !ok {
				continue
			}
			if err := send(ctx, out, Event{Type: ev.Type, Object: obj}); err != nil {
				return false, err
			}
		}
	}
	return false, ctx.Err()
}

func send(ctx context.Context, out chan<- Event, ev Event) error {
	select {
	case out <- ev:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// quiet turns the end of ctx into a normal end.
func quiet(ctx context.Context, err error) error {
	if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return nil
	}
	return err
}

// watcher adapts the source to the RetryWatcher.
type watcher struct{ s Source }

// WatchWithContext opens a watch. A resourceVersion the API server no longer has is turned into
// an expired event, which ends the RetryWatcher (it would otherwise retry that version forever)
// and makes Follow list again.
func (w watcher) WatchWithContext(ctx context.Context, options metav1.ListOptions) (watch.Interface, error) {
	raw := options
	opts := append(append([]client.ListOption{}, w.s.Options...), &client.ListOptions{Raw: &raw})
	wi, err := w.s.Client.Watch(ctx, w.s.NewList(), opts...)
	if err != nil && (apierrors.IsResourceExpired(err) || apierrors.IsGone(err)) {
		status := apierrors.NewResourceExpired(err.Error()).ErrStatus
		ch := make(chan watch.Event, 1)
		ch <- watch.Event{Type: watch.Error, Object: &status}
		return watch.NewProxyWatcher(ch), nil
	}
	return wi, err
}
