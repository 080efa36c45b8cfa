// Package tree renders a run as people read it: a WorkflowRun as its steps in DAG order, each
// with phase, duration and exit code, a fan-out collapsed to counts with only its failed items
// listed; a StepRun as one node with its outputs. It is pure: the same Model and Options give
// the same text, which the golden files in testdata pin. Nothing here knows about Kubernetes.
package tree

import "time"

// Phases as the API spells them; the renderer gives each an icon and a colour.
const (
	Pending   = "Pending"
	Running   = "Running"
	Succeeded = "Succeeded"
	Failed    = "Failed"
	Error     = "Error"
	Skipped   = "Skipped"
	Omitted   = "Omitted"
	Cancelled = "Cancelled"
)

// Model is one run at one moment.
type Model struct {
	// Kind is "WorkflowRun" or "StepRun".
	Kind      string
	Namespace string
	Name      string
	Phase     string
	Reason    string
	Message   string
	Suspended bool
	// Cancelling: cancel was asked and StepRuns are still ending.
	Cancelling bool
	// Done and Total are the WorkflowRun's items done and in all.
	Done, Total int32
	// Elapsed is the run's time so far, or its duration once Finished.
	Elapsed    time.Duration
	HasElapsed bool
	Finished   bool
	// Steps are in DAG order, onExit last.
	Steps []Step

	// A StepRun's own details.
	ExitCode *int32
	PodName  string
	Outputs  []Output
	// Stages are where the StepRun's time went, in order.
	Stages []Stage
}

// Stage is one stage of a StepRun and how long it took.
type Stage struct {
	Label    string
	Duration time.Duration
}

// Step is one step of a WorkflowRun.
type Step struct {
	Name string
	// Level is the step's depth in the DAG (0 for steps without dependencies), for indentation.
	Level int
	// After lists the steps this one depends on.
	After  []string
	OnExit bool
	Phase  string
	// Duration is the latest attempt's (a single step) or from the first item's start to the
	// last one's end (a fan-out); running steps count up to now.
	Duration    time.Duration
	HasDuration bool
	ExitCode    *int32
	Attempts    int32
	Message     string
	// Items is set for a fan-out.
	Items *Counts
	// Failed are a fan-out's failed items known to the viewer, by item index; MoreFailed counts
	// those the status reports beyond them.
	Failed     []Item
	MoreFailed int32
	// Outputs are a single step's collected outputs (shown by get).
	Outputs []Output
}

// Counts are a fan-out's items by state.
type Counts struct {
	Total, Pending, Running, Succeeded, Failed, Error, Skipped, Omitted, Retries int32
}

// Item is one failed item of a fan-out.
type Item struct {
	Index       int
	StepRun     string
	Phase       string
	Reason      string
	ExitCode    *int32
	Duration    time.Duration
	HasDuration bool
}

// Output is one collected output parameter or stored artifact.
type Output struct {
	Name     string
	Value    string
	Artifact bool
}
