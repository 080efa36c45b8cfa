package v1alpha1

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// StepRunTimings records when each stage of a run happened, so a slow run shows where its time
// went. The run's creation is metadata.creationTimestamp. Times written by the executor (its
// start, main's start and exit, the report) have microsecond precision on the node's clock;
// times taken from the Pod (its creation, its scheduling) have the API server's one-second
// precision, and main's times fall back to the kubelet's one-second ones when the executor did
// not see main. Nothing is written for them alone: they ride on the reports.
type StepRunTimings struct {
	// podCreated is when the run's Pod was created.
	// +optional
	PodCreated *metav1.MicroTime `json:"podCreated,omitempty"`
	// podScheduled is when the Pod was bound to a node.
	// +optional
	PodScheduled *metav1.MicroTime `json:"podScheduled,omitempty"`
	// executorStarted is when the pns-executor process (its first run that reported) started.
	// +optional
	ExecutorStarted *metav1.MicroTime `json:"executorStarted,omitempty"`
	// mainStarted is when main's process started.
	// +optional
	MainStarted *metav1.MicroTime `json:"mainStarted,omitempty"`
	// mainExited is when main's process exited.
	// +optional
	MainExited *metav1.MicroTime `json:"mainExited,omitempty"`
	// reported is when the terminal status was sent.
	// +optional
	Reported *metav1.MicroTime `json:"reported,omitempty"`
}

// Stage names, in the order a run passes them. Each is the interval from the previous mark
// (the run's creation for the first) to its own.
const (
	StagePodCreate     = "pod_create"     // created → podCreated: the controller's reaction
	StageSchedule      = "schedule"       // podCreated → podScheduled: the scheduler
	StageExecutorStart = "executor_start" // podScheduled → executorStarted: sandbox, executor image, container
	StageMainStart     = "main_start"     // executorStarted → mainStarted: startup probe, main's image, container
	StageMain          = "main"           // mainStarted → mainExited: the user's work
	StageReport        = "report"         // mainExited → reported: exit code, outputs, artifacts, report
)

// Stage is one stage of a run and how long it took.
type Stage struct {
	Name     string
	Duration time.Duration
}

// Stages returns the stages whose two marks are both known, in order, given the run's creation
// time. A stage whose end lies before its start by more than the one-second precision of the
// Pod's timestamps is left out as impossible; one that does by up to a second counts as zero
// (the kubelet's own start and exit of a short main can read 52 and 51: containerd stamps the
// start after the process may have exited, and both are truncated to the second).
func (t *StepRunTimings) Stages(created time.Time) []Stage {
	if t == nil {
		return nil
	}
	marks := []struct {
		name string
		at   *metav1.MicroTime
	}{
		{StagePodCreate, t.PodCreated},
		{StageSchedule, t.PodScheduled},
		{StageExecutorStart, t.ExecutorStarted},
		{StageMainStart, t.MainStarted},
		{StageMain, t.MainExited},
		{StageReport, t.Reported},
	}
	var out []Stage
	prev := created
	for _, m := range marks {
		if m.at == nil || m.at.IsZero() {
			prev = time.Time{} // the next stage has no known start
			continue
		}
		if !prev.IsZero() {
			d := m.at.Sub(prev)
			switch {
			case d >= 0:
				out = append(out, Stage{Name: m.name, Duration: d})
			case d >= -time.Second:
				out = append(out, Stage{Name: m.name, Duration: 0})
			}
		}
		prev = m.at.Time
	}
	return out
}

// MicroTimeOf is t as a status time, nil when t is zero.
func MicroTimeOf(t time.Time) *metav1.MicroTime {
	if t.IsZero() {
		return nil
	}
	mt := metav1.NewMicroTime(t)
	return &mt
}

// PodTimings are the stage times a Pod shows: its creation, and its PodScheduled condition's
// transition to True.
func PodTimings(pod *corev1.Pod) StepRunTimings {
	t := StepRunTimings{PodCreated: MicroTimeOf(pod.CreationTimestamp.Time)}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionTrue {
			t.PodScheduled = MicroTimeOf(c.LastTransitionTime.Time)
		}
	}
	return t
}

// WithMain is t with main's start and exit, each left unset when zero (unknown).
func (t StepRunTimings) WithMain(started, exited time.Time) StepRunTimings {
	t.MainStarted, t.MainExited = MicroTimeOf(started), MicroTimeOf(exited)
	return t
}

// MergeTimings keeps what recorded already has (an earlier report saw it first, perhaps by an
// executor since restarted) and adds what it lacks from next; nil when nothing is known.
func MergeTimings(recorded *StepRunTimings, next StepRunTimings) *StepRunTimings {
	out := next
	if r := recorded; r != nil {
		for _, f := range []struct{ dst, have **metav1.MicroTime }{
			{&out.PodCreated, &r.PodCreated}, {&out.PodScheduled, &r.PodScheduled},
			{&out.ExecutorStarted, &r.ExecutorStarted}, {&out.MainStarted, &r.MainStarted},
			{&out.MainExited, &r.MainExited}, {&out.Reported, &r.Reported},
		} {
			if *f.have != nil {
				*f.dst = *f.have
			}
		}
	}
	if out == (StepRunTimings{}) {
		return nil
	}
	return &out
}
