package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/cli/manifest"
)

func (a *app) submitCommand() *cobra.Command {
	var (
		file   string
		params []string
		watch  bool
	)
	cmd := &cobra.Command{
		Use:   "submit -f FILE [-p NAME=VALUE]... [--watch]",
		Short: "Create a WorkflowRun (or StepRun) from a file, optionally watching it to the end",
		Long: `Create the one WorkflowRun or StepRun in FILE ("-" reads standard input). The file is
decoded strictly: a misspelt field is an error. metadata.generateName works. -p sets a
declared argument (spec.arguments.parameters); an undeclared name is an error. With --watch
the run is followed as by watch, and the exit code is its outcome.`,
		Example: `  kubectl pnsflow submit -f config/samples/workflows_v1alpha1_workflowrun.yaml --watch
  kubectl pnsflow submit -f etl.yaml -p day=2026-11-28`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			obj, err := a.readRun(file, params)
			if err != nil {
				return err
			}
			return a.create(cmd.Context(), obj, watch, "")
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", `the run to create ("-" for standard input)`)
	cmd.Flags().StringArrayVarP(&params, "parameter", "p", nil, "NAME=VALUE sets a declared argument (repeatable)")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "follow the run until it ends and exit with its outcome")
	_ = cmd.MarkFlagRequired("filename")
	return cmd
}

// readRun decodes the file and applies -p.
func (a *app) readRun(file string, params []string) (client.Object, error) {
	var r io.Reader = a.In
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("reading the run: %w", err)
		}
		defer f.Close()
		r = f
	}
	obj, err := manifest.Decode(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	ps, err := manifest.ParseParams(params)
	if err != nil {
		return nil, err
	}
	switch o := obj.(type) {
	case *v1alpha1.WorkflowRun:
		err = manifest.ApplyParams(o, ps)
	case *v1alpha1.StepRun:
		if len(ps) > 0 {
			err = errors.New("-p sets a WorkflowRun's arguments; a StepRun has none")
		}
	}
	return obj, err
}

// create creates obj in the command line's namespace, says so as kubectl does, and watches it
// with --watch. from names the run a resubmitted one copies.
func (a *app) create(ctx context.Context, obj client.Object, watch bool, from string) error {
	if err := a.connect(); err != nil {
		return err
	}
	ns, explicit, err := a.namespace()
	if err != nil {
		return err
	}
	if err := manifest.SetNamespace(obj, ns, explicit); err != nil {
		return err
	}
	if err := a.client.Create(ctx, obj); err != nil {
		return fmt.Errorf("creating %s %s: %w", kindOf(obj), displayName(obj), err)
	}
	line := fmt.Sprintf("%s.workflows.pnsflow.dev/%s created", strings.ToLower(kindOf(obj)), obj.GetName())
	if from != "" {
		line += " (from " + from + ")"
	}
	fmt.Fprintln(a.Out, line)
	if !watch {
		return nil
	}
	return a.watchRun(ctx, obj)
}

func displayName(obj client.Object) string {
	if obj.GetName() != "" {
		return obj.GetName()
	}
	return obj.GetGenerateName() + "…"
}

func (a *app) resubmitCommand() *cobra.Command {
	var (
		params []string
		watch  bool
	)
	cmd := &cobra.Command{
		Use:   "resubmit NAME [-p NAME=VALUE]... [--watch]",
		Short: "Create a new run from the same definition and arguments as NAME",
		Long: `Create a new WorkflowRun (or StepRun) with NAME's spec and arguments, neither cancelled
nor suspended, named by generateName (NAME's own, else "NAME-"), annotated
workflows.pnsflow.dev/resubmitted-from=NAME. -p changes an argument of the copy.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			old, err := a.lookup(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			ps, err := manifest.ParseParams(params)
			if err != nil {
				return err
			}
			var obj client.Object
			switch o := old.(type) {
			case *v1alpha1.WorkflowRun:
				wfr := manifest.Resubmit(o)
				if err := manifest.ApplyParams(wfr, ps); err != nil {
					return err
				}
				obj = wfr
			case *v1alpha1.StepRun:
				if len(ps) > 0 {
					return errors.New("-p sets a WorkflowRun's arguments; a StepRun has none")
				}
				obj = manifest.ResubmitStepRun(o)
			}
			return a.create(cmd.Context(), obj, watch, old.GetName())
		},
	}
	cmd.Flags().StringArrayVarP(&params, "parameter", "p", nil, "NAME=VALUE changes a declared argument of the copy (repeatable)")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "follow the new run until it ends and exit with its outcome")
	return cmd
}
