package template

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

func TestParse(t *testing.T) {
	cases := []struct {
		in      string
		want    Ref
		wantErr string
	}{
		{in: "workflow.parameters.x", want: Ref{Kind: WorkflowParameter, Name: "x"}},
		{in: " workflow.parameters.my-param ", want: Ref{Kind: WorkflowParameter, Name: "my-param"}},
		{in: "workflow.name", want: Ref{Kind: WorkflowName}},
		{in: "workflow.namespace", want: Ref{Kind: WorkflowNamespace}},
		{in: "workflow.phase", want: Ref{Kind: WorkflowPhase}},
		{in: "steps.a.outputs.parameters.p", want: Ref{Kind: StepOutputParameter, Step: "a", Name: "p"}},
		{in: "steps.a.outputs.result", want: Ref{Kind: StepOutputResult, Step: "a"}},
		{in: "steps.a.outputs.artifacts.tree", want: Ref{Kind: StepOutputArtifact, Step: "a", Name: "tree"}},
		{in: "steps.a.exitCode", want: Ref{Kind: StepExitCode, Step: "a"}},
		{in: "steps.a.phase", want: Ref{Kind: StepPhase, Step: "a"}},
		{in: "item", want: Ref{Kind: Item, Path: []string{}}},
		{in: "item.a.b", want: Ref{Kind: Item, Path: []string{"a", "b"}}},
		{in: "workflow.params.x", wantErr: "unknown reference {{workflow.params.x}}"},
		{in: "steps.a.outputs", wantErr: "unknown reference {{steps.a.outputs}}"},
		{in: "steps.a.outputs.parameters.p.q", wantErr: "unknown reference"},
		{in: "foo", wantErr: "unknown reference {{foo}}"},
		{in: "item..a", wantErr: "invalid reference {{item..a}}"},
		{in: "", wantErr: "invalid reference {{}}"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := Parse(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("want error %q, got %v", tc.wantErr, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.want.Text = strings.TrimSpace(tc.in)
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func scope() *Scope {
	code0, code3 := int32(0), int32(3)
	res := "hello\n"
	return &Scope{
		Workflow: Workflow{Name: "wf", Namespace: "ns", Parameters: map[string]string{"x": "42", "q": `a"b`}},
		Steps: map[string]*StepValues{
			"a": {Phase: "Succeeded", ExitCode: &code0, Parameters: map[string]string{"p": "v1"}, Result: &res,
				Artifacts: map[string]string{"tree": "ns/wf-a/tree"}},
			"skip": {Phase: "Skipped", Skipped: true},
			"fan": {Phase: "Succeeded", FanOut: true, Items: []StepValues{
				{ExitCode: &code0, Parameters: map[string]string{"p": "x"}, Result: &res, Artifacts: map[string]string{"o": "ns/fan-0/o"}},
				{ExitCode: &code3, Parameters: map[string]string{"p": "y"}, Result: &res, Artifacts: map[string]string{"o": "ns/fan-1/o"}},
			}},
		},
	}
}

func TestResolve(t *testing.T) {
	cases := []struct {
		name, in string
		item     string
		phase    string
		want     string
		wantErr  string
	}{
		{name: "no reference", in: "plain {text} {{ unclosed", want: "plain {text} {{ unclosed"},
		{name: "parameter", in: "x={{workflow.parameters.x}}!", want: "x=42!"},
		{name: "two references", in: "{{workflow.name}}/{{ workflow.namespace }}", want: "wf/ns"},
		{name: "output parameter", in: "{{steps.a.outputs.parameters.p}}", want: "v1"},
		{name: "result", in: "{{steps.a.outputs.result}}", want: "hello\n"},
		{name: "exit code", in: "{{steps.a.exitCode}}", want: "0"},
		{name: "phase", in: "{{steps.skip.phase}}", want: "Skipped"},
		{name: "fan-out parameters are a JSON list", in: "{{steps.fan.outputs.parameters.p}}", want: `["x","y"]`},
		{name: "fan-out exit codes", in: "{{steps.fan.exitCode}}", want: `[0,3]`},
		{name: "output artifact is its key", in: "{{steps.a.outputs.artifacts.tree}}", want: "ns/wf-a/tree"},
		{name: "fan-out artifacts are a JSON list of each item's own key", in: "{{steps.fan.outputs.artifacts.o}}", want: `["ns/fan-0/o","ns/fan-1/o"]`},
		{name: "unstored artifact", in: "{{steps.a.outputs.artifacts.zz}}", wantErr: `stored no output artifact "zz"`},
		{name: "string item", in: "{{item}}", item: `"abc"`, want: "abc"},
		{name: "number item", in: "n={{item}}", item: `7`, want: "n=7"},
		{name: "object item", in: "{{item}}", item: `{"a": 1, "b": "x"}`, want: `{"a":1,"b":"x"}`},
		{name: "item field", in: "{{item.b}}-{{item.a}}", item: `{"a": 1, "b": "x"}`, want: "x-1"},
		{name: "nested item field", in: "{{item.a.b}}", item: `{"a": {"b": [1,2]}}`, want: "[1,2]"},
		{name: "workflow phase in onExit", in: "{{workflow.phase}}", phase: "Failed", want: "Failed"},
		{name: "missing item field", in: "{{item.c}}", item: `{"a": 1}`, wantErr: `{{item.c}}: the item has no field "c"`},
		{name: "field of a string item", in: "{{item.c}}", item: `"s"`, wantErr: "not an object"},
		{name: "no item", in: "{{item}}", wantErr: "the step has no items"},
		{name: "skipped step's output", in: "{{steps.skip.outputs.result}}", wantErr: `step "skip" was skipped`},
		{name: "unreported output", in: "{{steps.a.outputs.parameters.zz}}", wantErr: `reported no output parameter "zz"`},
		{name: "unknown parameter", in: "{{workflow.parameters.nope}}", wantErr: `no parameter "nope"`},
		{name: "phase outside onExit", in: "{{workflow.phase}}", wantErr: "onExit only"},
		{name: "unknown reference", in: "{{nope}}", wantErr: "unknown reference {{nope}}"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := scope()
			if tc.item != "" {
				s.Item = json.RawMessage(tc.item)
			}
			s.Workflow.Phase = tc.phase
			got, err := Resolve(tc.in, s)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("want error %q, got %v", tc.wantErr, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestExecuteSubstitutesSafely(t *testing.T) {
	spec := &v1alpha1.StepRunSpec{
		Image:   "busybox:{{workflow.parameters.x}}",
		Command: []string{"sh", "-c"},
		Args:    []string{`echo "{{workflow.parameters.q}}" {{item.name}}`},
		Env:     []corev1.EnvVar{{Name: "N", Value: "{{item}}"}},
		// Keys are never substituted: only values are.
		NodeSelector:          map[string]string{"{{item.name}}": "{{item.name}}"},
		ActiveDeadlineSeconds: new(int64(30)),
	}
	tmpl, err := Compile(spec)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(tmpl.Refs()); got != 5 {
		t.Errorf("refs: got %d, want 5 (map keys are not templated)", got)
	}
	s := scope()
	s.Item = json.RawMessage(`{"name": "n\"},{\"injected"}`)
	got, err := tmpl.Execute(s)
	if err != nil {
		t.Fatal(err)
	}
	want := spec.DeepCopy()
	want.Image = "busybox:42"
	want.Args = []string{`echo "a"b" n"},{"injected`}
	want.Env[0].Value = `{"name":"n\"},{\"injected"}`
	want.NodeSelector = map[string]string{"{{item.name}}": `n"},{"injected`}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if spec.Image != "busybox:{{workflow.parameters.x}}" {
		t.Error("Execute changed the template")
	}
}

func TestExecuteWithoutReferencesCopies(t *testing.T) {
	spec := &v1alpha1.StepRunSpec{Image: "busybox", Args: []string{"a"}}
	tmpl, err := Compile(spec)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tmpl.Execute(&Scope{})
	if err != nil {
		t.Fatal(err)
	}
	got.Args[0] = "changed"
	if spec.Args[0] != "a" {
		t.Error("Execute shares memory with the template")
	}
}

func TestExecuteErrors(t *testing.T) {
	if _, err := Compile(&v1alpha1.StepRunSpec{Image: "{{bogus.ref}}"}); err == nil ||
		err.Error() != "unknown reference {{bogus.ref}}" {
		t.Errorf("compile: got %v", err)
	}
	tmpl, err := Compile(&v1alpha1.StepRunSpec{Image: "x", Args: []string{"{{item.missing}}"}})
	if err != nil {
		t.Fatal(err)
	}
	s := scope()
	s.Item = json.RawMessage(`{}`)
	if _, err := tmpl.Execute(s); !errors.Is(err, ErrUnresolved) {
		t.Errorf("execute: want ErrUnresolved, got %v", err)
	}
}

func TestCheck(t *testing.T) {
	base := Context{
		Parameters: map[string]bool{"x": true},
		Steps:      map[string]bool{"a": true, "b": true, "c": true},
		Visible:    map[string]map[string]bool{"a": {"p": true}},
		Artifacts:  map[string]map[string]bool{"a": {"tree": true}, "b": {"tree": true}},
	}
	cases := []struct {
		name    string
		ref     string
		mutate  func(*Context)
		wantErr string
	}{
		{name: "known parameter", ref: "workflow.parameters.x"},
		{name: "unknown parameter", ref: "workflow.parameters.y", wantErr: `{{workflow.parameters.y}}: the run has no argument "y"`},
		{name: "visible output", ref: "steps.a.outputs.parameters.p"},
		{name: "undeclared output", ref: "steps.a.outputs.parameters.q", wantErr: `step "a" declares no output parameter "q"`},
		{name: "result of a dependency", ref: "steps.a.outputs.result"},
		{name: "declared artifact of a dependency", ref: "steps.a.outputs.artifacts.tree"},
		{name: "undeclared artifact", ref: "steps.a.outputs.artifacts.p", wantErr: `step "a" declares no output artifact "p"`},
		{name: "artifact of a step that is not a dependency", ref: "steps.b.outputs.artifacts.tree", wantErr: `step "b" is not a dependency of this step`},
		{name: "not a dependency", ref: "steps.b.exitCode", wantErr: `step "b" is not a dependency of this step`},
		{name: "no such step", ref: "steps.zz.phase", wantErr: `there is no step "zz"`},
		{name: "item without fan-out", ref: "item", wantErr: "has no withItems, withParam or withSequence"},
		{name: "item in a fan-out", ref: "item.a", mutate: func(c *Context) { c.FanOut = true }},
		{name: "phase outside onExit", ref: "workflow.phase", wantErr: "onExit only"},
		{name: "phase in onExit", ref: "workflow.phase", mutate: func(c *Context) { c.Exit = true }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			if tc.mutate != nil {
				tc.mutate(&c)
			}
			r, err := Parse(tc.ref)
			if err != nil {
				t.Fatal(err)
			}
			err = c.Check(r)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("got %v, want %q", err, tc.wantErr)
			}
		})
	}
}
