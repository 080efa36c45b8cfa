package v1alpha1

// Labels put on Pods and StepRuns, and the field managers of the two status writers.
const (
	LabelStepRun     = "workflows.pnsflow.dev/steprun"
	LabelWorkflowRun = "workflows.pnsflow.dev/workflowrun"
	LabelStep        = "workflows.pnsflow.dev/step"

	FieldManagerController = "pnsflow-manager"
	FieldManagerExecutor   = "pns-executor"
)
