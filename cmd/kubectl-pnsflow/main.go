// Command kubectl-pnsflow is the pnsflow kubectl plugin: on PATH, `kubectl pnsflow` runs it.
// See docs/cli.md.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/pnsflow/pnsflow/internal/cli/cmd"
	"github.com/pnsflow/pnsflow/internal/cli/exitcode"
)

func main() {
	err := cmd.NewCommand(cmd.Options{}).ExecuteContext(context.Background())
	if err != nil && !exitcode.IsSilent(err) {
		fmt.Fprintln(os.Stderr, "error:", err)
	}
	os.Exit(exitcode.Of(err))
}
