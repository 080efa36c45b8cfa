// Package when owns the `when` conditions of WorkflowRun steps: CEL expressions (cel-go, the CEL
// the API server uses) compiled once when a run is validated and evaluated once a step's
// dependencies have finished. It never evaluates anything itself.
package when

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"

	"github.com/pnsflow/pnsflow/internal/workflow/template"
)

// costLimit bounds one evaluation, as the API server bounds its validation rules: a `when`
// is a small decision, and one expression must never stall a reconcile.
const costLimit = 1_000_000

var env = mustEnv()

func mustEnv() *cel.Env {
	e, err := cel.NewEnv(
		cel.Variable("workflow", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("steps", cel.MapType(cel.StringType, cel.DynType)),
		ext.Strings(),
	)
	if err != nil {
		panic(fmt.Sprintf("building the CEL environment: %v", err)) // static options: cannot fail
	}
	return e
}

// Expression is a compiled `when`.
type Expression struct {
	source string
	prog   cel.Program
	steps  []string
	phase  bool
}

// Compile type-checks expr. It must yield a bool and may use the variables `workflow` and
// `steps` only (item is not available: `when` decides for a whole step).
func Compile(expr string) (*Expression, error) {
	checked, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		return nil, fmt.Errorf("invalid when %q: %s", expr, oneLine(iss.Err().Error()))
	}
	if t := checked.OutputType(); !t.IsExactType(types.BoolType) && !t.IsExactType(types.DynType) {
		return nil, fmt.Errorf("invalid when %q: it yields %s, not bool", expr, t)
	}
	prog, err := env.Program(checked, cel.CostLimit(costLimit), cel.InterruptCheckFrequency(100))
	if err != nil {
		return nil, fmt.Errorf("invalid when %q: %w", expr, err)
	}
	e := &Expression{source: expr, prog: prog}
	seen := map[string]bool{}
	ast.PreOrderVisit(checked.NativeRep().Expr(), ast.NewExprVisitor(func(x ast.Expr) {
		if name, ok := member(x, "steps"); ok && !seen[name] {
			seen[name] = true
			e.steps = append(e.steps, name)
		}
		if name, ok := member(x, "workflow"); ok && name == "phase" {
			e.phase = true
		}
	}))
	sort.Strings(e.steps)
	return e, nil
}

// oneLine drops the source excerpt lines (" | ...") CEL adds under each issue: status
// messages are read on one line.
func oneLine(msg string) string {
	var keep []string
	for _, l := range strings.Split(msg, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "|") {
			keep = append(keep, strings.TrimSpace(l))
		}
	}
	return strings.Join(keep, "; ")
}

// member recognises `v.name` and `v['name']` on the variable v.
func member(x ast.Expr, v string) (string, bool) {
	switch x.Kind() {
	case ast.SelectKind:
		s := x.AsSelect()
		if s.Operand().Kind() == ast.IdentKind && s.Operand().AsIdent() == v {
			return s.FieldName(), true
		}
	case ast.CallKind:
		c := x.AsCall()
		if c.FunctionName() != operators.Index || len(c.Args()) != 2 {
			return "", false
		}
		op, key := c.Args()[0], c.Args()[1]
		if op.Kind() == ast.IdentKind && op.AsIdent() == v && key.Kind() == ast.LiteralKind {
			if s, ok := key.AsLiteral().(types.String); ok {
				return string(s), true
			}
		}
	}
	return "", false
}

// Steps are the step names the expression reads, sorted.
func (e *Expression) Steps() []string { return e.steps }

// UsesWorkflowPhase reports whether the expression reads workflow.phase.
func (e *Expression) UsesWorkflowPhase() bool { return e.phase }

func (e *Expression) String() string { return e.source }

// ErrEvaluation marks an expression that compiled but could not be evaluated (a missing key,
// the cost limit, a non-bool result).
var ErrEvaluation = errors.New("evaluating when")

// Eval evaluates the expression against the run's values.
func (e *Expression) Eval(scope *template.Scope) (bool, error) {
	out, _, err := e.prog.Eval(map[string]any{
		"workflow": workflowVars(scope),
		"steps":    stepVars(scope, e.steps),
	})
	if err != nil {
		return false, fmt.Errorf("%w %q: %w", ErrEvaluation, e.source, err)
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("%w %q: it yielded %v, not a bool", ErrEvaluation, e.source, out.Value())
	}
	return b, nil
}

func workflowVars(s *template.Scope) map[string]any {
	params := make(map[string]any, len(s.Workflow.Parameters))
	for k, v := range s.Workflow.Parameters {
		params[k] = v
	}
	w := map[string]any{"name": s.Workflow.Name, "namespace": s.Workflow.Namespace, "parameters": params}
	if s.Workflow.Phase != "" {
		w["phase"] = s.Workflow.Phase
	}
	return w
}

// stepVars exposes only the steps the expression reads: a fan-out's outputs can be large.
func stepVars(s *template.Scope, names []string) map[string]any {
	out := make(map[string]any, len(names))
	for _, n := range names {
		if st, ok := s.Steps[n]; ok {
			out[n] = stepValue(st)
		}
	}
	return out
}

// stepValue is a step as CEL sees it: phase, exitCode and outputs; a fan-out's exit codes and
// outputs are lists in item order.
func stepValue(st *template.StepValues) map[string]any {
	v := map[string]any{"phase": st.Phase}
	if st.Skipped {
		return v
	}
	if !st.FanOut {
		if st.ExitCode != nil {
			v["exitCode"] = int64(*st.ExitCode)
		}
		outputs := map[string]any{"parameters": stringMap(st.Parameters), "artifacts": stringMap(st.Artifacts)}
		if st.Result != nil {
			outputs["result"] = *st.Result
		}
		v["outputs"] = outputs
		return v
	}
	codes := make([]any, 0, len(st.Items))
	results := make([]any, 0, len(st.Items))
	params := map[string]any{}
	artifacts := map[string]any{}
	for i, it := range st.Items {
		if it.ExitCode != nil {
			codes = append(codes, int64(*it.ExitCode))
		}
		if it.Result != nil {
			results = append(results, *it.Result)
		}
		for k, val := range it.Parameters {
			l, _ := params[k].([]any)
			if l == nil {
				l = make([]any, 0, len(st.Items)-i)
			}
			params[k] = append(l, val)
		}
		for k, key := range it.Artifacts {
			l, _ := artifacts[k].([]any)
			artifacts[k] = append(l, key)
		}
	}
	v["exitCodes"] = codes
	v["outputs"] = map[string]any{"parameters": params, "artifacts": artifacts, "results": results}
	return v
}

func stringMap(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
