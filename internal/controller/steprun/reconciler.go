// Package steprun holds the StepRun controller: it turns each StepRun into one Pod carrying the
// PNS executor, and ends the run itself only when the executor cannot report.
package steprun

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/metrics"
	"github.com/pnsflow/pnsflow/internal/podspec"
)

// conflictRetry is how soon a reconcile that lost a write race looks again; the winner's own
// watch event usually gets there first.
const conflictRetry = 250 * time.Millisecond

// Reconciler reconciles StepRuns.
type Reconciler struct {
	Client   client.Client
	Recorder events.EventRecorder
	Clock    clock.PassiveClock
	// Pod is how executor containers are built.
	Pod podspec.Config
	// Policy holds the grace periods Decide uses.
	Policy Policy
	// MaxConcurrentReconciles bounds parallel reconciles; creates are not serialised.
	MaxConcurrentReconciles int
	// APIReader reads what the informers do not hold (artifact repository ConfigMaps) or do not
	// hold yet (a Pod just created).
	APIReader client.Reader
	// ArtifactRepository is the default artifact repository's ConfigMap; empty means none.
	ArtifactRepository types.NamespacedName
	// Metrics, when set, records StepRuns as they finish.
	Metrics *metrics.Recorder

	identities *identities
	defaults   defaultRepository
	// created remembers the Pods this manager made (StepRun key → UID) until their run is
	// terminal, so a Pod deleted before its executor reported is recognised as deleted rather
	// than made again. The executor's first report records podName, which survives restarts.
	created sync.Map
	// evicted remembers, by StepRun key, why a Pod seen being evicted went, for when the Pod is
	// gone before the run is decided.
	evicted sync.Map
}

// The manager's RBAC, each rule beside the call that needs it (the executor identity's rules are
// in identity.go). The reviewed list is internal/manager/rbac_test.go; the reasons are in
// docs/architecture.md, "Security model".
// The informer behind For(StepRun): Reconcile's Get reads it, never the API.
// +kubebuilder:rbac:groups=workflows.pnsflow.dev,resources=stepruns,verbs=list;watch
// patchStatus: a merge patch guarded by resourceVersion; status is never read or replaced alone.
// +kubebuilder:rbac:groups=workflows.pnsflow.dev,resources=stepruns/status,verbs=patch
// createPod: blockOwnerDeletion on the Pod's owner reference (OwnerReferencesPermissionEnforcement).
// +kubebuilder:rbac:groups=workflows.pnsflow.dev,resources=stepruns/finalizers,verbs=update
// Owns(Pod)'s informer (list, watch; loadPod reads it), loadPod's read of a Pod the informer has
// not seen yet (get), createPod, finish's delete of a lingering Pod.
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;create;delete
// Recorder.Eventf in finish and recordExitCodeMismatch; client-go patches a repeated event's series.
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile reads like its steps: get → load the Pod → decide → act → write status once.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	sr := &v1alpha1.StepRun{}
	if err := r.Client.Get(ctx, req.NamespacedName, sr); err != nil {
		if apierrors.IsNotFound(err) {
			r.created.Delete(req.NamespacedName)
			r.evicted.Delete(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !sr.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	pod, err := r.loadPod(ctx, sr)
	if err != nil {
		return ctrl.Result{}, err
	}
	if sr.Status.Phase.IsTerminal() {
		r.created.Delete(req.NamespacedName)
		r.evicted.Delete(req.NamespacedName)
		return r.recordExitCodeMismatch(ctx, sr, pod)
	}
	if pod == nil {
		if msg, ok := r.evicted.LoadAndDelete(req.NamespacedName); ok {
			return r.finish(ctx, sr, nil, errorOutcome(v1alpha1.ReasonPodEvicted, msg.(string)))
		}
		if sr.Status.PodName != "" || r.madePod(sr) {
			return r.finish(ctx, sr, nil, errorOutcome(v1alpha1.ReasonPodDeleted,
				PodDeletedMessage(podspec.PodName(sr.Name))))
		}
		return r.createPod(ctx, sr)
	}
	// An evicted Pod may be gone before its run is decided: remember why it went.
	if msg, ok := EvictionMessage(pod); ok && !pod.DeletionTimestamp.IsZero() {
		r.evicted.Store(req.NamespacedName, msg)
	}
	if !metav1.IsControlledBy(pod, sr) {
		if wait := waitForEarlierPod(sr, pod, r.Clock.Now()); wait > 0 {
			return ctrl.Result{RequeueAfter: wait}, nil
		}
		return r.finish(ctx, sr, nil, errorOutcome(v1alpha1.ReasonInvalidPod,
			fmt.Sprintf("a pod named %s already exists and does not belong to this StepRun", pod.Name)))
	}
	if outcome, next := Decide(sr, pod, r.Clock.Now(), r.Policy); outcome != nil {
		return r.finish(ctx, sr, pod, outcome)
	} else {
		return ctrl.Result{RequeueAfter: next}, nil
	}
}

func (r *Reconciler) loadPod(ctx context.Context, sr *v1alpha1.StepRun) (*corev1.Pod, error) {
	pod := &corev1.Pod{}
	key := types.NamespacedName{Namespace: sr.Namespace, Name: podspec.PodName(sr.Name)}
	err := r.Client.Get(ctx, key, pod)
	if apierrors.IsNotFound(err) && r.APIReader != nil && r.expectsPod(sr) {
		// The cache lags behind creates (by a minute on a loaded node, and after a takeover):
		// only the API server can say a Pod the run should have is gone.
		err = r.APIReader.Get(ctx, key, pod)
	}
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("getting pod %s: %w", key.Name, err)
	}
	return pod, nil
}

// expectsPod: the run is not over and its Pod was made, by this manager or, as the executor's
// report says, by any.
func (r *Reconciler) expectsPod(sr *v1alpha1.StepRun) bool {
	return !sr.Status.Phase.IsTerminal() && (sr.Status.PodName != "" || r.madePod(sr))
}

func (r *Reconciler) createPod(ctx context.Context, sr *v1alpha1.StepRun) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	if msg, err := r.identities.check(ctx, sr); err != nil {
		return ctrl.Result{}, err
	} else if msg != "" {
		return r.finish(ctx, sr, nil, errorOutcome(v1alpha1.ReasonServiceAccountForbidden, msg))
	}
	cfg := r.Pod
	switch {
	case podspec.UsesArtifacts(&sr.Spec) || sr.Spec.ArtifactRepositoryRef != nil:
		repos := repositories{reader: r.APIReader, fallback: r.ArtifactRepository}
		repo, msg, err := repos.resolve(ctx, sr)
		if err != nil {
			return ctrl.Result{}, err
		} else if msg != "" {
			return r.finish(ctx, sr, nil, errorOutcome(v1alpha1.ReasonArtifactRepositoryUnavailable, msg))
		}
		cfg.Repository = repo
		if err := podspec.CheckInputKeys(sr, repo); err != nil {
			return r.finish(ctx, sr, nil, errorOutcome(v1alpha1.ReasonInvalidSpec, err.Error()))
		}
	case sr.Spec.ArchiveLogs == nil:
		// Only the default repository can say whether to archive this run's log.
		cfg.Repository = r.defaults.get(ctx, r.APIReader, r.ArtifactRepository, r.Clock.Now())
	}
	pod, err := podspec.Build(sr, cfg)
	if errors.Is(err, podspec.ErrInvalidStepRun) {
		return r.finish(ctx, sr, nil, errorOutcome(v1alpha1.ReasonInvalidPod, err.Error()))
	} else if err != nil {
		return ctrl.Result{}, err
	}
	err = r.Client.Create(ctx, pod, client.FieldOwner(v1alpha1.FieldManagerController))
	switch {
	case err == nil:
		log.V(1).Info("Created pod", "pod", klog.KObj(pod))
		r.created.Store(client.ObjectKeyFromObject(sr), sr.UID)
	case apierrors.IsAlreadyExists(err):
		// A previous reconcile created it and our cache has not seen it yet: never a second Pod.
		r.created.Store(client.ObjectKeyFromObject(sr), sr.UID)
	case apierrors.IsForbidden(err) && strings.Contains(err.Error(), "exceeded quota"):
		return ctrl.Result{}, fmt.Errorf("creating pod: %w", err)
	case apierrors.IsForbidden(err):
		if repaired, rerr := r.identities.repair(ctx, sr); rerr != nil {
			return ctrl.Result{}, rerr
		} else if repaired {
			return ctrl.Result{}, fmt.Errorf("creating pod: the executor's ServiceAccount was missing, made again: %w", err)
		}
		// Admission (e.g. Pod Security) refused it; retrying cannot help.
		return r.finish(ctx, sr, nil, errorOutcome(v1alpha1.ReasonPodForbidden, apiMessage(err)))
	case apierrors.IsInvalid(err):
		return r.finish(ctx, sr, nil, errorOutcome(v1alpha1.ReasonInvalidPod, apiMessage(err)))
	default:
		return ctrl.Result{}, fmt.Errorf("creating pod: %w", err)
	}
	// No status write: the run reads Pending from its schema default, and the executor's first
	// report records the Pod and its privileges. The happy path costs the controller one write.
	return ctrl.Result{}, nil
}

// madePod reports whether this manager created the run's Pod.
func (r *Reconciler) madePod(sr *v1alpha1.StepRun) bool {
	uid, ok := r.created.Load(client.ObjectKeyFromObject(sr))
	return ok && uid == sr.UID
}

// finish ends a run the executor cannot end, then removes a Pod that would otherwise linger
// (stuck pulling, past its deadline) holding node resources.
func (r *Reconciler) finish(ctx context.Context, sr *v1alpha1.StepRun, pod *corev1.Pod, o *Outcome) (ctrl.Result, error) {
	base := sr.DeepCopy()
	if o.ExitCode != nil {
		sr.Status.ExitCode = o.ExitCode
	}
	finished := r.Clock.Now()
	if t := plausible(sr, o.FinishedAt); t != nil {
		finished = *t
	}
	started := plausible(sr, o.StartedAt)
	if started == nil && sr.Status.StartedAt == nil && !o.MainNeverStarted {
		started = &finished
	}
	sr.Status.SetTimes(started, &finished)
	sr.Status.Timings = v1alpha1.MergeTimings(sr.Status.Timings, stageTimings(pod, plausible(sr, o.StartedAt), plausible(sr, o.FinishedAt)))
	sr.Status.ExecutorRestarts = max(sr.Status.ExecutorRestarts, o.ExecutorRestarts)
	if o.MainNeverStarted {
		meta.SetStatusCondition(&sr.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionMainStarted,
			Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonMainNeverStarted, ObservedGeneration: sr.Generation,
			Message: "main never started: the run had no side effects and is safe to retry"})
	}
	if pod != nil {
		sr.Status.PodName = pod.Name
	} else if o.Reason == v1alpha1.ReasonPodDeleted {
		sr.Status.PodName = podspec.PodName(sr.Name)
	}
	sr.Status.ObservedGeneration = sr.Generation
	sr.Status.SetPhase(o.Phase, o.Reason, o.Message, sr.Generation, finished)
	if res, err := r.patchStatus(ctx, sr, base); err != nil || res.RequeueAfter > 0 {
		return res, err
	}
	var related runtime.Object // a nil *Pod in the interface would be dereferenced
	if pod != nil {
		related = pod
	}
	r.Recorder.Eventf(sr, related, corev1.EventTypeWarning, o.Reason, "Finish", "%s", sr.Status.Message)
	ctrl.LoggerFrom(ctx).Info("Ended run", "phase", o.Phase, "reason", o.Reason)
	if pod != nil && pod.DeletionTimestamp.IsZero() && pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed {
		if err := r.Client.Delete(ctx, pod); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, fmt.Errorf("deleting pod of an ended run: %w", err)
		}
	}
	return ctrl.Result{}, nil
}

// stageTimings are the stage times the controller knows when it ends a run: the Pod's, and
// main's from the kubelet. It records no report time: that stage is the executor's.
func stageTimings(pod *corev1.Pod, mainStarted, mainExited *time.Time) v1alpha1.StepRunTimings {
	var t v1alpha1.StepRunTimings
	if pod != nil {
		t = v1alpha1.PodTimings(pod)
	}
	return t.WithMain(ptr.Deref(mainStarted, time.Time{}), ptr.Deref(mainExited, time.Time{}))
}

// plausible drops a kubelet timestamp that cannot belong to this run (see
// v1alpha1.PlausibleRunTime).
func plausible(sr *v1alpha1.StepRun, t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	return v1alpha1.PlausibleRunTime(*t, sr.CreationTimestamp.Time)
}

// recordExitCodeMismatch flags a terminal run whose executor and kubelet disagree on main's exit
// code: two independent witnesses, and the user should know they differ.
func (r *Reconciler) recordExitCodeMismatch(ctx context.Context, sr *v1alpha1.StepRun, pod *corev1.Pod) (ctrl.Result, error) {
	kubelet, mismatch := ExitCodeMismatch(sr, pod)
	if !mismatch || meta.IsStatusConditionTrue(sr.Status.Conditions, v1alpha1.ConditionExitCodeMismatch) {
		return ctrl.Result{}, nil
	}
	base := sr.DeepCopy()
	msg := fmt.Sprintf("the executor reported exit code %d, kubelet reported %d", *sr.Status.ExitCode, kubelet)
	meta.SetStatusCondition(&sr.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionExitCodeMismatch,
		Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonExitCodeMismatch, Message: msg, ObservedGeneration: sr.Generation})
	res, err := r.patchStatus(ctx, sr, base)
	if err == nil && res.RequeueAfter == 0 {
		r.Recorder.Eventf(sr, pod, corev1.EventTypeWarning, v1alpha1.ReasonExitCodeMismatch, "Verify", "%s", msg)
	}
	return res, err
}

// patchStatus writes status with a merge patch guarded by resourceVersion, so it never lands on
// top of an executor report it has not seen. Losing that race is normal, not an error.
func (r *Reconciler) patchStatus(ctx context.Context, sr, base *v1alpha1.StepRun) (ctrl.Result, error) {
	patch := client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})
	err := r.Client.Status().Patch(ctx, sr, patch, client.FieldOwner(v1alpha1.FieldManagerController))
	switch {
	case err == nil:
		return ctrl.Result{}, nil
	case apierrors.IsConflict(err), apierrors.IsNotFound(err):
		return ctrl.Result{RequeueAfter: conflictRetry}, nil
	case apierrors.IsInvalid(err) && strings.Contains(err.Error(), "terminal phase"):
		// The executor ended the run between our read and our write.
		return ctrl.Result{RequeueAfter: conflictRetry}, nil
	default:
		return ctrl.Result{}, fmt.Errorf("patching steprun status: %w", err)
	}
}

func apiMessage(err error) string {
	if s, ok := err.(apierrors.APIStatus); ok && s.Status().Message != "" {
		return s.Status().Message
	}
	return err.Error()
}

// SetupWithManager registers the controller: StepRuns and the Pods they own.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.identities = &identities{client: mgr.GetClient()}
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.Recorder == nil {
		r.Recorder = mgr.GetEventRecorder("pnsflow-steprun")
	}
	b := ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.StepRun{}).
		Owns(&corev1.Pod{})
	if r.Metrics != nil {
		b = b.Watches(&v1alpha1.StepRun{}, r.Metrics.StepRunHandler()) // records, enqueues nothing
	}
	return b.WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		Named("steprun").
		Complete(r)
}
