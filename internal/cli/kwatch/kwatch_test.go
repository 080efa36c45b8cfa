package kwatch

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	. "github.com/pnsflow/pnsflow/internal/testutil"
)

// expiringClient refuses its first watches with 410 Gone, as an API server does for a
// resourceVersion it compacted away.
type expiringClient struct {
	client.WithWatch
	expire  int32
	lists   atomic.Int32
	watches atomic.Int32
	// opened receives each working watch: the fake replays nothing from a resourceVersion, so
	// the test creates objects only once a watch is open.
	opened chan struct{}
}

func (c *expiringClient) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	c.lists.Add(1)
	if err := c.WithWatch.List(ctx, list, opts...); err != nil {
		return err
	}
	// The fake serves lists without a resourceVersion; an API server always sets one.
	if list.GetResourceVersion() == "" {
		list.SetResourceVersion("1")
	}
	return nil
}

func (c *expiringClient) Watch(ctx context.Context, list client.ObjectList, opts ...client.ListOption) (watch.Interface, error) {
	if c.watches.Add(1) <= c.expire {
		return nil, apierrors.NewResourceExpired("too old resource version")
	}
	w, err := c.WithWatch.Watch(ctx, list, opts...)
	if err == nil {
		c.opened <- struct{}{}
	}
	return w, err
}

func newFake(t *testing.T, objs ...client.Object) client.WithWatch {
	t.Helper()
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).Build()
}

func TestFollowListsAgainWhenTheWatchExpired(t *testing.T) {
	c := &expiringClient{WithWatch: newFake(t, MakeStepRun("a", "ns").Obj()), expire: 1, opened: make(chan struct{}, 1)}
	src := Source{Client: c, NewList: func() client.ObjectList { return &v1alpha1.StepRunList{} }, Options: []client.ListOption{client.InNamespace("ns")}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := make(chan Event)
	done := make(chan error, 1)
	go func() { done <- src.Follow(ctx, out) }()

	// The first list sends a, the watch expires, the second list sends a again: consumers see
	// an object twice after an expiry, never miss one.
	next := func() Event {
		t.Helper()
		select {
		case ev := <-out:
			return ev
		case err := <-done:
			t.Fatalf("Follow ended early: %v", err)
		}
		return Event{}
	}
	for i := range 2 {
		ev := next()
		if ev.Type != watch.Added || ev.Object.GetName() != "a" {
			t.Fatalf("event %d = %s %s, want Added a", i, ev.Type, ev.Object.GetName())
		}
	}
	// Changes after the second list arrive through the (now working) watch.
	<-c.opened
	if err := c.Create(ctx, MakeStepRun("b", "ns").Obj()); err != nil {
		t.Fatal(err)
	}
	ev := next()
	if ev.Object.GetName() != "b" {
		t.Fatalf("got %s %s, want b", ev.Type, ev.Object.GetName())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Follow ended with %v after its context ended, want nil", err)
	}
	if got := c.lists.Load(); got != 2 {
		t.Errorf("listed %d times, want 2", got)
	}
}

func TestListCallsBackForEveryObject(t *testing.T) {
	var objs []client.Object
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		objs = append(objs, MakeStepRun(n, "ns").Obj())
	}
	src := Source{Client: newFake(t, objs...), NewList: func() client.ObjectList { return &v1alpha1.StepRunList{} }, PageSize: 2}
	var seen []string
	if _, err := src.List(context.Background(), func(o client.Object) error {
		seen = append(seen, o.GetName())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 5 {
		t.Errorf("saw %v, want all 5", seen)
	}
}
