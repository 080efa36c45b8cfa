// Command failures prints the failed specs of Ginkgo JSON reports, briefly: CI shows only the end
// of its output, where Ginkgo's own summary names a failed spec but not why it failed.
//
//	go run ./hack/failures REPORT.json...
//
// A report that does not exist is skipped (its suite did not run). Exit status 0 unless a
// report cannot be read.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/onsi/ginkgo/v2/types"
)

// maxLines bounds each failure's message: the first lines say what was expected; the rest (a
// dumped object) is in the full log.
const maxLines = 12

func main() {
	failed := false
	for _, path := range os.Args[1:] {
		if err := digest(os.Stdout, path); err != nil {
			fmt.Fprintf(os.Stderr, "failures: %v\n", err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

// digest prints the failed specs of the report at path.
func digest(w io.Writer, path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	var reports []types.Report
	if err := json.Unmarshal(b, &reports); err != nil {
		return fmt.Errorf("decoding %s: %w", path, err)
	}
	for _, r := range reports {
		writeFailures(w, r)
	}
	return nil
}

// writeFailures prints each failed spec of r: its name, where it failed and the message's first
// lines.
func writeFailures(w io.Writer, r types.Report) {
	for _, s := range r.SpecReports {
		if !s.State.Is(types.SpecStateFailureStates) {
			continue
		}
		name := strings.TrimSpace(s.FullText())
		if name == "" {
			name = s.LeafNodeType.String()
		}
		fmt.Fprintf(w, "--- %s: %s [%s]\n", r.SuiteDescription, name, s.State)
		f := s.Failure
		where := f.Location.String()
		if f.FailureNodeType != types.NodeTypeInvalid {
			where += " (in " + f.FailureNodeType.String() + ")"
		}
		fmt.Fprintf(w, "    at %s\n", where)
		fmt.Fprintln(w, indent(firstLines(f.Message, maxLines), "    "))
	}
}

// firstLines returns at most n lines of s, saying how many were left out.
func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) <= n {
		return strings.Join(lines, "\n")
	}
	return strings.Join(lines[:n], "\n") + fmt.Sprintf("\n… %d more lines in the full log", len(lines)-n)
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}
