package metrics

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

// StepRunHandler records each StepRun the watch sees turning terminal and enqueues nothing. It
// shares the controller's informer, so it costs no request. A run that finishes while no manager
// watches (a restart, a failover) is not counted: counters start again with each process, as
// Prometheus expects of them.
func (r *Recorder) StepRunHandler() handler.EventHandler {
	return onFinish(func(sr *v1alpha1.StepRun) bool { return sr.Status.Phase.IsTerminal() }, r.StepRunFinished)
}

// WorkflowRunHandler records each WorkflowRun the watch sees turning terminal, like
// StepRunHandler.
func (r *Recorder) WorkflowRunHandler() handler.EventHandler {
	return onFinish(func(wfr *v1alpha1.WorkflowRun) bool { return wfr.Status.Phase.IsTerminal() }, r.WorkflowRunFinished)
}

// onFinish calls record with each object of type T an update takes to a terminal phase.
func onFinish[T client.Object](terminal func(T) bool, record func(T)) handler.EventHandler {
	return handler.Funcs{UpdateFunc: func(_ context.Context, e event.UpdateEvent, _ workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		old, oldOK := e.ObjectOld.(T)
		obj, newOK := e.ObjectNew.(T)
		if oldOK && newOK && Finished(terminal(old), terminal(obj)) {
			record(obj)
		}
	}}
}

// PhaseCollector reports how many StepRuns and WorkflowRuns are in each phase now, counted from
// the manager's cache at each scrape (no request to the API server).
type PhaseCollector struct {
	Reader   client.Reader
	stepRuns *prometheus.Desc
	wfRuns   *prometheus.Desc
}

// NewPhaseCollector counts the runs reader (the manager's cache) holds.
func NewPhaseCollector(reader client.Reader) *PhaseCollector {
	return &PhaseCollector{
		Reader:   reader,
		stepRuns: prometheus.NewDesc("pnsflow_stepruns", "StepRuns that exist now, by phase.", []string{"phase"}, nil),
		wfRuns:   prometheus.NewDesc("pnsflow_workflowruns", "WorkflowRuns that exist now, by phase.", []string{"phase"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *PhaseCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.stepRuns
	ch <- c.wfRuns
}

// stepRunPhases and workflowRunPhases are always reported, zero or not, so a phase's series
// never vanishes from a graph; the first is what a run without a phase yet counts as.
var (
	stepRunPhases = []v1alpha1.StepRunPhase{v1alpha1.StepRunPending, v1alpha1.StepRunRunning,
		v1alpha1.StepRunSucceeded, v1alpha1.StepRunFailed, v1alpha1.StepRunError}
	workflowRunPhases = []v1alpha1.WorkflowRunPhase{v1alpha1.WorkflowRunPending, v1alpha1.WorkflowRunRunning,
		v1alpha1.WorkflowRunSucceeded, v1alpha1.WorkflowRunFailed, v1alpha1.WorkflowRunError, v1alpha1.WorkflowRunCancelled}
)

// Collect implements prometheus.Collector. A list that fails reports nothing for its kind: a
// missing series is honest, a zero would not be.
func (c *PhaseCollector) Collect(ch chan<- prometheus.Metric) {
	ctx := context.Background()
	// The cache's objects are only read here: no copy of thousands of runs per scrape.
	var srs v1alpha1.StepRunList
	if err := c.Reader.List(ctx, &srs, client.UnsafeDisableDeepCopy); err == nil {
		sendByPhase(ch, c.stepRuns, phasesOf(srs.Items, func(sr *v1alpha1.StepRun) v1alpha1.StepRunPhase {
			return sr.Status.Phase
		}), stepRunPhases)
	}
	var wfrs v1alpha1.WorkflowRunList
	if err := c.Reader.List(ctx, &wfrs, client.UnsafeDisableDeepCopy); err == nil {
		sendByPhase(ch, c.wfRuns, phasesOf(wfrs.Items, func(wfr *v1alpha1.WorkflowRun) v1alpha1.WorkflowRunPhase {
			return wfr.Status.Phase
		}), workflowRunPhases)
	}
}

// phasesOf is each item's phase.
func phasesOf[T any, P ~string](items []T, phase func(*T) P) []P {
	out := make([]P, len(items))
	for i := range items {
		out[i] = phase(&items[i])
	}
	return out
}

// sendByPhase sends one gauge per phase in all: how many of seen are in it (an empty phase
// counts as the first).
func sendByPhase[P ~string](ch chan<- prometheus.Metric, desc *prometheus.Desc, seen, all []P) {
	n := map[P]int{}
	for _, p := range seen {
		if p == "" {
			p = all[0]
		}
		n[p]++
	}
	for _, p := range all {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(n[p]), string(p))
	}
}
