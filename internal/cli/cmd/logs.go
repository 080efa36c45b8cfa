package cmd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/cli/archive"
	"github.com/pnsflow/pnsflow/internal/cli/exitcode"
	"github.com/pnsflow/pnsflow/internal/cli/podlogs"
	"github.com/pnsflow/pnsflow/internal/cli/runview"
)

// Log fetches at once: in order (a window whose output is held until its turn), and following
// (each stream writes as it reads; the API server and kubelets carry this many at a time).
const (
	orderedWindow = 8
	followStreams = 64
)

type logFlags struct {
	step   string
	follow bool
	tail   int64
}

func (a *app) logsCommand() *cobra.Command {
	f := &logFlags{}
	cmd := &cobra.Command{
		Use:   "logs NAME [--step STEP] [-f] [--tail N]",
		Short: "Print main's log of a StepRun, or of every StepRun of a WorkflowRun",
		Long: `Print main's log. For a WorkflowRun, every StepRun's log, each line prefixed with
step[item] (a retry adds /rN), in DAG order, then item, then attempt; --step keeps one step.
-f follows: logs being written are interleaved line by line as they come, and StepRuns that
start later are followed too, until the run has ended and every log has. When a Pod is gone
(deleted with a cancel, a TTL or by hand) that is said on stderr, and main's log is read from
the run's artifact repository when the executor archived it (spec.archiveLogs): the run's
artifactRepositoryRef, else --artifact-repository, with the credentials of the Secret it
names, through a port-forward when the repository is a cluster Service. Without an archive,
the tail the executor kept (status.outputs.result, at most 8 KiB) is printed instead.`,
		Example: `  kubectl pnsflow logs hello
  kubectl pnsflow logs hello-dag --step fan -f`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			obj, err := a.lookup(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer a.disconnect()
			var tail *int64
			if f.tail >= 0 {
				tail = &f.tail
			}
			switch o := obj.(type) {
			case *v1alpha1.StepRun:
				if f.step != "" {
					return errors.New("--step selects a step of a WorkflowRun; this is a StepRun")
				}
				return a.stepRunLogs(cmd.Context(), o, f.follow, tail)
			case *v1alpha1.WorkflowRun:
				if err := checkStep(o, f.step); err != nil {
					return err
				}
				if f.follow {
					return a.followWorkflowLogs(cmd.Context(), o, f.step, tail)
				}
				return a.workflowLogs(cmd.Context(), o, f.step, tail)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&f.step, "step", "", "only this step's StepRuns (a WorkflowRun)")
	cmd.Flags().BoolVarP(&f.follow, "follow", "f", false, "follow the logs as they are written, and StepRuns as they start")
	cmd.Flags().Int64Var(&f.tail, "tail", -1, "only the last N lines of each log")
	cmd.Flags().StringVar(&a.defaultRepo, "artifact-repository", archive.DefaultRepository.String(),
		"the manager's default artifact repository ConfigMap (NAMESPACE/NAME), where archived logs of runs that name none are")
	return cmd
}

// checkStep refuses a --step the run does not have.
func checkStep(wfr *v1alpha1.WorkflowRun, step string) error {
	if step == "" {
		return nil
	}
	names, _ := runview.Order(&wfr.Spec)
	if wfr.Spec.OnExit != nil {
		names = append(names, wfr.Spec.OnExit.Name)
	}
	if !slices.Contains(names, step) {
		return fmt.Errorf("%s has no step %q; its steps: %s", wfr.Name, step, strings.Join(names, ", "))
	}
	return nil
}

// stepRunLogs prints one StepRun's log; with follow it waits for main to start.
func (a *app) stepRunLogs(ctx context.Context, sr *v1alpha1.StepRun, follow bool, tail *int64) error {
	act, why := podlogs.Decide(sr)
	if act == podlogs.Wait && follow {
		var err error
		if sr, err = a.awaitStart(ctx, sr); err != nil {
			return err
		}
		act, why = podlogs.Decide(sr)
	}
	switch act {
	case podlogs.None:
		return fmt.Errorf("%s has no log: %s", sr.Name, why)
	case podlogs.Wait:
		return fmt.Errorf("%s: %s; -f waits for it", sr.Name, why)
	}
	out, notes := podlogs.NewWriter(a.Out, false), podlogs.NewWriter(a.ErrOut, false)
	return a.readLog(ctx, sr, podlogs.Options{Follow: follow, TailLines: tail}, out, notes, "", "")
}

// awaitStart watches sr until main has started or never will.
func (a *app) awaitStart(ctx context.Context, sr *v1alpha1.StepRun) (*v1alpha1.StepRun, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sigs, stop := a.interrupts()
	defer stop()
	errs := make(chan error, 1)
	events := follow(ctx, byName(a.client, sr), errs)
	for {
		select {
		case ev := <-events:
			if ev.Type == watch.Deleted {
				return nil, fmt.Errorf("StepRun %s was deleted before main started", sr.Name)
			}
			got := ev.Object.(*v1alpha1.StepRun)
			if act, _ := podlogs.Decide(got); act != podlogs.Wait {
				return got, nil
			}
		case err := <-errs:
			if err == nil {
				err = ctx.Err()
			}
			return nil, fmt.Errorf("watching StepRun %s: %w", sr.Name, err)
		case <-sigs:
			return nil, exitcode.Quiet(exitcode.Interrupted)
		}
	}
}

// readLog writes sr's log with prefix; a Pod that is gone is said on notes, and the archived
// log, else the log tail the executor kept, is written instead.
func (a *app) readLog(ctx context.Context, sr *v1alpha1.StepRun, o podlogs.Options, out, notes *podlogs.Writer, prefix, step string) error {
	rc, err := a.openLog(ctx, sr.Namespace, podlogs.PodName(sr), o, func(s string) { _ = notes.Line(prefix, step, s) })
	switch {
	case podlogs.IsGone(err):
		fresh := &v1alpha1.StepRun{}
		if gerr := a.client.Get(ctx, client.ObjectKeyFromObject(sr), fresh); gerr == nil {
			sr = fresh // the outputs were dropped from the copy held for ordering
		}
		if done, err := a.readArchived(ctx, sr, o, out, notes, prefix, step); done || err != nil {
			return err
		}
		if err := notes.Line(prefix, step, podlogs.GoneNote(sr)); err != nil {
			return err
		}
		if r := sr.Status.Outputs; r != nil && r.Result != nil {
			return podlogs.Text(*r.Result, out, prefix, step)
		}
		return nil
	case err != nil:
		return notes.Line(prefix, step, "cannot read the log: "+err.Error())
	}
	defer rc.Close()
	return podlogs.Copy(rc, out, prefix, step)
}

// openLog opens main's log; a follow resumes where the API server or kubelet cut it, and says
// so through note.
func (a *app) openLog(ctx context.Context, namespace, pod string, o podlogs.Options, note func(string)) (io.ReadCloser, error) {
	if o.Follow {
		return podlogs.Follow(ctx, a.logs, namespace, pod, o.TailLines, note)
	}
	return a.logs.Open(ctx, namespace, pod, o)
}

// readArchived writes the log the executor archived, if it did; done says it began to. An
// archive that cannot be read at all is said on notes and leaves done false, so the kept tail
// is written instead; one that breaks midway is an error, since part of it was written.
func (a *app) readArchived(ctx context.Context, sr *v1alpha1.StepRun, o podlogs.Options, out, notes *podlogs.Writer, prefix, step string) (done bool, err error) {
	art := podlogs.ArchivedLog(sr)
	if art == nil {
		return false, nil
	}
	rc, err := a.archive.Open(ctx, sr, *art)
	if err != nil {
		return false, notes.Line(prefix, step, "cannot read the archived log: "+err.Error())
	}
	defer rc.Close()
	br := bufio.NewReaderSize(rc, 64*1024)
	if _, err := br.Peek(1); err != nil && !errors.Is(err, io.EOF) {
		return false, notes.Line(prefix, step, "cannot read the archived log: "+err.Error())
	}
	if err := notes.Line(prefix, step, podlogs.ArchivedNote(sr, art)); err != nil {
		return true, err
	}
	if o.TailLines != nil {
		err = podlogs.CopyTail(br, out, prefix, step, *o.TailLines)
	} else {
		err = podlogs.Copy(br, out, prefix, step)
	}
	if err != nil {
		return true, fmt.Errorf("reading the archived log of %s: %w", sr.Name, err)
	}
	return true, nil
}

// entry is one StepRun of a WorkflowRun, held (without spec or outputs) while logs are ordered.
type entry struct {
	order, item, attempt int
	step                 string
	sr                   *v1alpha1.StepRun
}

func (e entry) prefix() string { return podlogs.Prefix(e.step, e.item, e.attempt) }

// stepOrder numbers the run's steps in DAG order, onExit last.
func stepOrder(wfr *v1alpha1.WorkflowRun) map[string]int {
	names, _ := runview.Order(&wfr.Spec)
	if wfr.Spec.OnExit != nil {
		names = append(names, wfr.Spec.OnExit.Name)
	}
	order := make(map[string]int, len(names))
	for i, n := range names {
		order[n] = i
	}
	return order
}

func newEntry(sr *v1alpha1.StepRun, order map[string]int) entry {
	step := sr.Labels[v1alpha1.LabelStep]
	item, attempt := -1, 0
	if v, err := strconv.Atoi(sr.Labels[v1alpha1.LabelItem]); err == nil {
		item = v
	}
	if v, err := strconv.Atoi(sr.Labels[v1alpha1.LabelAttempt]); err == nil {
		attempt = v
	}
	slim := &v1alpha1.StepRun{ObjectMeta: sr.ObjectMeta, Status: sr.Status}
	slim.ManagedFields, slim.Status.Outputs = nil, nil
	return entry{order: order[step], item: item, attempt: attempt, step: step, sr: slim}
}

// SortEntries orders logs as the run reads: DAG order, then item, then attempt.
func SortEntries(es []entry) {
	slices.SortFunc(es, func(x, y entry) int {
		if x.order != y.order {
			return x.order - y.order
		}
		if x.item != y.item {
			return x.item - y.item
		}
		return x.attempt - y.attempt
	})
}

func stepLabel(step string) map[string]string {
	if step == "" {
		return nil
	}
	return map[string]string{v1alpha1.LabelStep: step}
}

// workflowLogs prints every StepRun's log once, in order.
func (a *app) workflowLogs(ctx context.Context, wfr *v1alpha1.WorkflowRun, step string, tail *int64) error {
	order := stepOrder(wfr)
	var es []entry
	_, err := stepRunsOf(a.client, wfr.Namespace, wfr.Name, stepLabel(step)).List(ctx, func(o client.Object) error {
		if ownedBy(o, wfr.UID) {
			es = append(es, newEntry(o.(*v1alpha1.StepRun), order))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("listing the StepRuns of %s: %w", wfr.Name, err)
	}
	SortEntries(es)
	width, waiting := 0, 0
	var jobs []podlogs.Job
	for _, e := range es {
		act, why := podlogs.Decide(e.sr)
		switch act {
		case podlogs.Wait:
			waiting++
			continue
		case podlogs.None:
			jobs = append(jobs, func(_ context.Context, _, notes *podlogs.Writer) error {
				return notes.Line(e.prefix(), e.step, why)
			})
		default:
			jobs = append(jobs, func(ctx context.Context, out, notes *podlogs.Writer) error {
				return a.readLog(ctx, e.sr, podlogs.Options{TailLines: tail}, out, notes, e.prefix(), e.step)
			})
		}
		width = max(width, len(e.prefix()))
	}
	color := a.outMode().Color
	if err := podlogs.Ordered(ctx, jobs, orderedWindow, a.Out, a.ErrOut, color, width); err != nil {
		return err
	}
	switch {
	case len(es) == 0:
		a.notef("%s has no StepRuns yet (-f waits for them)", wfr.Name)
	case waiting > 0:
		a.notef("%d StepRuns of %s have not started yet (-f follows them as they do)", waiting, wfr.Name)
	}
	return nil
}

// followWorkflowLogs follows every StepRun's log as it is written, starting on each StepRun as
// soon as main has started, until the run has ended and every log with it.
func (a *app) followWorkflowLogs(ctx context.Context, wfr *v1alpha1.WorkflowRun, step string, tail *int64) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sigs, stop := a.interrupts()
	defer stop()
	order := stepOrder(wfr)
	out := podlogs.NewWriter(a.Out, a.outMode().Color)
	notes := podlogs.NewWriter(a.ErrOut, a.errMode().Color)
	var (
		wg      sync.WaitGroup
		slots   = make(chan struct{}, followStreams)
		started = map[string]bool{}
		errs    = make(chan error, 2)
		failed  = make(chan error, 1)
	)
	begin := func(sr *v1alpha1.StepRun) {
		if started[sr.Name] || !ownedBy(sr, wfr.UID) {
			return
		}
		act, why := podlogs.Decide(sr)
		if act == podlogs.Wait {
			return
		}
		started[sr.Name] = true
		e := newEntry(sr, order)
		out.Widen(e.prefix())
		notes.Widen(e.prefix())
		if act == podlogs.None {
			_ = notes.Line(e.prefix(), e.step, why)
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-slots }()
			if err := a.readLog(ctx, e.sr, podlogs.Options{Follow: true, TailLines: tail}, out, notes, e.prefix(), e.step); err != nil && ctx.Err() == nil {
				select {
				case failed <- err:
				default:
				}
			}
		}()
	}
	srs := follow(ctx, stepRunsOf(a.client, wfr.Namespace, wfr.Name, stepLabel(step)), errs)
	self := follow(ctx, byName(a.client, wfr), errs)
	for !wfr.Status.Phase.IsTerminal() {
		select {
		case ev := <-srs:
			if ev.Type != watch.Deleted {
				begin(ev.Object.(*v1alpha1.StepRun))
			}
		case ev := <-self:
			if ev.Object.GetUID() != wfr.UID || ev.Type == watch.Deleted {
				return fmt.Errorf("WorkflowRun %s was deleted while its logs were followed", wfr.Name)
			}
			wfr = ev.Object.(*v1alpha1.WorkflowRun)
		case err := <-errs:
			if err == nil {
				err = ctx.Err()
			}
			return fmt.Errorf("following %s: %w", wfr.Name, err)
		case err := <-failed:
			return err
		case <-sigs:
			return exitcode.Quiet(exitcode.Interrupted)
		}
	}
	// The run has ended: StepRuns the watch has not delivered yet are found by a fresh list.
	if _, err := stepRunsOf(a.client, wfr.Namespace, wfr.Name, stepLabel(step)).List(ctx, func(o client.Object) error {
		begin(o.(*v1alpha1.StepRun))
		return nil
	}); err != nil {
		return fmt.Errorf("listing the StepRuns of %s: %w", wfr.Name, err)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case err := <-failed:
		return err
	case <-sigs:
		return exitcode.Quiet(exitcode.Interrupted)
	}
}
