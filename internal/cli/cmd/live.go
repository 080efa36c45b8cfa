package cmd

import (
	"context"
	"fmt"
	"io"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/cli/exitcode"
	"github.com/pnsflow/pnsflow/internal/cli/kwatch"
	"github.com/pnsflow/pnsflow/internal/cli/runview"
	"github.com/pnsflow/pnsflow/internal/cli/term"
	"github.com/pnsflow/pnsflow/internal/cli/tree"
	"github.com/pnsflow/pnsflow/internal/podspec"
)

// display shows a run on one stream: a frame redrawn in place on a terminal, otherwise the
// whole tree once, a line per change, and the whole tree again at the end.
type display struct {
	out    io.Writer
	mode   term.Mode
	size   func() (int, int)
	screen *term.Screen
	prev   *tree.Model
	last   time.Time
}

func newDisplay(out io.Writer, mode term.Mode, size func() (int, int)) *display {
	d := &display{out: out, mode: mode, size: size}
	if mode.Redraw {
		d.screen = term.NewScreen(out)
	}
	return d
}

// show draws m now.
func (d *display) show(m tree.Model, now time.Time) error {
	d.last = now
	defer func() { d.prev = &m }()
	if d.screen != nil {
		w, h := d.size()
		return d.screen.Draw(tree.Render(m, tree.Options{Width: safeWidth(w), Height: h, Color: d.mode.Color}))
	}
	if d.prev == nil {
		_, err := io.WriteString(d.out, tree.Render(m, tree.Options{}))
		return err
	}
	for _, l := range tree.Changes(*d.prev, m) {
		if _, err := fmt.Fprintln(d.out, l); err != nil {
			return err
		}
	}
	return nil
}

// final draws the last frame: on a terminal as tall as it needs (nothing redraws it), on a
// pipe the last changes and the whole tree.
func (d *display) final(m tree.Model) error {
	if d.screen != nil {
		w, _ := d.size()
		return d.screen.Draw(tree.Render(m, tree.Options{Width: safeWidth(w), Color: d.mode.Color}))
	}
	if d.prev != nil {
		for _, l := range tree.Changes(*d.prev, m) {
			if _, err := fmt.Fprintln(d.out, l); err != nil {
				return err
			}
		}
		if _, err := fmt.Fprintln(d.out); err != nil {
			return err
		}
	}
	_, err := io.WriteString(d.out, tree.Render(m, tree.Options{}))
	return err
}

// safeWidth leaves the terminal's last column free: a line that filled it exactly, with an
// icon the font draws two columns wide, would wrap, and the redraw would then miss a line.
func safeWidth(w int) int {
	if w > 1 {
		return w - 1
	}
	return w
}

// stepRunsOf selects a WorkflowRun's StepRuns by the label its controller puts on them.
func stepRunsOf(c client.WithWatch, namespace, run string, extra map[string]string) kwatch.Source {
	labels := client.MatchingLabels{v1alpha1.LabelWorkflowRun: podspec.LabelValue(run)}
	for k, v := range extra {
		labels[k] = v
	}
	return kwatch.Source{Client: c, NewList: func() client.ObjectList { return &v1alpha1.StepRunList{} },
		Options: []client.ListOption{client.InNamespace(namespace), labels}}
}

// byName selects one object by name: a watch needs a list, and a field selector makes it one.
func byName(c client.WithWatch, obj client.Object) kwatch.Source {
	newList := func() client.ObjectList { return &v1alpha1.WorkflowRunList{} }
	if _, ok := obj.(*v1alpha1.StepRun); ok {
		newList = func() client.ObjectList { return &v1alpha1.StepRunList{} }
	}
	return kwatch.Source{Client: c, NewList: newList, Options: []client.ListOption{
		client.InNamespace(obj.GetNamespace()), client.MatchingFields{"metadata.name": obj.GetName()}}}
}

// follow runs src.Follow in the background; its events arrive on the returned channel and its
// end (an error, or nil when ctx ended) on errs.
func follow(ctx context.Context, src kwatch.Source, errs chan<- error) <-chan kwatch.Event {
	ch := make(chan kwatch.Event, 64)
	go func() { errs <- src.Follow(ctx, ch) }()
	return ch
}

// watchRun shows obj live until it ends, and returns its outcome as an exit code: a
// WorkflowRun's (exitcode.ForWorkflowRun) or a StepRun's (exitcode.ForStepRun). Ctrl-C stops
// watching (the run goes on) and exits 130.
func (a *app) watchRun(ctx context.Context, obj client.Object) error {
	sigs, stop := a.interrupts()
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d := newDisplay(a.Out, a.outMode(), a.Size)
	errs := make(chan error, 2)

	var (
		wfr     *v1alpha1.WorkflowRun
		sr      *v1alpha1.StepRun
		agg     *runview.Workflow
		srs     <-chan kwatch.Event
		uid     = obj.GetUID()
		model   func() tree.Model
		changed = true
	)
	switch o := obj.(type) {
	case *v1alpha1.WorkflowRun:
		wfr, agg = o, runview.NewWorkflow(o.UID, false)
		srs = follow(ctx, stepRunsOf(a.client, o.Namespace, o.Name, nil), errs)
		model = func() tree.Model { return agg.Model(wfr, a.Now()) }
	case *v1alpha1.StepRun:
		sr = o
		model = func() tree.Model { return runview.StepRun(sr, a.Now()) }
	}
	self := follow(ctx, byName(a.client, obj), errs)
	ticker := time.NewTicker(term.MinInterval)
	defer ticker.Stop()
	for {
		select {
		case ev := <-self:
			if ev.Object.GetUID() != uid {
				continue
			}
			if ev.Type == watch.Deleted {
				_ = d.final(model())
				return fmt.Errorf("%s %s was deleted while it was watched", kindOf(obj), obj.GetName())
			}
			switch o := ev.Object.(type) {
			case *v1alpha1.WorkflowRun:
				wfr = o
			case *v1alpha1.StepRun:
				sr = o
			}
			changed = true
		case ev := <-srs:
			if ev.Type != watch.Deleted {
				agg.Observe(ev.Object.(*v1alpha1.StepRun))
				changed = true
			}
		case now := <-ticker.C:
			if term.Due(changed, d.mode.Redraw, now.Sub(d.last)) {
				changed = false
				if err := d.show(model(), now); err != nil {
					return err
				}
			}
		case err := <-errs:
			if err == nil {
				err = ctx.Err()
			}
			return fmt.Errorf("watching %s: %w", obj.GetName(), err)
		case <-sigs:
			_ = d.final(model())
			a.notef("stopped watching; %s %s goes on (kubectl pnsflow cancel %s stops a WorkflowRun)", kindOf(obj), obj.GetName(), obj.GetName())
			return exitcode.Quiet(exitcode.Interrupted)
		}
		if wfr != nil && wfr.Status.Phase.IsTerminal() {
			return a.finishWorkflow(ctx, d, wfr, agg)
		}
		if sr != nil && sr.Status.Phase.IsTerminal() {
			if err := d.final(model()); err != nil {
				return err
			}
			code, _ := exitcode.ForStepRun(sr.Status)
			return exitcode.Quiet(code)
		}
	}
}

// finishWorkflow draws the last frame from a fresh list of the StepRuns — the watch may lag the
// run's own status — and returns the outcome.
func (a *app) finishWorkflow(ctx context.Context, d *display, wfr *v1alpha1.WorkflowRun, agg *runview.Workflow) error {
	if _, err := stepRunsOf(a.client, wfr.Namespace, wfr.Name, nil).List(ctx, func(o client.Object) error {
		agg.Observe(o.(*v1alpha1.StepRun))
		return nil
	}); err != nil {
		return fmt.Errorf("listing the StepRuns of %s: %w", wfr.Name, err)
	}
	if err := d.final(agg.Model(wfr, a.Now())); err != nil {
		return err
	}
	return exitcode.Quiet(exitcode.ForWorkflowRun(wfr.Status.Phase))
}

// ownedBy reports whether obj's controller is the object with uid.
func ownedBy(obj client.Object, uid types.UID) bool {
	for _, r := range obj.GetOwnerReferences() {
		if r.Controller != nil && *r.Controller && r.UID == uid {
			return true
		}
	}
	return false
}
