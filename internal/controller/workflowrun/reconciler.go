// Package workflowrun holds the WorkflowRun controller: it validates a run's definition, fans
// its steps out as StepRuns it owns, and keeps a small status of counts and per-step summaries.
// Reconcile is thin; what to start, skip, retry or stop is decided by pure functions
// (evaluate, policy.go) from the run's StepRuns, which are the source of truth.
package workflowrun

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/metrics"
	"github.com/pnsflow/pnsflow/internal/podspec"
	"github.com/pnsflow/pnsflow/internal/workflow/template"
)

// Defaults for the Reconciler's knobs.
const (
	// DefaultCreateConcurrency StepRun creates are in flight at once per reconcile: a wide
	// fan-out is never serialised through one request at a time.
	DefaultCreateConcurrency = 64
	// DefaultCreateBudget is how long one reconcile keeps issuing creates before it writes
	// status and goes on in the next, so progress stays fresh during a fan-out.
	DefaultCreateBudget = 500 * time.Millisecond
	// DefaultStatusInterval rate-limits status writes that only move counts and progress.
	DefaultStatusInterval = 500 * time.Millisecond
	// conflictRetry is how soon a reconcile that lost a write race looks again.
	conflictRetry = 250 * time.Millisecond
	// cancelRecheck bounds how long a cancel waits for StepRun events before looking again.
	cancelRecheck = 10 * time.Second
)

// Reconciler reconciles WorkflowRuns.
type Reconciler struct {
	Client client.Client
	// APIReader reads past the cache, to tell our own StepRun from a stranger's on AlreadyExists.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	// MaxConcurrentReconciles bounds how many runs are reconciled at once.
	MaxConcurrentReconciles int
	CreateConcurrency       int
	CreateBudget            time.Duration
	StatusInterval          time.Duration
	// MaxBatchDelay caps how long StepRun events wait to be batched into one reconcile.
	MaxBatchDelay time.Duration
	// Metrics, when set, records WorkflowRuns as they finish.
	Metrics *metrics.Recorder

	mem memory
}

// The manager's RBAC, each rule beside the call that needs it. The reviewed list is
// internal/manager/rbac_test.go; the reasons are in docs/architecture.md, "Security model".
// For(WorkflowRun)'s informer (list, watch; Reconcile's Get reads it); expire deletes a run past its TTL.
// +kubebuilder:rbac:groups=workflows.pnsflow.dev,resources=workflowruns,verbs=list;watch;delete
// writeStatus: a merge patch guarded by resourceVersion; status is never read or replaced alone.
// +kubebuilder:rbac:groups=workflows.pnsflow.dev,resources=workflowruns/status,verbs=patch
// newStepRun: blockOwnerDeletion on the controller reference (OwnerReferencesPermissionEnforcement).
// +kubebuilder:rbac:groups=workflows.pnsflow.dev,resources=workflowruns/finalizers,verbs=update
// Watches(StepRun)'s informer, createStepRun, and its APIReader.Get past the cache on AlreadyExists.
// +kubebuilder:rbac:groups=workflows.pnsflow.dev,resources=stepruns,verbs=get;list;watch;create
// stopPods deletes the Pods of unfinished StepRuns when a run is cancelled.
// +kubebuilder:rbac:groups="",resources=pods,verbs=delete
// recordTransitions' events; client-go patches a repeated event's series.
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile reads like its steps: get → plan → load children → decide → act → write status once.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	wfr := &v1alpha1.WorkflowRun{}
	if err := r.Client.Get(ctx, req.NamespacedName, wfr); err != nil {
		if apierrors.IsNotFound(err) {
			r.mem.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !wfr.DeletionTimestamp.IsZero() {
		r.mem.forget(req.NamespacedName)
		return ctrl.Result{}, nil
	}
	if wfr.Status.Phase.IsTerminal() {
		r.mem.forget(req.NamespacedName)
		return r.expire(ctx, wfr)
	}
	mem := r.mem.get(req.NamespacedName, wfr.UID)
	plan, err := r.plan(mem, wfr)
	if err != nil {
		res, err := r.writeStatus(ctx, wfr, mem, invalidStatus(wfr, err, r.Clock.Now()))
		if ttl := wfr.Spec.TTLSecondsAfterFinished; err == nil && res.RequeueAfter == 0 && ttl != nil {
			res.RequeueAfter = max(time.Duration(*ttl)*time.Second, time.Millisecond)
		}
		return res, err
	}
	began := time.Now()
	list, err := r.loadChildren(ctx, wfr)
	if err != nil {
		return ctrl.Result{}, err
	}
	ev := r.evaluate(wfr, plan, list, mem)
	mem.cost.Store(int64(time.Since(began)))
	started, actErr := r.startStepRuns(ctx, wfr, mem, ev.starts)
	if wfr.Spec.Cancel {
		actErr = errors.Join(actErr, r.stopPods(ctx, mem, ev.running))
	}
	if started > 0 {
		// Decide again with the new StepRuns expected, so the status shows them started.
		ev = r.evaluate(wfr, plan, list, mem)
	}
	next := nextStatus(wfr, ev, r.Clock.Now())
	if actErr != nil {
		// The generation is observed only by a reconcile that did all it meant to.
		next.ObservedGeneration = wfr.Status.ObservedGeneration
	}
	res, err := r.writeStatus(ctx, wfr, mem, next)
	if err != nil || actErr != nil {
		return ctrl.Result{}, errors.Join(actErr, err)
	}
	return requeue(res, ev, wfr), nil
}

// requeue picks the soonest reason to look again that no watch event will bring.
func requeue(res ctrl.Result, ev *evaluation, wfr *v1alpha1.WorkflowRun) ctrl.Result {
	soonest := func(d time.Duration) {
		if d > 0 && (res.RequeueAfter == 0 || d < res.RequeueAfter) {
			res.RequeueAfter = d
		}
	}
	if len(ev.starts) > 0 {
		// The create budget ran out: go on at once.
		soonest(time.Millisecond)
	}
	soonest(ev.retryIn)
	if wfr.Spec.Cancel && ev.active > 0 {
		soonest(cancelRecheck)
	}
	if ev.outcome.phase != "" && wfr.Spec.TTLSecondsAfterFinished != nil {
		soonest(max(time.Duration(*wfr.Spec.TTLSecondsAfterFinished)*time.Second, time.Millisecond))
	}
	return res
}

// plan compiles the definition once per generation.
func (r *Reconciler) plan(mem *runMemory, wfr *v1alpha1.WorkflowRun) (*Plan, error) {
	if mem.generation != wfr.Generation {
		mem.plan, mem.planErr = Compile(wfr)
		mem.generation = wfr.Generation
	}
	return mem.plan, mem.planErr
}

func (r *Reconciler) evaluate(wfr *v1alpha1.WorkflowRun, plan *Plan, list []v1alpha1.StepRun, mem *runMemory) *evaluation {
	seen := make(map[string]bool, len(list))
	for i := range list {
		seen[list[i].Name] = true
	}
	kids := sortChildren(list, mem.pending(func(name string) bool { return seen[name] }, r.Clock.Now()))
	return evaluate(&input{run: wfr, plan: plan, kids: kids, clock: r.Clock, resolve: mem.resolve})
}

// resolve remembers resolutions: their inputs are final, and resolving a 5000-item fan-out
// on every reconcile would cost more than the rest of the reconcile.
func (rm *runMemory) resolve(sp *StepPlan, scope func() *template.Scope) *resolution {
	rm.mu.Lock()
	res := rm.resolutions[sp.Name]
	rm.mu.Unlock()
	if res != nil {
		return res
	}
	res = resolveStep(sp, scope())
	rm.mu.Lock()
	rm.resolutions[sp.Name] = res
	rm.mu.Unlock()
	return res
}

// startStepRuns creates StepRuns concurrently, CreateConcurrency at a time, until the
// create budget runs out; what is left starts in the next reconcile.
func (r *Reconciler) startStepRuns(ctx context.Context, wfr *v1alpha1.WorkflowRun, mem *runMemory, starts []start) (int, error) {
	if len(starts) == 0 {
		return 0, nil
	}
	deadline := time.Now().Add(r.CreateBudget)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures int
		first    error
	)
	slots := make(chan struct{}, r.CreateConcurrency)
	dispatched := 0
	for _, s := range starts {
		if dispatched > 0 && time.Now().After(deadline) {
			break
		}
		slots <- struct{}{}
		dispatched++
		wg.Go(func() {
			defer func() { <-slots }()
			if err := r.createStepRun(ctx, wfr, mem, s); err != nil {
				mu.Lock()
				failures++
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if failures > 0 {
		return dispatched, fmt.Errorf("%d of %d StepRun creates failed, the first: %w", failures, dispatched, first)
	}
	ctrl.LoggerFrom(ctx).V(1).Info("Started StepRuns", "count", dispatched, "left", len(starts)-dispatched)
	return dispatched, nil
}

func (r *Reconciler) createStepRun(ctx context.Context, wfr *v1alpha1.WorkflowRun, mem *runMemory, s start) error {
	sr := newStepRun(wfr, s)
	mem.expect(sr.Name, expectation{key: itemKey{step: s.step.Name, item: s.item}, attempt: s.attempt, at: r.Clock.Now()})
	err := r.Client.Create(ctx, sr, client.FieldOwner(v1alpha1.FieldManagerController))
	switch {
	case err == nil:
		return nil
	case apierrors.IsAlreadyExists(err):
		// Made by an earlier reconcile or a manager before a restart — or by someone else.
		live := &v1alpha1.StepRun{}
		if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(sr), live); err != nil {
			mem.unexpect(sr.Name)
			return fmt.Errorf("reading existing steprun %s: %w", sr.Name, err)
		}
		if metav1.IsControlledBy(live, wfr) {
			return nil
		}
		mem.unexpect(sr.Name)
		mem.itemFailed(s.step.Name, max(s.item, 0), fmt.Sprintf("StepRun name %s is taken by an object this run does not own", sr.Name))
		return nil
	case apierrors.IsInvalid(err), apierrors.IsForbidden(err) && !strings.Contains(err.Error(), "exceeded quota"):
		// The substituted spec was refused; trying again cannot help.
		mem.unexpect(sr.Name)
		mem.itemFailed(s.step.Name, max(s.item, 0), fmt.Sprintf("creating StepRun %s: %s", sr.Name, apiMessage(err)))
		return nil
	default:
		mem.unexpect(sr.Name)
		return fmt.Errorf("creating steprun %s: %w", sr.Name, err)
	}
}

// newStepRun builds one attempt of one item, owned by the run.
func newStepRun(wfr *v1alpha1.WorkflowRun, s start) *v1alpha1.StepRun {
	labels := map[string]string{
		v1alpha1.LabelWorkflowRun: podspec.LabelValue(wfr.Name),
		v1alpha1.LabelStep:        s.step.Name,
		v1alpha1.LabelAttempt:     strconv.Itoa(s.attempt),
	}
	if s.item >= 0 {
		labels[v1alpha1.LabelItem] = strconv.Itoa(s.item)
	}
	return &v1alpha1.StepRun{
		ObjectMeta: metav1.ObjectMeta{
			Name:            StepRunName(wfr.Name, s.step.Name, s.item, s.attempt),
			Namespace:       wfr.Namespace,
			Labels:          labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(wfr, v1alpha1.GroupVersion.WithKind("WorkflowRun"))},
		},
		// A copy: Create decodes the response into the object, and the resolved spec is reused
		// by retries.
		Spec: *s.spec.DeepCopy(),
	}
}

// stopPods deletes the Pods of unfinished StepRuns on cancel. Deleting the Pod, not the
// StepRun, keeps every StepRun as a record: its controller ends it Error/PodDeleted (or its
// executor reports first). A StepRun whose Pod did not exist yet is handled again when it
// changes, because its controller then makes the Pod.
func (r *Reconciler) stopPods(ctx context.Context, mem *runMemory, running []*v1alpha1.StepRun) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	slots := make(chan struct{}, r.CreateConcurrency)
	for _, sr := range running {
		mem.mu.Lock()
		done := mem.podDeletes[sr.UID] == sr.ResourceVersion
		mem.mu.Unlock()
		if done {
			continue
		}
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: sr.Namespace, Name: podspec.PodName(sr.Name)}}
			if err := r.Client.Delete(ctx, pod); client.IgnoreNotFound(err) != nil {
				mu.Lock()
				first = fmt.Errorf("deleting pod %s of a cancelled run: %w", pod.Name, err)
				mu.Unlock()
				return
			}
			mem.mu.Lock()
			mem.podDeletes[sr.UID] = sr.ResourceVersion
			mem.mu.Unlock()
		})
	}
	wg.Wait()
	return first
}

// writeStatus writes status at most once per reconcile, with a merge patch guarded by
// resourceVersion. Changes to counts and progress alone wait out StatusInterval; a lost race
// is requeued, not reported as an error.
func (r *Reconciler) writeStatus(ctx context.Context, wfr *v1alpha1.WorkflowRun, mem *runMemory, next v1alpha1.WorkflowRunStatus) (ctrl.Result, error) {
	if equality.Semantic.DeepEqual(wfr.Status, next) {
		return ctrl.Result{}, nil
	}
	now := time.Now()
	if !urgent(&wfr.Status, &next) {
		if wait := mem.lastStatusWrite.Add(r.StatusInterval).Sub(now); wait > 0 {
			return ctrl.Result{RequeueAfter: wait}, nil
		}
	}
	base := wfr.DeepCopy()
	wfr.Status = next
	patch := client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})
	err := r.Client.Status().Patch(ctx, wfr, patch, client.FieldOwner(v1alpha1.FieldManagerController))
	switch {
	case err == nil:
	case apierrors.IsConflict(err), apierrors.IsNotFound(err):
		return ctrl.Result{RequeueAfter: conflictRetry}, nil
	default:
		return ctrl.Result{}, fmt.Errorf("patching workflowrun status: %w", err)
	}
	mem.lastStatusWrite = now
	r.recordTransitions(ctx, base, wfr)
	return ctrl.Result{}, nil
}

// recordTransitions emits events for the transitions people care about: the run starting and
// ending, and a step failing.
func (r *Reconciler) recordTransitions(ctx context.Context, old, wfr *v1alpha1.WorkflowRun) {
	st := &wfr.Status
	if old.Status.Phase != st.Phase {
		log := ctrl.LoggerFrom(ctx)
		switch st.Phase {
		case v1alpha1.WorkflowRunRunning:
			r.Recorder.Eventf(wfr, nil, corev1.EventTypeNormal, "Started", "Start", "Started the first StepRun")
		case v1alpha1.WorkflowRunSucceeded, v1alpha1.WorkflowRunCancelled:
			r.Recorder.Eventf(wfr, nil, corev1.EventTypeNormal, st.Reason, "Finish", "%s (%s)", st.Phase, st.Progress)
			log.Info("Ended run", "phase", st.Phase, "progress", st.Progress)
		case v1alpha1.WorkflowRunFailed, v1alpha1.WorkflowRunError:
			r.Recorder.Eventf(wfr, nil, corev1.EventTypeWarning, st.Reason, "Finish", "%s", st.Message)
			log.Info("Ended run", "phase", st.Phase, "reason", st.Reason, "message", st.Message)
		}
	}
	was := map[string]v1alpha1.WorkflowStepPhase{}
	for _, s := range old.Status.Steps {
		was[s.Name] = s.Phase
	}
	for _, s := range st.Steps {
		if (s.Phase == v1alpha1.StepFailed || s.Phase == v1alpha1.StepError) && was[s.Name] != s.Phase {
			r.Recorder.Eventf(wfr, nil, corev1.EventTypeWarning, v1alpha1.ReasonStepFailed, "Run", "step %s: %s", s.Name, s.Message)
		}
	}
}

// expire deletes a finished run once ttlSecondsAfterFinished has passed; its StepRuns and Pods
// go with it through their owner references.
func (r *Reconciler) expire(ctx context.Context, wfr *v1alpha1.WorkflowRun) (ctrl.Result, error) {
	ttl := wfr.Spec.TTLSecondsAfterFinished
	if ttl == nil || wfr.Status.FinishedAt == nil {
		return ctrl.Result{}, nil
	}
	if wait := wfr.Status.FinishedAt.Add(time.Duration(*ttl) * time.Second).Sub(r.Clock.Now()); wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	err := r.Client.Delete(ctx, wfr, client.Preconditions{UID: &wfr.UID}, client.PropagationPolicy(metav1.DeletePropagationBackground))
	if client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, fmt.Errorf("deleting expired workflowrun: %w", err)
	}
	ctrl.LoggerFrom(ctx).Info("Deleted finished run after its TTL", "workflowRun", klog.KObj(wfr), "ttlSeconds", *ttl)
	return ctrl.Result{}, nil
}

func apiMessage(err error) string {
	if s, ok := err.(apierrors.APIStatus); ok && s.Status().Message != "" {
		return s.Status().Message
	}
	return err.Error()
}

// SetupIndexes registers the StepRun owner index the controller lists children through.
func SetupIndexes(ctx context.Context, indexer client.FieldIndexer) error {
	if err := indexer.IndexField(ctx, &v1alpha1.StepRun{}, OwnerUIDIndex, OwnerUID); err != nil {
		return fmt.Errorf("indexing stepruns by owner: %w", err)
	}
	return nil
}

// SetupWithManager registers the controller: WorkflowRuns and the StepRuns they own. Its own
// status writes do not trigger it (generation predicate); StepRun events do, batched in
// proportion to what the run costs to evaluate (stepRunEvents), and the work queue folds a
// burst of them into one reconcile.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.Recorder == nil {
		r.Recorder = mgr.GetEventRecorder("pnsflow-workflowrun")
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	if r.CreateConcurrency <= 0 {
		r.CreateConcurrency = DefaultCreateConcurrency
	}
	if r.CreateBudget <= 0 {
		r.CreateBudget = DefaultCreateBudget
	}
	if r.StatusInterval <= 0 {
		r.StatusInterval = DefaultStatusInterval
	}
	if r.MaxBatchDelay <= 0 {
		r.MaxBatchDelay = DefaultMaxBatchDelay
	}
	b := ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.WorkflowRun{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.StepRun{}, r.stepRunEvents())
	if r.Metrics != nil {
		// Sees every status change (For's predicate drops them) and enqueues nothing.
		b = b.Watches(&v1alpha1.WorkflowRun{}, r.Metrics.WorkflowRunHandler())
	}
	return b.WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		Named("workflowrun").
		Complete(r)
}
