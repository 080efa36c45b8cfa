package testutil

import (
	"encoding/json"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

// WorkflowRunWrapper builds a WorkflowRun: MakeWorkflowRun("wf", ns).Steps(MakeStep("a")).Obj().
type WorkflowRunWrapper struct{ v1alpha1.WorkflowRun }

// MakeWorkflowRun starts an empty WorkflowRun.
func MakeWorkflowRun(name, namespace string) *WorkflowRunWrapper {
	return &WorkflowRunWrapper{v1alpha1.WorkflowRun{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}}
}

// Obj returns the built WorkflowRun.
func (w *WorkflowRunWrapper) Obj() *v1alpha1.WorkflowRun { return w.WorkflowRun.DeepCopy() }

// Steps appends steps.
func (w *WorkflowRunWrapper) Steps(steps ...*StepWrapper) *WorkflowRunWrapper {
	for _, s := range steps {
		w.Spec.Steps = append(w.Spec.Steps, *s.Obj())
	}
	return w
}

// Param adds a run argument.
func (w *WorkflowRunWrapper) Param(name, value string) *WorkflowRunWrapper {
	if w.Spec.Arguments == nil {
		w.Spec.Arguments = &v1alpha1.Arguments{}
	}
	w.Spec.Arguments.Parameters = append(w.Spec.Arguments.Parameters, v1alpha1.InputParameter{Name: name, Value: value})
	return w
}

// Parallelism caps unfinished StepRuns.
func (w *WorkflowRunWrapper) Parallelism(n int32) *WorkflowRunWrapper {
	w.Spec.Parallelism = &n
	return w
}

// InfrastructureRetries sets infrastructureRetries.
func (w *WorkflowRunWrapper) InfrastructureRetries(n int32) *WorkflowRunWrapper {
	w.Spec.InfrastructureRetries = &n
	return w
}

// FailFast sets failFast.
func (w *WorkflowRunWrapper) FailFast() *WorkflowRunWrapper { w.Spec.FailFast = true; return w }

// OnExit sets the exit handler.
func (w *WorkflowRunWrapper) OnExit(s *StepWrapper) *WorkflowRunWrapper {
	w.Spec.OnExit = s.Obj()
	return w
}

// TTL sets ttlSecondsAfterFinished.
func (w *WorkflowRunWrapper) TTL(seconds int32) *WorkflowRunWrapper {
	w.Spec.TTLSecondsAfterFinished = &seconds
	return w
}

// Suspend sets suspend.
func (w *WorkflowRunWrapper) Suspend(b bool) *WorkflowRunWrapper { w.Spec.Suspend = b; return w }

// Cancel sets cancel.
func (w *WorkflowRunWrapper) Cancel() *WorkflowRunWrapper { w.Spec.Cancel = true; return w }

// UID sets the UID (for unit tests that never reach an API server).
func (w *WorkflowRunWrapper) UID(uid string) *WorkflowRunWrapper {
	w.ObjectMeta.UID = types.UID(uid)
	return w
}

// StepWrapper builds a WorkflowStep running busybox `true`.
type StepWrapper struct{ v1alpha1.WorkflowStep }

// MakeStep starts a step.
func MakeStep(name string) *StepWrapper {
	return &StepWrapper{v1alpha1.WorkflowStep{Name: name,
		Template: v1alpha1.StepRunSpec{Image: "busybox:1.36", Command: []string{"true"}}}}
}

// Obj returns the built step.
func (s *StepWrapper) Obj() *v1alpha1.WorkflowStep { return s.WorkflowStep.DeepCopy() }

// Image sets the template's image.
func (s *StepWrapper) Image(image string) *StepWrapper { s.Template.Image = image; return s }

// Command sets the template's command.
func (s *StepWrapper) Command(cmd ...string) *StepWrapper { s.Template.Command = cmd; return s }

// Args sets the template's args.
func (s *StepWrapper) Args(args ...string) *StepWrapper { s.Template.Args = args; return s }

// Env adds an environment variable to the template.
func (s *StepWrapper) Env(name, value string) *StepWrapper {
	s.Template.Env = append(s.Template.Env, corev1.EnvVar{Name: name, Value: value})
	return s
}

// Output declares an output parameter read from path.
func (s *StepWrapper) Output(name, path string) *StepWrapper {
	if s.Template.Outputs == nil {
		s.Template.Outputs = &v1alpha1.Outputs{}
	}
	s.Template.Outputs.Parameters = append(s.Template.Outputs.Parameters,
		v1alpha1.OutputParameter{Name: name, ValueFrom: v1alpha1.OutputValueFrom{Path: path}})
	return s
}

// OutputArtifact declares an output artifact stored from path.
func (s *StepWrapper) OutputArtifact(name, path string) *StepWrapper {
	if s.Template.Outputs == nil {
		s.Template.Outputs = &v1alpha1.Outputs{}
	}
	s.Template.Outputs.Artifacts = append(s.Template.Outputs.Artifacts, v1alpha1.OutputArtifact{Name: name, Path: path})
	return s
}

// InputArtifact declares an input artifact loaded from key to path; archive may be empty.
func (s *StepWrapper) InputArtifact(name, path, key, archive string) *StepWrapper {
	if s.Template.Inputs == nil {
		s.Template.Inputs = &v1alpha1.Inputs{}
	}
	s.Template.Inputs.Artifacts = append(s.Template.Inputs.Artifacts,
		v1alpha1.InputArtifact{Name: name, Path: path, Key: key, Archive: archive})
	return s
}

// DependsOn sets dependencies.
func (s *StepWrapper) DependsOn(names ...string) *StepWrapper {
	s.WorkflowStep.DependsOn = names
	return s
}

// Items fans out over strings.
func (s *StepWrapper) Items(values ...string) *StepWrapper {
	for _, v := range values {
		raw, _ := json.Marshal(v)
		s.WithItems = append(s.WithItems, apiextensionsv1.JSON{Raw: raw})
	}
	return s
}

// JSONItems fans out over raw JSON values.
func (s *StepWrapper) JSONItems(values ...string) *StepWrapper {
	for _, v := range values {
		s.WithItems = append(s.WithItems, apiextensionsv1.JSON{Raw: []byte(v)})
	}
	return s
}

// Sequence fans out over 0..count-1.
func (s *StepWrapper) Sequence(count int32) *StepWrapper {
	s.WithSequence = &v1alpha1.Sequence{Count: count}
	return s
}

// Param fans out over the JSON list a reference resolves to.
func (s *StepWrapper) Param(ref string) *StepWrapper { s.WithParam = ref; return s }

// When sets the CEL condition.
func (s *StepWrapper) When(expr string) *StepWrapper { s.WorkflowStep.When = expr; return s }

// Retries allows limit retries, backing off by backoff (zero: none).
func (s *StepWrapper) Retries(limit int32, backoff time.Duration) *StepWrapper {
	s.WorkflowStep.Retries = &v1alpha1.RetryStrategy{Limit: limit}
	if backoff > 0 {
		s.WorkflowStep.Retries.Backoff = &v1alpha1.Backoff{Duration: metav1.Duration{Duration: backoff}}
	}
	return s
}

// RetryOnExitCodes restricts retries to main's exit codes.
func (s *StepWrapper) RetryOnExitCodes(codes ...int32) *StepWrapper {
	if s.WorkflowStep.Retries == nil {
		s.WorkflowStep.Retries = &v1alpha1.RetryStrategy{}
	}
	s.WorkflowStep.Retries.RetryOn = &v1alpha1.RetryOn{ExitCodes: codes}
	return s
}

// RetryOnPhases restricts retries to StepRun phases.
func (s *StepWrapper) RetryOnPhases(phases ...v1alpha1.StepRunPhase) *StepWrapper {
	if s.WorkflowStep.Retries == nil {
		s.WorkflowStep.Retries = &v1alpha1.RetryStrategy{}
	}
	s.WorkflowStep.Retries.RetryOn = &v1alpha1.RetryOn{Phases: phases}
	return s
}
