package workflowrun

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	. "github.com/pnsflow/pnsflow/internal/testutil"
)

func TestTemplateResult(t *testing.T) {
	tests := []struct {
		name string
		in   *string
		want *string
	}{
		{name: "no result", in: nil, want: nil},
		{name: "one trailing newline is trimmed", in: new("4\n"), want: new("4")},
		{name: "only one of two is trimmed", in: new("4\n\n"), want: new("4\n")},
		{name: "no newline", in: new("4"), want: new("4")},
		{name: "empty", in: new(""), want: new("")},
		{name: "a lone newline", in: new("\n"), want: new("")},
		{name: "CRLF keeps the CR", in: new("4\r\n"), want: new("4\r")},
		{name: "trailing space is kept", in: new("4 "), want: new("4 ")},
		{name: "inner lines are kept", in: new("a\nb\n"), want: new("a\nb")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before string
			if tt.in != nil {
				before = *tt.in
			}
			got := templateResult(tt.in)
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
			if tt.in != nil && *tt.in != before {
				t.Errorf("templateResult changed its input to %q", *tt.in)
			}
		})
	}
}

// A result reaches templates and `when` with one trailing newline trimmed, like a parameter,
// in a fan-out's list too.
func TestEvaluateResultTemplating(t *testing.T) {
	withResult := func(k kid, r string) kid { k.result = &r; return k }
	wfr := newRun(MakeWorkflowRun("wf", "ns").Steps(
		MakeStep("a"),
		MakeStep("fan").Sequence(2),
		MakeStep("b").DependsOn("a", "fan").When(`steps.a.outputs.result == "4"`).
			Args("echo {{steps.a.outputs.result}}-x", "{{steps.fan.outputs.result}}"),
	))
	ev := eval(t, wfr, t0, withResult(ok("a", -1), "4\n"), withResult(ok("fan", 0), "x\n"), withResult(ok("fan", 1), "y\n\n"))
	if d := cmp.Diff([]string{"wf-b"}, started(wfr, ev)); d != "" {
		t.Fatalf("starts (-want +got):\n%s\nb: %s", d, ev.byName["b"].message)
	}
	if d := cmp.Diff([]string{"echo 4-x", `["x","y\n"]`}, ev.starts[0].spec.Args); d != "" {
		t.Errorf("args (-want +got):\n%s", d)
	}
}
