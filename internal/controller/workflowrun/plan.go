package workflowrun

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/workflow/dag"
	"github.com/pnsflow/pnsflow/internal/workflow/template"
	"github.com/pnsflow/pnsflow/internal/workflow/when"
)

// Plan is a WorkflowRun's definition, validated and compiled once per generation: everything
// CEL at admission cannot check (cycles, references, `when` expressions) is checked here, before
// the first StepRun is created.
type Plan struct {
	// Steps are in declaration order; Order is the same steps, dependencies first.
	Steps []*StepPlan
	Order []*StepPlan
	// Exit is onExit, or nil.
	Exit   *StepPlan
	Graph  *dag.Graph
	byName map[string]*StepPlan
}

// StepPlan is one compiled step.
type StepPlan struct {
	Name     string
	Spec     *v1alpha1.WorkflowStep
	Template *template.Template
	When     *when.Expression
	// WithParam is the reference withParam names, when set.
	WithParam *template.Ref
	FanOut    bool
	Exit      bool
	// Visible are the steps this one may read: its ancestors, or every step for onExit.
	Visible []string
}

// Step returns the step (or onExit) called name.
func (p *Plan) Step(name string) *StepPlan { return p.byName[name] }

// InvalidError lists everything wrong with a definition.
type InvalidError struct{ Problems []string }

func (e *InvalidError) Error() string { return strings.Join(e.Problems, "; ") }

// Compile validates a WorkflowRun's definition and compiles its templates and conditions.
// The error, when not nil, is an *InvalidError naming every problem found.
func Compile(wfr *v1alpha1.WorkflowRun) (*Plan, error) {
	spec := &wfr.Spec
	var problems []string
	nodes := make([]dag.Node, len(spec.Steps))
	names := make([]string, 0, len(spec.Steps)+1)
	for i := range spec.Steps {
		nodes[i] = dag.Node{Name: spec.Steps[i].Name, DependsOn: spec.Steps[i].DependsOn}
		names = append(names, spec.Steps[i].Name)
	}
	graph, err := dag.New(nodes)
	if err != nil {
		return nil, &InvalidError{Problems: []string{err.Error()}}
	}
	if spec.OnExit != nil {
		if graph.Has(spec.OnExit.Name) {
			problems = append(problems, fmt.Sprintf("onExit's name %q is also a step's", spec.OnExit.Name))
		}
		if len(spec.OnExit.DependsOn) > 0 {
			problems = append(problems, "onExit runs after every step and takes no dependsOn")
		}
		names = append(names, spec.OnExit.Name)
	}
	if err := nameClash(names); err != nil {
		problems = append(problems, err.Error())
	}

	p := &Plan{Graph: graph, byName: map[string]*StepPlan{}}
	params := map[string]bool{}
	if spec.Arguments != nil {
		for _, a := range spec.Arguments.Parameters {
			params[a.Name] = true
		}
	}
	all := map[string]bool{}
	outputs := map[string]map[string]bool{}
	artifacts := map[string]map[string]bool{}
	for i := range spec.Steps {
		s := &spec.Steps[i]
		all[s.Name] = true
		outputs[s.Name], artifacts[s.Name] = declaredOutputs(s)
	}
	for i := range spec.Steps {
		s := &spec.Steps[i]
		visible := map[string]map[string]bool{}
		for a := range graph.Ancestors(s.Name) {
			visible[a] = outputs[a]
		}
		sp, errs := compileStep(s, false, &template.Context{Parameters: params, Steps: all, Visible: visible,
			Artifacts: artifacts, FanOut: fanOut(s)})
		problems = append(problems, errs...)
		p.Steps = append(p.Steps, sp)
		p.byName[s.Name] = sp
	}
	if spec.OnExit != nil {
		sp, errs := compileStep(spec.OnExit, true, &template.Context{Parameters: params, Steps: all, Visible: outputs,
			Artifacts: artifacts, FanOut: fanOut(spec.OnExit), Exit: true})
		problems = append(problems, errs...)
		p.Exit = sp
		p.byName[sp.Name] = sp
	}
	if len(problems) > 0 {
		return nil, &InvalidError{Problems: problems}
	}
	for _, name := range graph.Order() {
		p.Order = append(p.Order, p.byName[name])
	}
	return p, nil
}

func fanOut(s *v1alpha1.WorkflowStep) bool {
	return len(s.WithItems) > 0 || s.WithParam != "" || s.WithSequence != nil
}

// declaredOutputs are the names of a step's output parameters and output artifacts.
func declaredOutputs(s *v1alpha1.WorkflowStep) (parameters, artifacts map[string]bool) {
	parameters, artifacts = map[string]bool{}, map[string]bool{}
	if s.Template.Outputs != nil {
		for _, o := range s.Template.Outputs.Parameters {
			parameters[o.Name] = true
		}
		for _, a := range s.Template.Outputs.Artifacts {
			artifacts[a.Name] = true
		}
	}
	return parameters, artifacts
}

// compileStep compiles one step and returns every problem found in it, each prefixed with the
// step's name.
func compileStep(s *v1alpha1.WorkflowStep, exit bool, ctx *template.Context) (*StepPlan, []string) {
	sp := &StepPlan{Name: s.Name, Spec: s, FanOut: ctx.FanOut, Exit: exit}
	for name := range ctx.Visible {
		sp.Visible = append(sp.Visible, name)
	}
	slices.Sort(sp.Visible)
	var problems []string
	bad := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf("step %q: ", s.Name)+fmt.Sprintf(format, args...))
	}
	if len(s.WithItems) > 0 && (s.WithParam != "" || s.WithSequence != nil) {
		bad("withItems, withParam and withSequence are mutually exclusive")
	}
	tmpl, err := template.Compile(&s.Template)
	if err != nil {
		bad("%v", err)
	} else {
		sp.Template = tmpl
		for _, r := range tmpl.Refs() {
			if err := ctx.Check(r); err != nil {
				bad("%v", err)
			}
		}
	}
	if s.WithParam != "" {
		ref, err := withParamRef(s.WithParam)
		if err == nil {
			// withParam is resolved before there is an item.
			itemless := *ctx
			itemless.FanOut = false
			err = itemless.Check(ref)
		}
		if err != nil {
			bad("withParam: %v", err)
		} else {
			sp.WithParam = &ref
		}
	}
	if s.When != "" {
		expr, err := when.Compile(s.When)
		if err != nil {
			bad("%v", err)
		} else {
			sp.When = expr
			for _, name := range expr.Steps() {
				if _, ok := ctx.Visible[name]; !ok {
					if ctx.Steps[name] {
						bad("when reads step %q, which is not a dependency of this step (add it to dependsOn)", name)
					} else {
						bad("when reads step %q, which does not exist", name)
					}
				}
			}
			if expr.UsesWorkflowPhase() && !exit {
				bad("when reads workflow.phase, which is available in onExit only")
			}
		}
	}
	return sp, problems
}

// withParamRef parses withParam, which must be exactly one reference to a value that can hold
// a JSON list: a workflow parameter or an earlier step's output.
func withParamRef(s string) (template.Ref, error) {
	refs, err := template.Refs(s)
	if err != nil {
		return template.Ref{}, err
	}
	t := strings.TrimSpace(s)
	if len(refs) != 1 || !isSoleRef(t) {
		return template.Ref{}, errors.New(`must be exactly one reference, e.g. "{{steps.list.outputs.result}}"`)
	}
	switch refs[0].Kind {
	case template.WorkflowParameter, template.StepOutputParameter, template.StepOutputResult, template.StepOutputArtifact:
		return refs[0], nil
	}
	return template.Ref{}, fmt.Errorf("%s cannot hold a list: use a workflow parameter or a step's output", refs[0])
}

func isSoleRef(s string) bool {
	return strings.HasPrefix(s, "{{") && strings.HasSuffix(s, "}}") && strings.Count(s, "{{") == 1
}
