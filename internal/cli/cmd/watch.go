package cmd

import (
	"github.com/spf13/cobra"
)

func (a *app) watchCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "watch NAME",
		Short: "Follow a WorkflowRun (or StepRun) live until it ends; exit with its outcome",
		Long: `Follow a run live. On a terminal the tree is redrawn in place, at most 10 times a
second; piped, the tree is printed once, then one line per change, then once more at the
end. A fan-out is shown as counts, its failed items listed (at most 20 of them; the counts
say how many more). Exits 0 when the WorkflowRun Succeeded, 2 Failed, 3 Error,
4 Cancelled; a StepRun exits as run does. Ctrl-C stops watching, not the run.`,
		Example: `  kubectl pnsflow watch hello-dag
  kubectl pnsflow watch hello-dag | tee run.log`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			obj, err := a.lookup(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.watchRun(cmd.Context(), obj)
		},
	}
}
