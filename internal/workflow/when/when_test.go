package when

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pnsflow/pnsflow/internal/workflow/template"
)

func TestCompile(t *testing.T) {
	cases := []struct {
		name, expr string
		wantSteps  []string
		wantPhase  bool
		wantErr    string
	}{
		{name: "parameter", expr: `workflow.parameters.env == "prod"`},
		{name: "steps by select and index", expr: `steps.a.phase == "Succeeded" && steps['b-c'].exitCode == 0 && steps.a.outputs.result != ""`,
			wantSteps: []string{"a", "b-c"}},
		{name: "workflow phase", expr: `workflow.phase != "Succeeded"`, wantPhase: true},
		{name: "string extension", expr: `workflow.parameters.x.lowerAscii() == "y"`},
		{name: "dyn result is checked at evaluation", expr: `workflow.parameters.flag`},
		{name: "syntax error", expr: `steps.a.phase ==`, wantErr: "invalid when"},
		{name: "item is not available", expr: `item == "a"`, wantErr: "undeclared reference to 'item'"},
		{name: "not a bool", expr: `1 + 2`, wantErr: "yields int, not bool"},
		{name: "unknown function", expr: `nope(workflow)`, wantErr: "undeclared reference to 'nope'"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Compile(tc.expr)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("want error %q, got %v", tc.wantErr, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.wantSteps, e.Steps()); d != "" {
				t.Errorf("steps (-want +got):\n%s", d)
			}
			if e.UsesWorkflowPhase() != tc.wantPhase {
				t.Errorf("UsesWorkflowPhase: got %v", e.UsesWorkflowPhase())
			}
		})
	}
}

func TestEval(t *testing.T) {
	zero, two := int32(0), int32(2)
	res := "ok"
	scope := &template.Scope{
		Workflow: template.Workflow{Name: "wf", Parameters: map[string]string{"env": "prod", "flag": "yes"}},
		Steps: map[string]*template.StepValues{
			"a": {Phase: "Succeeded", ExitCode: &zero, Parameters: map[string]string{"n": "3"}, Result: &res,
				Artifacts: map[string]string{"report": "ns/wf-a/report"}},
			"skip": {Phase: "Skipped", Skipped: true},
			"fan": {Phase: "Succeeded", FanOut: true, Items: []template.StepValues{
				{ExitCode: &zero, Parameters: map[string]string{"p": "x"}, Artifacts: map[string]string{"o": "ns/fan-0/o"}},
				{ExitCode: &two, Parameters: map[string]string{"p": "y"}},
			}},
		},
	}
	cases := []struct {
		name, expr string
		phase      string
		want       bool
		wantErr    string
	}{
		{name: "parameter equality", expr: `workflow.parameters.env == "prod"`, want: true},
		{name: "exit code", expr: `steps.a.exitCode == 0`, want: true},
		{name: "output parameter as int", expr: `int(steps.a.outputs.parameters.n) > 2`, want: true},
		{name: "result", expr: `steps.a.outputs.result == "ok"`, want: true},
		{name: "skipped phase", expr: `steps.skip.phase == "Skipped"`, want: true},
		{name: "fan-out lists", expr: `steps.fan.exitCodes.exists(c, c == 2) && "y" in steps.fan.outputs.parameters.p`, want: true},
		{name: "has on an absent output", expr: `has(steps.skip.outputs)`, want: false},
		{name: "a stored artifact is seen by its key", expr: `steps.a.outputs.artifacts.report.endsWith("/report")`, want: true},
		{name: "an artifact not stored is absent", expr: `has(steps.a.outputs.artifacts.other)`, want: false},
		{name: "fan-out artifacts list the items that stored one", expr: `size(steps.fan.outputs.artifacts.o) == 1`, want: true},
		{name: "workflow phase in onExit", expr: `workflow.phase == "Failed"`, phase: "Failed", want: true},
		{name: "missing key", expr: `steps.skip.outputs.result == ""`, wantErr: "no such key"},
		{name: "dyn non-bool", expr: `workflow.parameters.flag`, wantErr: "not a bool"},
		{name: "cost limit", expr: `[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, [1,2,3,4,5,6,7,8,9,10].all(d, [1,2,3,4,5,6,7,8,9,10].all(e, [1,2,3,4,5,6,7,8,9,10].all(f, a+b+c+d+e+f > 0))))))`,
			wantErr: "cost limit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Compile(tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			s := *scope
			s.Workflow.Phase = tc.phase
			got, err := e.Eval(&s)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrEvaluation) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("want evaluation error %q, got %v", tc.wantErr, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
