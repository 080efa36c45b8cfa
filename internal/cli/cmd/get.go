package cmd

import (
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/cli/runview"
	"github.com/pnsflow/pnsflow/internal/cli/tree"
)

func (a *app) getCommand() *cobra.Command {
	print := genericclioptions.NewPrintFlags("")
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Show a StepRun or WorkflowRun once: its tree and outputs, or -o yaml|json",
		Long: `Show a run once. A WorkflowRun is drawn as its steps in DAG order, each with phase,
duration and exit code; a fan-out as counts with its failed items listed; single steps'
outputs below. A StepRun is drawn with its Pod and outputs. -o yaml, json, name, jsonpath=...
or go-template=... print the object as kubectl get does. NAME may be written sr/NAME or wfr/NAME.`,
		Example: `  kubectl pnsflow get hello-dag
  kubectl pnsflow get sr/hello -o yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			obj, err := a.lookup(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if *print.OutputFormat != "" {
				p, err := print.WithTypeSetter(a.scheme).ToPrinter()
				if err != nil {
					return err
				}
				return p.PrintObj(obj, a.Out)
			}
			m, err := a.model(cmd, obj)
			if err != nil {
				return err
			}
			mode := a.outMode()
			width := 0
			if mode.Redraw {
				width, _ = a.Size()
			}
			_, err = fmt.Fprint(a.Out, tree.Render(m, tree.Options{Width: width, Color: mode.Color}))
			return err
		},
	}
	print.AddFlags(cmd)
	return cmd
}

// model is obj as the tree shows it, with outputs: a WorkflowRun's StepRuns are listed once,
// page by page, and folded in.
func (a *app) model(cmd *cobra.Command, obj client.Object) (tree.Model, error) {
	switch o := obj.(type) {
	case *v1alpha1.StepRun:
		return runview.StepRun(o, a.Now()), nil
	case *v1alpha1.WorkflowRun:
		agg := runview.NewWorkflow(o.UID, true)
		_, err := stepRunsOf(a.client, o.Namespace, o.Name, nil).List(cmd.Context(), func(c client.Object) error {
			agg.Observe(c.(*v1alpha1.StepRun))
			return nil
		})
		if err != nil {
			return tree.Model{}, fmt.Errorf("listing the StepRuns of %s: %w", o.Name, err)
		}
		return agg.Model(o, a.Now()), nil
	}
	return tree.Model{}, fmt.Errorf("unexpected %T", obj)
}
