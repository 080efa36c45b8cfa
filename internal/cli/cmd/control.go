package cmd

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

// Control is a change to a WorkflowRun's spec.cancel or spec.suspend.
type Control struct {
	Verb  string // cancel, suspend, resume
	Field string // the spec field
	Value bool
	Done  string // what the user is told
}

var (
	cancelRun = Control{"cancel", "cancel", true,
		"cancel requested: the Pods of its unfinished StepRuns are deleted, nothing else starts, onExit does not run"}
	suspendRun = Control{"suspend", "suspend", true, "suspended: nothing new starts; running StepRuns go on"}
	resumeRun  = Control{"resume", "suspend", false, "resumed"}
)

// DecideControl says whether c must be sent to a run in this state, or why not: an error for
// what cannot be done, a note (and nothing sent) for what is already so.
func DecideControl(c Control, wfr *v1alpha1.WorkflowRun) (send bool, note string, err error) {
	phase := wfr.Status.Phase
	switch {
	case c.Verb == "cancel" && wfr.Spec.Cancel:
		return false, "already cancelled", nil
	case c.Verb != "cancel" && wfr.Spec.Cancel:
		return false, "", fmt.Errorf("%s is cancelled: it cannot be %sd", wfr.Name, c.Verb)
	case phase.IsTerminal():
		return false, "", fmt.Errorf("%s already ended %s: there is nothing to %s (resubmit runs it again)", wfr.Name, phase, c.Verb)
	case c.Verb == "suspend" && wfr.Spec.Suspend:
		return false, "already suspended", nil
	case c.Verb == "resume" && !wfr.Spec.Suspend:
		return false, "not suspended", nil
	}
	return true, "", nil
}

func (a *app) controlCommand(c Control, short string) *cobra.Command {
	return &cobra.Command{
		Use:   c.Verb + " NAME...",
		Short: short,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.connect(); err != nil {
				return err
			}
			ns, _, err := a.namespace()
			if err != nil {
				return err
			}
			if len(args) == 1 {
				return a.control(cmd.Context(), ns, args[0], c)
			}
			failed := 0
			for _, name := range args {
				if err := a.control(cmd.Context(), ns, name, c); err != nil {
					a.notef("error: %v", err)
					failed++
				}
			}
			if failed > 0 {
				return fmt.Errorf("%s failed for %d of %d runs", c.Verb, failed, len(args))
			}
			return nil
		},
	}
}

func (a *app) control(ctx context.Context, ns, name string, c Control) error {
	obj, err := a.resolve(ctx, ns, name, kindWorkflowRun)
	if err != nil {
		if _, isSR := a.stepRunNamed(ctx, ns, name); isSR {
			return fmt.Errorf("%s is a StepRun, which has no %s: delete it to stop it (kubectl delete steprun %s)", name, c.Verb, name)
		}
		return err
	}
	wfr := obj.(*v1alpha1.WorkflowRun)
	send, note, err := DecideControl(c, wfr)
	if err != nil {
		return err
	}
	if send {
		// A merge patch of the one field: no read-modify-write race with the controller.
		patch := fmt.Appendf(nil, `{"spec":{%q:%t}}`, c.Field, c.Value)
		if err := a.client.Patch(ctx, wfr, client.RawPatch(types.MergePatchType, patch)); err != nil {
			return fmt.Errorf("%s %s: %w", c.Verb, name, err)
		}
		note = c.Done
	}
	fmt.Fprintf(a.Out, "workflowrun.workflows.pnsflow.dev/%s %s\n", wfr.Name, note)
	return nil
}

func (a *app) stepRunNamed(ctx context.Context, ns, arg string) (*v1alpha1.StepRun, bool) {
	_, name, err := ParseTarget(arg)
	if err != nil {
		return nil, false
	}
	sr := &v1alpha1.StepRun{}
	return sr, a.client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, sr) == nil
}

func (a *app) cancelCommand() *cobra.Command {
	return a.controlCommand(cancelRun, "Cancel WorkflowRuns: delete their running Pods, start nothing more (spec.cancel)")
}

func (a *app) suspendCommand() *cobra.Command {
	return a.controlCommand(suspendRun, "Suspend WorkflowRuns: start nothing new until resumed (spec.suspend)")
}

func (a *app) resumeCommand() *cobra.Command {
	return a.controlCommand(resumeRun, "Resume suspended WorkflowRuns (spec.suspend=false)")
}
