package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/cli/exitcode"
	"github.com/pnsflow/pnsflow/internal/cli/podlogs"
	"github.com/pnsflow/pnsflow/internal/cli/runspec"
	"github.com/pnsflow/pnsflow/internal/cli/runview"
	"github.com/pnsflow/pnsflow/internal/cli/term"
	"github.com/pnsflow/pnsflow/internal/cli/tree"
)

// logGrace bounds the wait for main's log stream after the run has ended: the kubelet closes a
// followed log when main exits, but a Pod deleted under the stream may leave it open.
const logGrace = 10 * time.Second

type runFlags struct {
	image, user          string
	env, outputs         []string
	stdin, rm, keepEntry bool
	timeout              time.Duration
}

func (a *app) runCommand() *cobra.Command {
	f := &runFlags{}
	cmd := &cobra.Command{
		Use:   "run NAME --image IMAGE [flags] [-- COMMAND [ARGS...]]",
		Short: "Run a container as a StepRun, print its log as it is written, exit with its exit code",
		Long: `Run a container to completion as a StepRun, like docker run: main's log is printed on
stdout as it is written, the output parameters on stderr at the end, and the process exits
with main's exit code. The run's own failures exit like docker run's: 125 (the StepRun ended
Error, or the plugin failed), 126 (main could not be started), 127 (its command does not
exist); 124 when --timeout passed. COMMAND replaces the image's entrypoint
(--keep-entrypoint passes it as arguments instead).

Ctrl-C asks whether to delete the run (--rm deletes it without asking, and also when it
ends); without a terminal to ask on, the run is left going.`,
		Example: `  kubectl pnsflow run hello --image busybox -- sh -c 'echo hi; exit 3'
  echo data | kubectl pnsflow run wc --image busybox -i --rm -- wc -c
  kubectl pnsflow run greet --image busybox --output greeting=/tmp/g -- sh -c 'echo -n hi > /tmp/g'`,
		Args: func(cmd *cobra.Command, args []string) error {
			if n := cmd.ArgsLenAtDash(); n == 0 || len(args) == 0 || (n < 0 && len(args) != 1) || n > 1 {
				return exitcode.New(exitcode.RunError, errors.New("want exactly one NAME, then -- COMMAND [ARGS...]"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var command []string
			if n := cmd.ArgsLenAtDash(); n >= 0 {
				command = args[n:]
			}
			err := a.run(cmd.Context(), f, args[0], command)
			var coded *exitcode.Error
			if err != nil && !errors.As(err, &coded) {
				// The plugin's own failures must not pass for main's exit code 1.
				err = exitcode.New(exitcode.RunError, err)
			}
			return err
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return exitcode.New(exitcode.RunError, err) })
	fl := cmd.Flags()
	fl.StringVar(&f.image, "image", "", "main's container image (required)")
	fl.StringArrayVarP(&f.env, "env", "e", nil, "K=V sets an environment variable in main; K alone passes your own value on (repeatable)")
	fl.StringArrayVar(&f.outputs, "output", nil, "PARAM=PATH collects the file PATH as output parameter PARAM, printed at the end (repeatable)")
	fl.BoolVarP(&f.stdin, "stdin", "i", false, fmt.Sprintf("send standard input to main (at most %d KiB)", v1alpha1.MaxStdinBytes/1024))
	fl.BoolVar(&f.rm, "rm", false, "delete the StepRun when it ends (or on Ctrl-C)")
	fl.DurationVar(&f.timeout, "timeout", 0, "end the run Failed/DeadlineExceeded after this long (activeDeadlineSeconds, enforced by the cluster)")
	// Not --user: kubectl's --user (the kubeconfig user) is a global flag.
	fl.StringVar(&f.user, "run-as", "", "UID[:GID] main runs as; with both, the executor needs no privilege")
	fl.BoolVar(&f.keepEntry, "keep-entrypoint", false, "pass COMMAND as arguments to the image's entrypoint instead of replacing it")
	return cmd
}

func (a *app) run(ctx context.Context, f *runFlags, name string, command []string) error {
	if err := a.connect(); err != nil {
		return err
	}
	defer a.disconnect()
	ns, _, err := a.namespace()
	if err != nil {
		return err
	}
	opts := runspec.Options{Name: name, Namespace: ns, Image: f.image, Env: f.env, Outputs: f.outputs, User: f.user,
		Timeout: f.timeout, Command: command, KeepEntrypoint: f.keepEntry, LookupEnv: a.LookupEnv}
	if _, err := runspec.Build(opts); err != nil { // every flag checked before stdin is read
		return err
	}
	if f.stdin {
		in, err := runspec.ReadStdin(a.In, v1alpha1.MaxStdinBytes)
		if err != nil {
			return err
		}
		opts.Stdin = &in
	}
	sr, err := runspec.Build(opts)
	if err != nil {
		return err
	}
	if err := a.client.Create(ctx, sr); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("a StepRun named %s already exists in %s: choose another name, or delete it (kubectl delete steprun %s -n %s)", name, ns, name, ns)
		}
		return fmt.Errorf("creating StepRun %s: %w", name, err)
	}
	final, err := a.followRun(ctx, sr, f.rm)
	if err != nil {
		return err
	}
	return a.report(ctx, final, f.rm)
}

// followRun watches sr until it ends, streaming main's log to stdout once main has started.
func (a *app) followRun(ctx context.Context, sr *v1alpha1.StepRun, rm bool) (*v1alpha1.StepRun, error) {
	sigs, stop := a.interrupts()
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 1)
	events := follow(ctx, byName(a.client, sr), errs)
	out := podlogs.NewWriter(a.Out, false)
	logCtx, stopLog := context.WithCancel(ctx)
	defer stopLog()
	var logDone chan error
	status := newStatusLine(a, sr.Name)

	for {
		select {
		case ev := <-events:
			if ev.Object.GetUID() != sr.UID {
				continue
			}
			if ev.Type == watch.Deleted {
				return nil, exitcode.New(exitcode.RunError, fmt.Errorf("StepRun %s was deleted before it ended", sr.Name))
			}
			sr = ev.Object.(*v1alpha1.StepRun)
			status.show(sr)
			if act, _ := podlogs.Decide(sr); act == podlogs.Read && logDone == nil && !sr.Status.Phase.IsTerminal() {
				logDone = make(chan error, 1)
				go func(pod string) { logDone <- a.streamLog(logCtx, sr, pod, out) }(podlogs.PodName(sr))
			}
		case err := <-errs:
			if err == nil {
				err = ctx.Err()
			}
			return nil, fmt.Errorf("watching StepRun %s: %w", sr.Name, err)
		case sig := <-sigs:
			stopLog()
			return nil, a.interrupted(sr, rm, sig)
		}
		if sr.Status.Phase.IsTerminal() {
			break
		}
	}
	if logDone == nil {
		// main ended before it was seen running: its whole log is there to read at once.
		return sr, a.printLog(ctx, sr, out)
	}
	select {
	case err := <-logDone:
		var notOpened *logNotOpened
		switch {
		case errors.As(err, &notOpened):
			// The stream could not be opened while main ran (its container not yet known to
			// the kubelet, say): now that the run has ended, the whole log can be read at once.
			return sr, a.printLog(ctx, sr, out)
		case err != nil:
			a.notef("warning: %v", err)
		}
	case <-time.After(logGrace):
		a.notef("warning: main's log did not end %s after the run did; it may be incomplete (kubectl pnsflow logs %s)", logGrace, sr.Name)
	}
	return sr, nil
}

// streamLog follows main's log from its start until main exits.
func (a *app) streamLog(ctx context.Context, sr *v1alpha1.StepRun, pod string, out *podlogs.Writer) error {
	rc, err := a.openLog(ctx, sr.Namespace, pod, podlogs.Options{Follow: true}, func(s string) { a.notef("%s", s) })
	if err != nil {
		return &logNotOpened{err}
	}
	defer rc.Close()
	return podlogs.Copy(rc, out, "", "")
}

// logNotOpened: following the log failed before a line was read.
type logNotOpened struct{ err error }

func (e *logNotOpened) Error() string { return e.err.Error() }
func (e *logNotOpened) Unwrap() error { return e.err }

// printLog prints a finished run's whole log (from the archive when the Pod is gone and the
// executor archived it), or says why there is none.
func (a *app) printLog(ctx context.Context, sr *v1alpha1.StepRun, out *podlogs.Writer) error {
	act, why := podlogs.Decide(sr)
	if act != podlogs.Read {
		a.notef("%s: no log: %s", sr.Name, why)
		return nil
	}
	return a.readLog(ctx, sr, podlogs.Options{}, out, podlogs.NewWriter(a.ErrOut, false), "", "")
}

// interrupted handles Ctrl-C: delete the run or leave it, and exit 130.
func (a *app) interrupted(sr *v1alpha1.StepRun, rm bool, sig os.Signal) error {
	action := DecideInterrupt(rm, sig, a.Confirm != nil || term.IsTerminal(a.ErrOut))
	if action == Ask {
		yes, err := a.confirm(fmt.Sprintf("\nDelete StepRun %s (its Pod stops)?", sr.Name))
		action = Leave
		if err == nil && yes {
			action = Delete
		}
	}
	if action == Delete {
		if err := a.deleteRun(context.Background(), sr); err != nil {
			return exitcode.New(exitcode.Interrupted, err)
		}
		a.notef("StepRun %s deleted", sr.Name)
	} else {
		a.notef("StepRun %s goes on; delete it with: kubectl delete steprun %s -n %s", sr.Name, sr.Name, sr.Namespace)
	}
	return exitcode.Quiet(exitcode.Interrupted)
}

func (a *app) deleteRun(ctx context.Context, sr *v1alpha1.StepRun) error {
	err := a.client.Delete(ctx, sr, client.PropagationPolicy("Background"))
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting StepRun %s: %w", sr.Name, err)
	}
	return nil
}

// report prints the outputs and the reason of a failure on stderr, deletes the run with --rm,
// and returns the exit code.
func (a *app) report(ctx context.Context, sr *v1alpha1.StepRun, rm bool) error {
	fmt.Fprint(a.ErrOut, OutputsText(runview.Outputs(sr.Status.Outputs)))
	code, why := exitcode.ForStepRun(sr.Status)
	if why != "" {
		a.notef("error: StepRun %s ended %s", sr.Name, why)
	}
	if rm {
		if err := a.deleteRun(ctx, sr); err != nil {
			a.notef("warning: %v", err)
		}
	}
	return exitcode.Quiet(code)
}

// OutputsText lists outputs as `name = value` lines; a value's later lines are indented.
func OutputsText(outputs []tree.Output) string {
	var b strings.Builder
	for _, o := range outputs {
		sep := " = "
		if o.Artifact {
			sep = " ⇒ "
		}
		b.WriteString(o.Name + sep + strings.ReplaceAll(strings.TrimSuffix(o.Value, "\n"), "\n", "\n    ") + "\n")
	}
	return b.String()
}

// statusLine tells a person at a terminal what the run is waiting for (stderr, dim); piped
// stderr gets nothing, so scripts see only the outcome.
type statusLine struct {
	a     *app
	name  string
	on    bool
	color bool
	last  string
}

func newStatusLine(a *app, name string) *statusLine {
	m := a.errMode()
	return &statusLine{a: a, name: name, on: m.Redraw, color: m.Color}
}

func (s *statusLine) show(sr *v1alpha1.StepRun) {
	phase := string(sr.Status.Phase)
	if !s.on || phase == s.last || sr.Status.Phase.IsTerminal() {
		return
	}
	s.last = phase
	text := fmt.Sprintf("%s: %s", s.name, phase)
	if phase == "" || phase == string(v1alpha1.StepRunPending) {
		text = fmt.Sprintf("%s: Pending (waiting for main to start)", s.name)
	}
	if s.color {
		text = "\x1b[2m" + text + "\x1b[0m"
	}
	fmt.Fprintln(s.a.ErrOut, text)
}
