package when

import (
	"errors"
	"slices"
	"testing"

	"github.com/pnsflow/pnsflow/internal/workflow/template"
)

// fuzzScope is the fixed environment every compiled expression is evaluated against: each kind
// of step (finished, skipped, fan-out) and a run in onExit.
func fuzzScope() *template.Scope {
	zero, two := int32(0), int32(2)
	res := "ok"
	return &template.Scope{
		Workflow: template.Workflow{Name: "wf", Namespace: "ns", Phase: "Failed",
			Parameters: map[string]string{"env": "prod", "n": "3", "flag": "true"}},
		Steps: map[string]*template.StepValues{
			"a":    {Phase: "Succeeded", ExitCode: &zero, Parameters: map[string]string{"n": "3"}, Result: &res},
			"skip": {Phase: "Skipped", Skipped: true},
			"fan": {Phase: "Failed", FanOut: true, Items: []template.StepValues{
				{ExitCode: &zero, Parameters: map[string]string{"p": "x"}, Result: &res},
				{ExitCode: &two, Parameters: map[string]string{"p": "y"}},
			}},
		},
	}
}

// FuzzCompile: compiling any string never panics; a compiled expression reports its steps sorted
// and once each, and evaluates against a fixed environment without panicking, to a bool or an
// ErrEvaluation.
func FuzzCompile(f *testing.F) {
	for _, seed := range []string{
		`workflow.parameters.env == "prod"`,
		`steps.a.phase == "Succeeded" && steps['b-c'].exitCode == 0`,
		`steps.fan.exitCodes.exists(c, c == 2) && "y" in steps.fan.outputs.parameters.p`,
		`int(steps.a.outputs.parameters.n) > 2 || workflow.phase != "Succeeded"`,
		`has(steps.skip.outputs)`,
		`workflow.parameters.flag`,
		`workflow.parameters.env.lowerAscii().split("o").size() == 2`,
		`[1,2,3].all(a, [1,2,3].all(b, a+b > 0))`,
		`steps.a.outputs.result.matches("^o+k$")`,
		`1 / 0 == 1`,
		`steps.a.phase ==`,
		`(((((((((((((((((((true)))))))))))))))))))`,
		"\x00\"\\u",
	} {
		f.Add(seed)
	}
	scope := fuzzScope()
	f.Fuzz(func(t *testing.T, expr string) {
		e, err := Compile(expr)
		if err != nil {
			return
		}
		if e.String() != expr {
			t.Fatalf("String() = %q", e.String())
		}
		steps := e.Steps()
		if !slices.IsSorted(steps) || len(slices.Compact(slices.Clone(steps))) != len(steps) {
			t.Fatalf("Steps() = %q: not sorted, or repeated", steps)
		}
		if _, err := e.Eval(scope); err != nil && !errors.Is(err, ErrEvaluation) {
			t.Fatalf("Eval(%q): an error that is not ErrEvaluation: %v", expr, err)
		}
	})
}
