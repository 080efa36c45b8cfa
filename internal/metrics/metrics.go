// Package metrics defines pnsflow's Prometheus metrics and records them from what the API
// already says: a StepRun or WorkflowRun seen turning terminal, and the runs in the cache now.
// It writes nothing to the API server, so the happy path keeps its four writes per step.
package metrics

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

// stageBuckets span 1 ms to 10 min, three per decade: a stage can be a millisecond's report or a
// ten-minute image pull.
var stageBuckets = []float64{
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
	1, 2.5, 5, 10, 25, 50, 100, 250, 600,
}

// widthBuckets are fan-out widths up to the API's cap on items.
var widthBuckets = prometheus.ExponentialBuckets(1, 4, 8) // 1 … 16384

// Recorder holds pnsflow's metrics. Its methods are what controllers call; each reads a run
// that has just been seen to finish.
type Recorder struct {
	stepRunsFinished     *prometheus.CounterVec
	stageSeconds         *prometheus.HistogramVec
	reportSeconds        prometheus.Histogram
	workflowRunsFinished *prometheus.CounterVec
	workflowRunSeconds   *prometheus.HistogramVec
	fanOutWidth          prometheus.Histogram
}

// NewRecorder creates the metrics and registers them with reg (controller-runtime's
// metrics.Registry in the manager, a fresh registry in tests).
func NewRecorder(reg prometheus.Registerer) (*Recorder, error) {
	r := &Recorder{
		stepRunsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pnsflow_stepruns_finished_total",
			Help: "StepRuns seen reaching a terminal phase, by phase and reason.",
		}, []string{"phase", "reason"}),
		stageSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pnsflow_steprun_stage_duration_seconds",
			Help:    "How long each stage of a finished StepRun took (status.timings), by stage: pod_create, schedule, executor_start, main_start, main, report.",
			Buckets: stageBuckets,
		}, []string{"stage"}),
		reportSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pnsflow_executor_report_latency_seconds",
			Help:    "From main's exit to the executor's terminal report, for runs the executor ended.",
			Buckets: stageBuckets,
		}),
		workflowRunsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pnsflow_workflowruns_finished_total",
			Help: "WorkflowRuns seen reaching a terminal phase, by phase and reason.",
		}, []string{"phase", "reason"}),
		workflowRunSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pnsflow_workflowrun_duration_seconds",
			Help:    "From a WorkflowRun's creation to its terminal phase, by phase.",
			Buckets: stageBuckets,
		}, []string{"phase"}),
		fanOutWidth: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pnsflow_workflowrun_fanout_width",
			Help:    "Items of each fanned-out step of a finished WorkflowRun.",
			Buckets: widthBuckets,
		}),
	}
	var err error
	if r.stepRunsFinished, err = register(reg, r.stepRunsFinished); err != nil {
		return nil, err
	}
	if r.stageSeconds, err = register(reg, r.stageSeconds); err != nil {
		return nil, err
	}
	if r.reportSeconds, err = register(reg, r.reportSeconds); err != nil {
		return nil, err
	}
	if r.workflowRunsFinished, err = register(reg, r.workflowRunsFinished); err != nil {
		return nil, err
	}
	if r.workflowRunSeconds, err = register(reg, r.workflowRunSeconds); err != nil {
		return nil, err
	}
	if r.fanOutWidth, err = register(reg, r.fanOutWidth); err != nil {
		return nil, err
	}
	return r, nil
}

// register registers c, or returns the collector already registered in its place: a manager
// rebuilt in the same process (after a failure) goes on counting where the last one stopped.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	if err != nil {
		return c, fmt.Errorf("registering a metric: %w", err)
	}
	return c, nil
}

// Register creates the Recorder on reg and (re)places the phase gauges' collector over reader,
// the manager's cache: a rebuilt manager's cache replaces the last one's.
func Register(reg prometheus.Registerer, reader client.Reader) (*Recorder, error) {
	r, err := NewRecorder(reg)
	if err != nil {
		return nil, err
	}
	c := NewPhaseCollector(reader)
	reg.Unregister(c) // by its descriptions: the previous manager's collector, if any
	if err := reg.Register(c); err != nil {
		return nil, fmt.Errorf("registering the phase gauges: %w", err)
	}
	return r, nil
}

// StepRunFinished records a StepRun seen turning terminal: its phase and reason, and each stage
// its timings know.
func (r *Recorder) StepRunFinished(sr *v1alpha1.StepRun) {
	st := &sr.Status
	r.stepRunsFinished.WithLabelValues(string(st.Phase), st.Reason).Inc()
	for _, s := range st.Timings.Stages(sr.CreationTimestamp.Time) {
		r.stageSeconds.WithLabelValues(s.Name).Observe(s.Duration.Seconds())
		if s.Name == v1alpha1.StageReport {
			r.reportSeconds.Observe(s.Duration.Seconds())
		}
	}
}

// WorkflowRunFinished records a WorkflowRun seen turning terminal: its phase and reason, its
// duration from creation, and the width of each fanned-out step.
func (r *Recorder) WorkflowRunFinished(wfr *v1alpha1.WorkflowRun) {
	st := &wfr.Status
	r.workflowRunsFinished.WithLabelValues(string(st.Phase), st.Reason).Inc()
	if st.FinishedAt != nil && !wfr.CreationTimestamp.IsZero() {
		if d := st.FinishedAt.Sub(wfr.CreationTimestamp.Time); d >= 0 {
			r.workflowRunSeconds.WithLabelValues(string(st.Phase)).Observe(d.Seconds())
		}
	}
	for _, s := range st.Steps {
		if s.Items != nil {
			r.fanOutWidth.Observe(float64(s.Items.Total))
		}
	}
}

// Finished reports whether an update took a run from a non-terminal phase to a terminal one:
// the one moment it is counted, so a run is counted once however often it is seen afterwards.
func Finished(oldTerminal, newTerminal bool) bool { return !oldTerminal && newTerminal }
