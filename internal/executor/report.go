package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

// ErrAlreadyTerminal is returned when the StepRun already has a terminal phase: nothing is
// written, since a terminal phase never changes.
var ErrAlreadyTerminal = errors.New("the StepRun's phase is already terminal")

// Outcome is the terminal status the executor reports.
type Outcome struct {
	Phase    v1alpha1.StepRunPhase
	Reason   string
	Message  string
	ExitCode *int32
	// StartedAt and FinishedAt are main's, zero when unknown.
	StartedAt  time.Time
	FinishedAt time.Time
	// Duration is how long main ran, negative when unknown.
	Duration   time.Duration
	Parameters []v1alpha1.OutputParameterValue
	Artifacts  []v1alpha1.ArtifactStatus
	Result     *string
	// MainNeverStarted: the runtime could not start main, so main cannot have done anything.
	MainNeverStarted bool
}

// Decide maps main's termination, the collected outputs and the log's tail to the terminal
// outcome. measured is main's run time as the executor measured it (finer than the kubelet's
// one-second timestamps), zero when it did not. The exit code is always recorded.
//
// Order: the deadline, then OOMKilled, then a non-zero exit, then the outputs' failure.
func Decide(t Termination, c Collected, result *string, measured time.Duration) Outcome {
	code := t.ExitCode
	o := Outcome{
		ExitCode:   &code,
		StartedAt:  t.StartedAt,
		FinishedAt: t.FinishedAt,
		Duration:   -1,
		Parameters: c.Parameters,
		Artifacts:  c.Artifacts,
		Result:     result,
	}
	if !t.StartedAt.IsZero() && !t.FinishedAt.IsZero() && !t.FinishedAt.Before(t.StartedAt) {
		o.Duration = t.FinishedAt.Sub(t.StartedAt)
	}
	// The executor's measure is finer, but only trusted where it agrees with the kubelet's
	// one-second timestamps (it would not if a child of main had been caught instead of main).
	if measured > 0 && (o.Duration < 0 || (measured-o.Duration).Abs() <= 2*time.Second) {
		o.Duration = measured
	}
	startFailure, neverStarted := v1alpha1.MainStartFailure(t.Reason, t.Message)
	switch {
	case neverStarted:
		o.Phase, o.Reason, o.MainNeverStarted = v1alpha1.StepRunError, v1alpha1.ReasonMainStartFailed, true
		o.StartedAt, o.FinishedAt, o.Duration = time.Time{}, time.Time{}, -1
		o.Message = startFailure
	case killedByDeadline(t):
		o.Phase, o.Reason = v1alpha1.StepRunFailed, v1alpha1.ReasonDeadlineExceeded
		o.Message = fmt.Sprintf("main ran past the Pod's activeDeadlineSeconds and was stopped (exit code %d)", code)
	case t.Reason == v1alpha1.ReasonOOMKilled:
		o.Phase, o.Reason = v1alpha1.StepRunError, v1alpha1.ReasonOOMKilled
		o.Message = fmt.Sprintf("main was killed for running out of memory (exit code %d)", code)
	case code != 0:
		o.Phase, o.Reason = v1alpha1.StepRunFailed, v1alpha1.ReasonExitCode
		o.Message = fmt.Sprintf("main exited with code %d", code)
	case c.Failure != nil:
		o.Phase, o.Reason, o.Message = c.Failure.Phase, c.Failure.Reason, c.Failure.Message
	default:
		o.Phase, o.Reason = v1alpha1.StepRunSucceeded, v1alpha1.ReasonSucceeded
		o.Message = "main exited with code 0"
	}
	o.Message = truncateUTF8(o.Message, v1alpha1.MaxMessageBytes)
	return o
}

// killedByDeadline: the kubelet set the Pod's reason DeadlineExceeded, and main did not finish
// cleanly before the deadline (the deadline may pass while the executor is still collecting).
func killedByDeadline(t Termination) bool {
	if t.PodReason != v1alpha1.ReasonDeadlineExceeded {
		return false
	}
	finishedInTime := t.ExitCode == 0 && !t.DeadlineAt.IsZero() && !t.FinishedAt.IsZero() &&
		t.FinishedAt.Before(t.DeadlineAt)
	return !finishedInTime
}

// jsonPatchOp is one operation of a JSON patch (RFC 6902).
type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// reportPatch is the JSON patch of the status subresource that writes st's fields, after a test
// that the StepRun is still the one with uid: a StepRun deleted and made again under the same
// name is another run, and the API server refuses the whole patch (422). It needs no read first
// and no resourceVersion: only the executor writes a StepRun's status until it is terminal, and
// the schema refuses any change to a terminal phase, whoever tries.
func reportPatch(uid types.UID, st patchStatus) ([]byte, error) {
	raw, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, err
	}
	ops := make([]jsonPatchOp, 0, len(fields)+1)
	if uid != "" {
		ops = append(ops, jsonPatchOp{Op: "test", Path: "/metadata/uid", Value: uid})
	}
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		ops = append(ops, jsonPatchOp{Op: "add", Path: "/status/" + k, Value: fields[k]})
	}
	return json.Marshal(ops)
}

// patchStatus holds the fields the executor owns. It also sends podName and
// observedGeneration: on the happy path no one else writes the StepRun's status.
type patchStatus struct {
	Phase              v1alpha1.StepRunPhase    `json:"phase"`
	PodName            string                   `json:"podName,omitempty"`
	ObservedGeneration int64                    `json:"observedGeneration,omitempty"`
	ExitCode           *int32                   `json:"exitCode,omitempty"`
	StartedAt          *metav1.Time             `json:"startedAt,omitempty"`
	FinishedAt         *metav1.Time             `json:"finishedAt,omitempty"`
	Duration           string                   `json:"duration,omitempty"`
	Reason             string                   `json:"reason"`
	Message            string                   `json:"message"`
	Outputs            *v1alpha1.StepRunOutputs `json:"outputs,omitempty"`
	ExecutorRestarts   int32                    `json:"executorRestarts,omitempty"`
	Timings            *v1alpha1.StepRunTimings `json:"timings,omitempty"`
	// Conditions are sent whole (the patch's add replaces the list): the ones known, with
	// Succeeded set, so any others already recorded are kept.
	Conditions []metav1.Condition `json:"conditions"`
}

// RunInfo is what the executor knows of its run beyond the StepRun itself, from its config.
type RunInfo struct {
	Pod       string
	Privilege executorconfig.Privilege
	// ExecutorRestarts is how often the kubelet restarted the executor, when the report is made.
	ExecutorRestarts int32
	// Timings are the stage times known when the report is made.
	Timings v1alpha1.StepRunTimings
}

// RunInfoOf takes the RunInfo from the executor's config.
func RunInfoOf(c executorconfig.Config) RunInfo {
	return RunInfo{Pod: c.Pod, Privilege: c.Privilege}
}

// withPhase returns current's conditions with the Succeeded condition set to mirror phase
// (v1alpha1's SetPhase), the ExecutorPrivileged and MainStarted conditions recorded, and the
// message as SetPhase caps it.
func withPhase(current *v1alpha1.StepRun, info RunInfo, phase v1alpha1.StepRunPhase, reason, msg string, mainStarted bool, now time.Time) (string, []metav1.Condition) {
	st := current.Status.DeepCopy()
	st.SetPhase(phase, reason, msg, current.Generation, now)
	started := metav1.Condition{Type: v1alpha1.ConditionMainStarted, Status: metav1.ConditionTrue,
		Reason: v1alpha1.ReasonMainStarted, Message: "main was started",
		ObservedGeneration: current.Generation, LastTransitionTime: metav1.NewTime(now)}
	if !mainStarted {
		started.Status, started.Reason, started.Message = metav1.ConditionFalse, v1alpha1.ReasonMainNeverStarted, "main never started"
	}
	meta.SetStatusCondition(&st.Conditions, started)
	if p := info.Privilege; p.Reason != "" {
		cond := metav1.Condition{Type: v1alpha1.ConditionExecutorPrivileged, Status: metav1.ConditionFalse,
			Reason: p.Reason, Message: p.Message, ObservedGeneration: current.Generation, LastTransitionTime: metav1.NewTime(now)}
		if p.Privileged {
			cond.Status = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, cond)
	}
	return st.Message, st.Conditions
}

// timePtr is t for the status of current, nil when t is unknown or impossible. Before the first
// report the StepRun's creation is not known; its Pod's, a little later, bounds as well.
func timePtr(current *v1alpha1.StepRun, info RunInfo, t time.Time) *metav1.Time {
	created := current.CreationTimestamp.Time
	if created.IsZero() && info.Timings.PodCreated != nil {
		created = info.Timings.PodCreated.Time
	}
	p := v1alpha1.PlausibleRunTime(t, created)
	if p == nil {
		return nil
	}
	mt := metav1.NewTime(*p)
	return &mt
}

// RunningPatch is the patch that reports main running since startedAt, over current: what the
// executor knows of the StepRun.
func RunningPatch(current *v1alpha1.StepRun, info RunInfo, startedAt, now time.Time) ([]byte, error) {
	msg, conds := withPhase(current, info, v1alpha1.StepRunRunning, v1alpha1.ReasonRunning, "main is running", true, now)
	return reportPatch(current.UID, patchStatus{
		Phase:              v1alpha1.StepRunRunning,
		PodName:            info.Pod,
		ObservedGeneration: current.Generation,
		StartedAt:          timePtr(current, info, startedAt),
		Reason:             v1alpha1.ReasonRunning,
		Message:            msg,
		Conditions:         conds,
		ExecutorRestarts:   info.ExecutorRestarts,
		Timings:            v1alpha1.MergeTimings(current.Status.Timings, info.Timings),
	})
}

// TerminalPatch is the patch that reports o over current. The Succeeded condition mirrors the
// phase in the same patch, so the two never disagree.
func TerminalPatch(current *v1alpha1.StepRun, info RunInfo, o Outcome, now time.Time) ([]byte, error) {
	if !o.Phase.IsTerminal() {
		return nil, fmt.Errorf("reporting phase %q: not a terminal phase", o.Phase)
	}
	msg, conds := withPhase(current, info, o.Phase, o.Reason, o.Message, !o.MainNeverStarted, now)
	started, finished := timePtr(current, info, o.StartedAt), timePtr(current, info, o.FinishedAt)
	duration := v1alpha1.FormatDuration(o.Duration)
	if started == nil || finished == nil {
		duration = "" // a duration between times that were dropped as impossible is not believed
	}
	st := patchStatus{
		Phase:              o.Phase,
		PodName:            info.Pod,
		ObservedGeneration: current.Generation,
		ExitCode:           o.ExitCode,
		StartedAt:          started,
		FinishedAt:         finished,
		Duration:           duration,
		Reason:             o.Reason,
		Message:            msg,
		Conditions:         conds,
		ExecutorRestarts:   info.ExecutorRestarts,
	}
	timings := info.Timings
	timings.Reported = v1alpha1.MicroTimeOf(now)
	st.Timings = v1alpha1.MergeTimings(current.Status.Timings, timings)
	if len(o.Parameters) > 0 || len(o.Artifacts) > 0 || o.Result != nil {
		st.Outputs = &v1alpha1.StepRunOutputs{Parameters: o.Parameters, Artifacts: o.Artifacts, Result: o.Result}
	}
	return reportPatch(current.UID, st)
}

// Reporter patches the StepRun's status subresource as field manager pns-executor. It reads the
// StepRun only when it must: each report is built over what the last one's answer returned (the
// first over the status every StepRun starts with), so a run costs the API server two patches and
// no read.
type Reporter struct {
	client    rest.Interface
	namespace string
	name      string
	// UID, when set, must be the StepRun's: a StepRun deleted and made again under the same
	// name is another run, and is not written to.
	UID string
	// Info is written along with every report: the Pod's name and the executor's privileges.
	Info RunInfo
	// Restarts, when set, tells each report how often the kubelet has restarted the executor.
	Restarts func() int32
	// Timings, when set, gives each report the stage times known then.
	Timings func() v1alpha1.StepRunTimings
	// Now is the clock of the conditions' lastTransitionTime.
	Now func() time.Time
	// MaxConflicts bounds the re-reads after a refused report (422, 409); MaxRetries the retries
	// of transient errors (timeouts, 429, 5xx, network), with backoff from 200 ms to 5 s.
	MaxConflicts int
	MaxRetries   int

	mu sync.Mutex
	// known is the StepRun as the last patch's answer (or a read) showed it; nil before any.
	known *v1alpha1.StepRun
}

// NewReporter returns a reporter to StepRun ns/name.
func NewReporter(cfg *rest.Config, ns, name string) (*Reporter, error) {
	c, err := newStepRunClient(cfg)
	if err != nil {
		return nil, err
	}
	return NewReporterForClient(c, ns, name), nil
}

// NewReporterForClient returns a reporter using a workflows.pnsflow.dev/v1alpha1 REST client.
func NewReporterForClient(c rest.Interface, ns, name string) *Reporter {
	// 20 retries back off for about 80 s: the executor's whole grace after SIGTERM, so a report
	// outlasts an API server outage as long as the grace does.
	return &Reporter{client: c, namespace: ns, name: name, Now: time.Now, MaxConflicts: 10, MaxRetries: 20}
}

// Get reads the StepRun.
func (r *Reporter) Get(ctx context.Context) (*v1alpha1.StepRun, error) {
	body, err := r.client.Get().Namespace(r.namespace).Resource("stepruns").Name(r.name).Do(ctx).Raw()
	if err != nil {
		return nil, fmt.Errorf("getting StepRun %s/%s: %w", r.namespace, r.name, err)
	}
	var sr v1alpha1.StepRun
	if err := json.Unmarshal(body, &sr); err != nil {
		return nil, fmt.Errorf("decoding StepRun %s/%s: %w", r.namespace, r.name, err)
	}
	if r.UID != "" && string(sr.UID) != r.UID {
		return nil, fmt.Errorf("StepRun %s/%s has UID %s, not %s: it was replaced", r.namespace, r.name, sr.UID, r.UID)
	}
	return &sr, nil
}

// ReportRunning patches phase Running with main's start time.
func (r *Reporter) ReportRunning(ctx context.Context, startedAt time.Time) error {
	return r.update(ctx, func(cur *v1alpha1.StepRun) ([]byte, error) {
		return RunningPatch(cur, r.info(), startedAt, r.Now())
	})
}

// ReportTerminal patches the terminal outcome.
func (r *Reporter) ReportTerminal(ctx context.Context, o Outcome) error {
	return r.update(ctx, func(cur *v1alpha1.StepRun) ([]byte, error) {
		return TerminalPatch(cur, r.info(), o, r.Now())
	})
}

func (r *Reporter) info() RunInfo {
	info := r.Info
	if r.Restarts != nil {
		info.ExecutorRestarts = r.Restarts()
	}
	if r.Timings != nil {
		info.Timings = r.Timings()
	}
	return info
}

// current is what the next report is built over: the StepRun as last seen; before any report,
// the status every StepRun starts with (Pending, generation 1: the spec never changes), unless
// the executor was restarted, when an earlier one may have reported: then it is read.
func (r *Reporter) current(ctx context.Context) (*v1alpha1.StepRun, error) {
	r.mu.Lock()
	known := r.known
	r.mu.Unlock()
	if known != nil {
		return known.DeepCopy(), nil
	}
	if r.Restarts != nil && r.Restarts() > 0 {
		return r.reread(ctx)
	}
	sr := &v1alpha1.StepRun{}
	sr.Name, sr.Namespace, sr.UID, sr.Generation = r.name, r.namespace, types.UID(r.UID), 1
	sr.Status.Phase = v1alpha1.StepRunPending
	return sr, nil
}

// reread reads the StepRun and remembers it.
func (r *Reporter) reread(ctx context.Context) (*v1alpha1.StepRun, error) {
	sr, err := r.Get(ctx)
	if err != nil {
		return nil, err
	}
	r.remember(sr)
	return sr.DeepCopy(), nil
}

func (r *Reporter) remember(sr *v1alpha1.StepRun) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.known = sr
}

// update builds a patch over the StepRun as last seen and sends it. A refusal (422: the UID test
// failed, or the schema refused the change because the phase is already terminal) or a 409 is
// answered by reading the StepRun: a replaced or terminal run ends the report, anything else is
// tried again over what was read, a bounded number of times. Transient errors back off and try
// again, also bounded.
func (r *Reporter) update(ctx context.Context, build func(*v1alpha1.StepRun) ([]byte, error)) error {
	log := logr.FromContextOrDiscard(ctx)
	backoff := 200 * time.Millisecond
	conflicts, retries := 0, 0
	for {
		err := func() error {
			cur, err := r.current(ctx)
			if err != nil {
				return err
			}
			if cur.Status.Phase.IsTerminal() {
				return fmt.Errorf("%w: %s", ErrAlreadyTerminal, cur.Status.Phase)
			}
			body, err := build(cur)
			if err != nil {
				return err
			}
			return r.patch(ctx, body)
		}()
		switch {
		case err == nil:
			return nil
		case apierrors.IsConflict(err) || apierrors.IsInvalid(err) || isUnprocessable(err):
			conflicts++
			if conflicts > r.MaxConflicts {
				return fmt.Errorf("patching StepRun status: still refused after %d tries: %w", conflicts, err)
			}
			log.V(1).Info("The report was refused; reading the StepRun", "refusals", conflicts, "error", err.Error())
			if _, rerr := r.reread(ctx); rerr != nil {
				if retriable(ctx, rerr) {
					r.forget()
				} else {
					return fmt.Errorf("%w (the report was refused: %w)", rerr, err)
				}
			}
		case retriable(ctx, err):
			retries++
			if retries > r.MaxRetries {
				return fmt.Errorf("patching StepRun status: giving up after %d tries: %w", retries, err)
			}
			log.Info("Patching the StepRun failed; retrying", "error", err.Error(), "backoff", backoff)
			if !sleepCtx(ctx, backoff) {
				return fmt.Errorf("patching StepRun status: %w (last error: %w)", ctx.Err(), err)
			}
			backoff = min(2*backoff, 5*time.Second)
		default:
			return err
		}
	}
}

// forget drops what the reporter knows, so the next report reads the StepRun first.
func (r *Reporter) forget() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.known = nil
}

// patch sends a report and remembers the StepRun the API server answers with.
func (r *Reporter) patch(ctx context.Context, body []byte) error {
	raw, err := r.client.Patch(types.JSONPatchType).Namespace(r.namespace).Resource("stepruns").
		Name(r.name).SubResource("status").
		Param("fieldManager", v1alpha1.FieldManagerExecutor).
		Body(body).Do(ctx).Raw()
	if err != nil {
		return fmt.Errorf("patching StepRun %s/%s status: %w", r.namespace, r.name, err)
	}
	sr, err := decodeState(raw)
	if err != nil || sr.UID == "" {
		r.forget() // written, but what it looks like now is unknown: the next report reads it
		return nil
	}
	r.remember(sr)
	return nil
}

// decodeState decodes what the next report builds on, metadata and status, and not the spec:
// decoding into the whole StepRun first made encoding/json analyse every type under the spec (the
// Pod template's), 2–3 ms of CPU per executor on the 2-core dev VM.
func decodeState(raw []byte) (*v1alpha1.StepRun, error) {
	var state struct {
		Metadata metav1.ObjectMeta      `json:"metadata"`
		Status   v1alpha1.StepRunStatus `json:"status"`
	}
	if err := json.Unmarshal(raw, &state); err != nil {
		return nil, err
	}
	return &v1alpha1.StepRun{ObjectMeta: state.Metadata, Status: state.Status}, nil
}

// isUnprocessable: 422 without a StatusReason the client maps (a JSON patch's failed test).
func isUnprocessable(err error) bool {
	var status apierrors.APIStatus
	return errors.As(err, &status) && status.Status().Code == http.StatusUnprocessableEntity
}

// retriable reports whether err may pass by itself: API timeouts, throttling, server errors, and
// errors that never reached the API (the network), unless ctx ended.
func retriable(ctx context.Context, err error) bool {
	if ctx.Err() != nil || errors.Is(err, ErrAlreadyTerminal) {
		return false
	}
	if apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) {
		return true
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return status.Status().Code >= 500
	}
	var urlErr *url.Error
	var netErr net.Error
	return errors.As(err, &urlErr) || errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
