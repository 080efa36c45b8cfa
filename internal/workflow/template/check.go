package template

import "fmt"

// Context is what a step may reference; Check holds each reference against it before anything
// runs, so a mistake fails the run at once instead of half-way through.
type Context struct {
	// Parameters are the run's argument names.
	Parameters map[string]bool
	// Steps are all step names of the run.
	Steps map[string]bool
	// Visible are the steps this one may read: those it depends on, directly or not (every
	// step, for onExit). Each maps to the output parameter names it declares.
	Visible map[string]map[string]bool
	// Artifacts maps each visible step to the output artifact names it declares.
	Artifacts map[string]map[string]bool
	// FanOut is true when the step has items.
	FanOut bool
	// Exit is true for onExit.
	Exit bool
}

// Check reports why r cannot be used in this context, or nil.
func (c *Context) Check(r Ref) error {
	switch r.Kind {
	case WorkflowParameter:
		if !c.Parameters[r.Name] {
			return fmt.Errorf("%s: the run has no argument %q", r, r.Name)
		}
	case WorkflowPhase:
		if !c.Exit {
			return fmt.Errorf("%s: the run's phase is available in onExit only", r)
		}
	case Item:
		if !c.FanOut {
			return fmt.Errorf("%s: the step has no withItems, withParam or withSequence", r)
		}
	case StepOutputParameter, StepOutputArtifact, StepOutputResult, StepExitCode, StepPhase:
		if !c.Steps[r.Step] {
			return fmt.Errorf("%s: there is no step %q", r, r.Step)
		}
		outputs, ok := c.Visible[r.Step]
		if !ok {
			return fmt.Errorf("%s: step %q is not a dependency of this step (add it to dependsOn)", r, r.Step)
		}
		if r.Kind == StepOutputParameter && !outputs[r.Name] {
			return fmt.Errorf("%s: step %q declares no output parameter %q", r, r.Step, r.Name)
		}
		if r.Kind == StepOutputArtifact && !c.Artifacts[r.Step][r.Name] {
			return fmt.Errorf("%s: step %q declares no output artifact %q", r, r.Step, r.Name)
		}
	}
	return nil
}
