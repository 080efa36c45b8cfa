package workflowrun

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/workflow/template"
)

// resolution is what a step becomes once its inputs are final: skipped, impossible, or a list
// of items with their substituted StepRun specs. It depends only on final values (the run's
// arguments and finished steps' outputs), so it is computed once per step and remembered.
type resolution struct {
	// skip, when not empty, says why the step is skipped.
	skip string
	// err, when not empty, says why the step cannot run at all.
	err string
	// specs holds one substituted spec per item (one for a step without fan-out); nil where
	// itemErr has an entry.
	specs []*v1alpha1.StepRunSpec
	// itemErr says why an item cannot run, by item index (0 for a step without fan-out).
	itemErr map[int]string
}

// resolveStep evaluates `when`, expands the items and substitutes every item's template.
func resolveStep(sp *StepPlan, scope *template.Scope) *resolution {
	if sp.When != nil {
		ok, err := sp.When.Eval(scope)
		if err != nil {
			return &resolution{err: err.Error()}
		}
		if !ok {
			return &resolution{skip: fmt.Sprintf("when %q is false", sp.Spec.When)}
		}
	}
	if !sp.FanOut {
		spec, err := sp.Template.Execute(scope)
		if err != nil {
			return &resolution{err: err.Error()}
		}
		return &resolution{specs: []*v1alpha1.StepRunSpec{spec}}
	}
	items, err := expand(sp, scope)
	if err != nil {
		return &resolution{err: err.Error()}
	}
	if len(items) == 0 {
		return &resolution{skip: "no items to run"}
	}
	res := &resolution{specs: make([]*v1alpha1.StepRunSpec, len(items))}
	for i, item := range items {
		s := *scope
		s.Item = item
		spec, err := sp.Template.Execute(&s)
		if err != nil {
			if res.itemErr == nil {
				res.itemErr = map[int]string{}
			}
			res.itemErr[i] = fmt.Sprintf("item %d: %v", i, err)
			continue
		}
		res.specs[i] = spec
	}
	return res
}

// expand lists a fan-out's items as JSON values.
func expand(sp *StepPlan, scope *template.Scope) ([]json.RawMessage, error) {
	s := sp.Spec
	switch {
	case len(s.WithItems) > 0:
		out := make([]json.RawMessage, len(s.WithItems))
		for i := range s.WithItems {
			out[i] = s.WithItems[i].Raw
		}
		return out, nil
	case s.WithSequence != nil:
		out := make([]json.RawMessage, s.WithSequence.Count)
		for i := range out {
			out[i] = json.RawMessage(strconv.Itoa(int(s.WithSequence.Start) + i))
		}
		return out, nil
	}
	v, err := template.Value(*sp.WithParam, scope)
	if err != nil {
		return nil, fmt.Errorf("withParam: %w", err)
	}
	var items []json.RawMessage
	if err := json.Unmarshal([]byte(v), &items); err != nil {
		return nil, fmt.Errorf("withParam %s is not a JSON list: %q", sp.WithParam, clip(v, 64))
	}
	if len(items) > v1alpha1.MaxStepItems {
		return nil, fmt.Errorf("withParam %s has %d items, more than the %d allowed", sp.WithParam, len(items), v1alpha1.MaxStepItems)
	}
	return items, nil
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return v1alpha1.TruncateMessage(s, n) + "…"
}

// staticItems is a step's item count before it is resolved: known for withItems and
// withSequence, one for withParam (not expanded yet) and for a step without fan-out.
func staticItems(s *v1alpha1.WorkflowStep) int {
	switch {
	case len(s.WithItems) > 0:
		return len(s.WithItems)
	case s.WithSequence != nil:
		return int(s.WithSequence.Count)
	}
	return 1
}

// stepValues are what a finished step exposes to later templates and conditions: the last
// attempt of each item.
func stepValues(se *stepEval, kids *children) *template.StepValues {
	v := &template.StepValues{Phase: string(se.phase)}
	if se.phase == v1alpha1.StepSkipped {
		v.Skipped = true
		return v
	}
	if !se.plan.FanOut {
		fill(v, kids.last(itemKey{step: se.plan.Name, item: -1}))
		return v
	}
	v.FanOut = true
	v.Items = make([]template.StepValues, se.total)
	for i := range v.Items {
		fill(&v.Items[i], kids.last(itemKey{step: se.plan.Name, item: i}))
	}
	return v
}

func fill(v *template.StepValues, a *attempt) {
	if a == nil || a.sr == nil {
		return
	}
	st := &a.sr.Status
	v.ExitCode = st.ExitCode
	if st.Outputs == nil {
		return
	}
	v.Result = templateResult(st.Outputs.Result)
	if len(st.Outputs.Parameters) > 0 {
		v.Parameters = make(map[string]string, len(st.Outputs.Parameters))
		for _, p := range st.Outputs.Parameters {
			v.Parameters[p.Name] = p.Value
		}
	}
	if len(st.Outputs.Artifacts) > 0 {
		v.Artifacts = make(map[string]string, len(st.Outputs.Artifacts))
		for _, a := range st.Outputs.Artifacts {
			v.Artifacts[a.Name] = a.Key
		}
	}
}

// templateResult is a step's result as later templates and `when` see it: the log tail with
// exactly one trailing newline trimmed, the rule output parameters follow (the executor trims
// them when it reads their files), so `{{steps.s.outputs.result}}` of a step that ran `echo 4`
// is "4". status.outputs.result keeps the log tail verbatim.
func templateResult(r *string) *string {
	if r == nil {
		return nil
	}
	v := strings.TrimSuffix(*r, "\n")
	return &v
}
