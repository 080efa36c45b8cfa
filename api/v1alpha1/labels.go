package v1alpha1

import "strconv"

// Labels put on Pods and StepRuns, and the field managers of the two status writers.
const (
	LabelStepRun     = "workflows.pnsflow.dev/steprun"
	LabelWorkflowRun = "workflows.pnsflow.dev/workflowrun"
	LabelStep        = "workflows.pnsflow.dev/step"

	FieldManagerController = "pnsflow-manager"
	FieldManagerExecutor   = "pns-executor"
)

// IntLabel reads a numeric label (a StepRun's item or attempt), def when it is missing or not a
// number.
func IntLabel(labels map[string]string, key string, def int) int {
	n, err := strconv.Atoi(labels[key]) // a missing label reads "", not a number
	if err != nil {
		return def
	}
	return n
}
