package workflowrun

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	. "github.com/pnsflow/pnsflow/internal/testutil"
)

func TestCompileRejects(t *testing.T) {
	cases := []struct {
		name string
		run  *WorkflowRunWrapper
		want []string
	}{
		{name: "cycle", run: MakeWorkflowRun("wf", "ns").Steps(MakeStep("a").DependsOn("c"), MakeStep("b").DependsOn("a"), MakeStep("c").DependsOn("b")),
			want: []string{"dependency cycle: a → c → b → a"}},
		{name: "unknown dependency", run: MakeWorkflowRun("wf", "ns").Steps(MakeStep("a").DependsOn("zz")),
			want: []string{`step "a" depends on "zz", which is not a step`}},
		{name: "unknown reference", run: MakeWorkflowRun("wf", "ns").Steps(MakeStep("a").Args("{{workflow.params.x}}")),
			want: []string{`step "a": unknown reference {{workflow.params.x}}`}},
		{name: "missing argument", run: MakeWorkflowRun("wf", "ns").Steps(MakeStep("a").Args("{{workflow.parameters.x}}")),
			want: []string{`step "a": {{workflow.parameters.x}}: the run has no argument "x"`}},
		{name: "output of a step that is not a dependency", run: MakeWorkflowRun("wf", "ns").Steps(
			MakeStep("a").Output("p", "/tmp/p"), MakeStep("b").Args("{{steps.a.outputs.parameters.p}}")),
			want: []string{`step "b": {{steps.a.outputs.parameters.p}}: step "a" is not a dependency of this step (add it to dependsOn)`}},
		{name: "undeclared output", run: MakeWorkflowRun("wf", "ns").Steps(
			MakeStep("a"), MakeStep("b").DependsOn("a").Args("{{steps.a.outputs.parameters.p}}")),
			want: []string{`step "b": {{steps.a.outputs.parameters.p}}: step "a" declares no output parameter "p"`}},
		{name: "item without fan-out", run: MakeWorkflowRun("wf", "ns").Steps(MakeStep("a").Args("{{item}}")),
			want: []string{`step "a": {{item}}: the step has no withItems, withParam or withSequence`}},
		{name: "bad CEL", run: MakeWorkflowRun("wf", "ns").Steps(MakeStep("a").When("workflow.parameters.x ==")),
			want: []string{`step "a": invalid when "workflow.parameters.x ==": ERROR: <input>:1:25: Syntax error: mismatched input '<EOF>'`}},
		{name: "when reads a step that is not a dependency", run: MakeWorkflowRun("wf", "ns").Steps(
			MakeStep("a"), MakeStep("b").When(`steps.a.phase == "Succeeded"`)),
			want: []string{`step "b": when reads step "a", which is not a dependency of this step (add it to dependsOn)`}},
		{name: "when reads a missing step", run: MakeWorkflowRun("wf", "ns").Steps(MakeStep("b").When(`steps.zz.exitCode == 0`)),
			want: []string{`step "b": when reads step "zz", which does not exist`}},
		{name: "workflow.phase outside onExit", run: MakeWorkflowRun("wf", "ns").Steps(MakeStep("a").Args("{{workflow.phase}}").When(`workflow.phase == "x"`)),
			want: []string{`step "a": {{workflow.phase}}: the run's phase is available in onExit only`,
				`step "a": when reads workflow.phase, which is available in onExit only`}},
		{name: "withItems with withSequence", run: MakeWorkflowRun("wf", "ns").Steps(MakeStep("a").Items("x").Sequence(2)),
			want: []string{`step "a": withItems, withParam and withSequence are mutually exclusive`}},
		{name: "withParam is not one reference", run: MakeWorkflowRun("wf", "ns").Param("l", "[]").Steps(MakeStep("a").Param("x{{workflow.parameters.l}}")),
			want: []string{`step "a": withParam: must be exactly one reference`}},
		{name: "withParam cannot hold a list", run: MakeWorkflowRun("wf", "ns").Steps(MakeStep("a"), MakeStep("b").DependsOn("a").Param("{{steps.a.exitCode}}")),
			want: []string{`step "b": withParam: {{steps.a.exitCode}} cannot hold a list`}},
		{name: "names that clash", run: MakeWorkflowRun("wf", "ns").Steps(MakeStep("a").Sequence(3), MakeStep("a-1")),
			want: []string{`steps "a" and "a-1" could give their StepRuns the same name: rename one`}},
		{name: "onExit named like a step", run: MakeWorkflowRun("wf", "ns").Steps(MakeStep("a")).OnExit(MakeStep("a")),
			want: []string{`onExit's name "a" is also a step's`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(tc.run.Obj())
			var invalid *InvalidError
			if !errors.As(err, &invalid) {
				t.Fatalf("want an *InvalidError, got %v", err)
			}
			if len(invalid.Problems) != len(tc.want) {
				t.Fatalf("problems: got %q, want %q", invalid.Problems, tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(invalid.Problems[i], w) {
					t.Errorf("problem %d: got %q, want prefix %q", i, invalid.Problems[i], w)
				}
			}
		})
	}
}

func TestCompileAccepts(t *testing.T) {
	wfr := MakeWorkflowRun("wf", "ns").Param("n", "3").Param("list", `["a","b"]`).Steps(
		MakeStep("d").DependsOn("b", "c").Args("{{steps.b.outputs.parameters.p}}", "{{steps.a.outputs.result}}").
			When(`steps.a.exitCode == 0 && steps['c'].phase == "Succeeded"`),
		MakeStep("a").Output("p", "/tmp/p").Args("{{workflow.parameters.n}}", "{{workflow.name}}"),
		MakeStep("b").DependsOn("a").Output("p", "/tmp/p").Args("{{steps.a.outputs.parameters.p}}"),
		MakeStep("c").DependsOn("a").Param("{{ workflow.parameters.list }}").Args("{{item}}"),
	).OnExit(MakeStep("exit").Args("{{workflow.phase}}", "{{steps.d.exitCode}}").When(`workflow.phase != "Succeeded"`)).Obj()
	plan, err := Compile(wfr)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, sp := range plan.Order {
		order = append(order, sp.Name)
	}
	if d := cmp.Diff([]string{"a", "b", "c", "d"}, order); d != "" {
		t.Errorf("order (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"a", "b", "c"}, plan.Step("d").Visible); d != "" {
		t.Errorf("visible (-want +got):\n%s", d)
	}
	if !plan.Step("c").FanOut || plan.Step("c").WithParam == nil || plan.Exit == nil || !plan.Exit.Exit {
		t.Error("plan misses fan-out or exit")
	}
	if d := cmp.Diff([]string{"a", "b", "c", "d"}, plan.Exit.Visible); d != "" {
		t.Errorf("onExit sees every step (-want +got):\n%s", d)
	}
}
