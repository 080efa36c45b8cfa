package workflowrun

import (
	"fmt"
	"time"

	"k8s.io/utils/clock"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/workflow/dag"
	"github.com/pnsflow/pnsflow/internal/workflow/retry"
	"github.com/pnsflow/pnsflow/internal/workflow/template"
)

// start is one StepRun to create.
type start struct {
	step    *StepPlan
	item    int // -1 for a step without fan-out
	attempt int
	spec    *v1alpha1.StepRunSpec
}

// stepEval is one step's state, derived from its StepRuns alone.
type stepEval struct {
	plan    *StepPlan
	phase   v1alpha1.WorkflowStepPhase
	message string
	total   int
	counts  v1alpha1.StepCounts
	// active counts unfinished StepRuns (including created ones not seen yet).
	active int
	// failed is set once an item has failed for good: dependents will never run.
	failed    bool
	failPhase v1alpha1.WorkflowStepPhase
	// candidates may start now if the gate and the budget allow; retries wait in retrying.
	candidates []start
	retrying   int
	// shown is the StepRun the summary names: a single step's latest attempt, a fan-out's
	// first failure.
	shown    *attempt
	attempts int32
	started  bool
}

// evaluation is the whole run's state and what to do next.
type evaluation struct {
	steps  []*stepEval // declaration order, onExit last
	byName map[string]*stepEval
	// starts are admitted now; deferred more wait for the parallelism budget.
	starts   []start
	deferred int
	active   int
	// running are unfinished StepRuns seen in the cache: cancel deletes their Pods.
	running []*v1alpha1.StepRun
	// retryIn is the shortest wait for a retry's backoff.
	retryIn time.Duration
	gate    gate
	outcome outcome
	// failure describes the first step that failed for good, in dependency order.
	failure string
	started bool
}

// input is everything evaluate reads.
type input struct {
	run   *v1alpha1.WorkflowRun
	plan  *Plan
	kids  *children
	clock clock.PassiveClock
	// resolve returns a step's resolution; the reconciler remembers them, tests compute them.
	resolve func(sp *StepPlan, scope func() *template.Scope) *resolution
}

// evaluate derives every step's state from the run's StepRuns and decides what starts next.
// It is pure: the same StepRuns, definition and time give the same answer.
func evaluate(in *input) *evaluation {
	ev := &evaluation{byName: map[string]*stepEval{}, started: in.kids.created > 0}
	for _, sp := range in.plan.Order {
		readiness := in.plan.Graph.Readiness(sp.Name, func(dep string) dag.Outcome { return depOutcome(ev.byName[dep]) })
		se := in.evalStep(ev, sp, readiness, "")
		ev.byName[sp.Name] = se
		if se.failed && ev.failure == "" {
			ev.failure = fmt.Sprintf("step %q failed: %s", sp.Name, se.message)
		}
	}
	ev.gate = newGate(&in.run.Spec, ev.failure)

	var candidates []start
	mainActive, retrying := 0, 0
	for _, sp := range in.plan.Order {
		se := ev.byName[sp.Name]
		candidates = append(candidates, se.candidates...)
		mainActive += se.active
		retrying += se.retrying
	}
	settled := mainActive == 0 && (len(candidates) == 0 && retrying == 0 || ev.gate.closedForGood())
	if ev.gate.closedForGood() {
		for _, sp := range in.plan.Order {
			stop(ev.byName[sp.Name], ev.gate.why())
		}
	}
	ev.active = mainActive
	open := ev.gate.steps()

	var exit *stepEval
	if sp := in.plan.Exit; sp != nil {
		readiness := dag.Waiting
		if settled {
			readiness = dag.Ready
		}
		phase := v1alpha1.WorkflowRunSucceeded
		if ev.failure != "" {
			phase = v1alpha1.WorkflowRunFailed
		}
		exit = in.evalStep(ev, sp, readiness, string(phase))
		ev.byName[sp.Name] = exit
		ev.active += exit.active
		if settled {
			// onExit waits for nothing but the steps, so it starts whatever failed.
			candidates, open = exit.candidates, ev.gate.exit()
		}
		if in.run.Spec.Cancel {
			stop(exit, ev.gate.why())
		}
	}
	for _, s := range in.plan.Steps {
		ev.steps = append(ev.steps, ev.byName[s.Name])
	}
	if exit != nil {
		ev.steps = append(ev.steps, exit)
	}

	ev.starts, ev.deferred = admit(candidates, open, budget(in.run.Spec.Parallelism, ev.active))
	ev.outcome = decideOutcome(in.run.Spec.Cancel, ev.active, settled, ev.failure, exit)
	return ev
}

// depOutcome is what a dependency's state means for the steps after it.
func depOutcome(se *stepEval) dag.Outcome {
	switch {
	case se.failed, se.phase == v1alpha1.StepOmitted, se.phase == v1alpha1.StepError, se.phase == v1alpha1.StepFailed:
		return dag.Unsatisfied
	case se.phase == v1alpha1.StepSucceeded, se.phase == v1alpha1.StepSkipped:
		return dag.Satisfied
	}
	return dag.Unfinished
}

// evalStep sorts one step's items into running, succeeded, failed and startable. phase is the
// run's outcome, for onExit's templates.
func (in *input) evalStep(ev *evaluation, sp *StepPlan, readiness dag.Readiness, phase string) *stepEval {
	se := &stepEval{plan: sp, total: staticItems(sp.Spec)}
	hasKids := in.hasChildren(sp)
	if !hasKids && readiness != dag.Ready {
		if readiness == dag.Blocked {
			se.phase, se.message = v1alpha1.StepOmitted, "not started: a dependency did not succeed"
			se.counts.Omitted = int32(se.total)
		} else {
			se.phase = v1alpha1.StepPending
		}
		se.counts.Total = int32(se.total)
		return se
	}
	res := in.resolve(sp, func() *template.Scope { return in.scope(ev, sp, phase) })
	switch {
	case res.err != "":
		se.total, se.phase, se.message, se.failed, se.failPhase = 1, v1alpha1.StepError, res.err, true, v1alpha1.StepError
		se.counts = v1alpha1.StepCounts{Total: 1, Error: 1}
		return se
	case res.skip != "":
		se.total, se.phase, se.message = 1, v1alpha1.StepSkipped, res.skip
		se.counts = v1alpha1.StepCounts{Total: 1, Skipped: 1}
		return se
	}
	se.total = len(res.specs)
	se.counts.Total = int32(se.total)
	now := in.clock.Now()
	for i := range se.total {
		key := itemKey{step: sp.Name, item: i}
		if !sp.FanOut {
			key.item = -1
		}
		atts := in.kids.items[key]
		if len(atts) == 0 {
			if msg, bad := res.itemErr[i]; bad {
				se.fail(v1alpha1.StepError, msg, nil)
				se.counts.Error++
				continue
			}
			se.candidates = append(se.candidates, start{step: sp, item: key.item, spec: res.specs[i]})
			continue
		}
		se.started = true
		last := &atts[len(atts)-1]
		se.attempts += int32(len(atts))
		se.counts.Retries += int32(last.n)
		if !sp.FanOut {
			se.shown = last
		}
		switch ph := last.phase(); {
		case !ph.IsTerminal():
			se.active++
			if ph == v1alpha1.StepRunRunning {
				se.counts.Running++
			} else {
				se.counts.Pending++
			}
			if last.sr != nil {
				ev.running = append(ev.running, last.sr)
			}
		case ph == v1alpha1.StepRunSucceeded:
			se.counts.Succeeded++
		default:
			v, lastAttempt := in.decideRetry(sp, atts, now)
			switch {
			case v.Retry && v.After == 0:
				se.counts.Pending++
				se.retrying++
				se.candidates = append(se.candidates, start{step: sp, item: key.item, attempt: last.n + 1, spec: res.specs[i]})
			case v.Retry:
				se.counts.Pending++
				se.retrying++
				if ev.retryIn == 0 || v.After < ev.retryIn {
					ev.retryIn = v.After
				}
			default:
				se.failAttempt(last, explain(sp, v, lastAttempt))
			}
		}
	}
	switch {
	case se.active > 0:
		se.phase = v1alpha1.StepRunning
	case len(se.candidates) == 0 && se.retrying == 0 && se.failed:
		se.phase = se.failPhase
	case len(se.candidates) == 0 && se.retrying == 0:
		se.phase = v1alpha1.StepSucceeded
	case se.started:
		se.phase = v1alpha1.StepRunning
	default:
		se.phase = v1alpha1.StepPending
	}
	return se
}

// fail records an item's final failure; the first one names the step's message.
func (se *stepEval) fail(phase v1alpha1.WorkflowStepPhase, msg string, a *attempt) {
	if !se.failed {
		se.message = msg
		if se.plan.FanOut {
			se.shown = a
		}
	}
	se.failed = true
	if se.failPhase != v1alpha1.StepFailed {
		se.failPhase = phase
	}
}

func (se *stepEval) failAttempt(a *attempt, why string) {
	st := &a.sr.Status
	msg := fmt.Sprintf("StepRun %s ended %s", a.name, st.Phase)
	if st.Reason != "" {
		msg += " (" + st.Reason + ")"
	}
	if st.Message != "" {
		msg += ": " + st.Message
	}
	if why != "" {
		msg += "; " + why
	}
	if st.Phase == v1alpha1.StepRunFailed {
		se.counts.Failed++
		se.fail(v1alpha1.StepFailed, msg, a)
	} else {
		se.counts.Error++
		se.fail(v1alpha1.StepError, msg, a)
	}
}

// stop settles a step once nothing more of it will start (cancel, failFast): items waiting to
// start are omitted, items waiting to be retried have failed.
func stop(se *stepEval, why string) {
	if se.phase.IsFinal() || se.active > 0 {
		return
	}
	omitted := 0
	for _, c := range se.candidates {
		if c.attempt == 0 {
			omitted++
		}
	}
	if se.phase == v1alpha1.StepPending && !se.started && len(se.candidates) == 0 && se.retrying == 0 {
		omitted = se.total
	}
	se.counts.Omitted += int32(omitted)
	se.counts.Pending -= int32(se.retrying)
	if se.retrying > 0 {
		// A failed attempt that will not be retried is the item's failure.
		se.counts.Failed += int32(se.retrying)
		se.fail(v1alpha1.StepFailed, "retry not started: "+why, nil)
	}
	se.candidates, se.retrying = nil, 0
	if se.failed {
		se.phase = se.failPhase
		return
	}
	se.phase, se.message = v1alpha1.StepOmitted, why
}

// decideRetry applies the step's retries and the run's infrastructure retries to an item whose
// latest attempt failed. The item's ended attempts are counted again from their StepRuns each
// time: they are the only record of which failures were the infrastructure's. It also returns
// the latest attempt as the decision saw it.
func (in *input) decideRetry(sp *StepPlan, atts []attempt, now time.Time) (retry.Verdict, retry.Attempt) {
	var h retry.History
	for i := range atts {
		if atts[i].terminal() {
			h.Add(in.attemptOf(&atts[i], now))
		}
	}
	last := in.attemptOf(&atts[len(atts)-1], now)
	return retry.DecideItem(sp.Spec.Retries, retry.InfrastructureRetries(in.run.Spec.InfrastructureRetries), h, last, in.clock), last
}

// explain is what a failed item's message adds after the StepRun's own words: why it was not
// retried, when the step has retries or the run's infrastructure retries were in play.
func explain(sp *StepPlan, v retry.Verdict, last retry.Attempt) string {
	if sp.Spec.Retries == nil && !last.NeverStarted {
		return ""
	}
	return v.Why
}

func (in *input) attemptOf(a *attempt, now time.Time) retry.Attempt {
	st := &a.sr.Status
	out := retry.Attempt{Phase: st.Phase, ExitCode: st.ExitCode, FinishedAt: now,
		// A cancel deletes the Pods itself: what it stopped is not the infrastructure's failure,
		// and the gate starts no retry anyway.
		NeverStarted: !in.run.Spec.Cancel && st.NeverStartedInfrastructureFailure()}
	if st.FinishedAt != nil {
		out.FinishedAt = st.FinishedAt.Time
	}
	return out
}

func (in *input) hasChildren(sp *StepPlan) bool {
	if !sp.FanOut {
		return len(in.kids.items[itemKey{step: sp.Name, item: -1}]) > 0
	}
	return in.kids.steps[sp.Name]
}

// scope is what sp's templates and `when` see: the run's values and the steps it may read.
func (in *input) scope(ev *evaluation, sp *StepPlan, phase string) *template.Scope {
	s := &template.Scope{
		Workflow: template.Workflow{Name: in.run.Name, Namespace: in.run.Namespace, Phase: phase, Parameters: map[string]string{}},
		Steps:    make(map[string]*template.StepValues, len(sp.Visible)),
	}
	if a := in.run.Spec.Arguments; a != nil {
		for _, p := range a.Parameters {
			s.Workflow.Parameters[p.Name] = p.Value
		}
	}
	for _, name := range sp.Visible {
		if se := ev.byName[name]; se != nil {
			s.Steps[name] = stepValues(se, in.kids)
		}
	}
	return s
}
