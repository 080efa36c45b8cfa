package executor

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

var (
	t0 = time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	t1 = t0.Add(62 * time.Second)
)

func TestDecide(t *testing.T) {
	result := ptr("tail")
	params := []v1alpha1.OutputParameterValue{{Name: "a", Value: "1"}}
	missing := &Failure{Phase: v1alpha1.StepRunFailed, Reason: v1alpha1.ReasonOutputMissing, Message: "output a is missing"}
	lost := &Failure{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonOutputsLost, Message: "output a is lost"}
	term := func(code int32, reason string) Termination {
		return Termination{ExitCode: code, Reason: reason, StartedAt: t0, FinishedAt: t1}
	}
	deadline := func(code int32, finished time.Time) Termination {
		tt := term(code, "Error")
		tt.FinishedAt = finished
		tt.PodReason = v1alpha1.ReasonDeadlineExceeded
		tt.DeadlineAt = t0.Add(30 * time.Second)
		return tt
	}
	tests := []struct {
		name      string
		term      Termination
		collected Collected
		want      Outcome
	}{{
		name:      "exit 0, outputs collected",
		term:      term(0, "Completed"),
		collected: Collected{Parameters: params},
		want: Outcome{Phase: v1alpha1.StepRunSucceeded, Reason: v1alpha1.ReasonSucceeded,
			Message: "main exited with code 0", ExitCode: ptr[int32](0)},
	}, {
		name: "exit 3",
		term: term(3, "Error"),
		want: Outcome{Phase: v1alpha1.StepRunFailed, Reason: v1alpha1.ReasonExitCode,
			Message: "main exited with code 3", ExitCode: ptr[int32](3)},
	}, {
		name:      "a non-zero exit outranks an output failure",
		term:      term(1, "Error"),
		collected: Collected{Parameters: params, Failure: missing},
		want: Outcome{Phase: v1alpha1.StepRunFailed, Reason: v1alpha1.ReasonExitCode,
			Message: "main exited with code 1", ExitCode: ptr[int32](1)},
	}, {
		name: "OOMKilled is an Error",
		term: term(137, "OOMKilled"),
		want: Outcome{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonOOMKilled,
			Message: "main was killed for running out of memory (exit code 137)", ExitCode: ptr[int32](137)},
	}, {
		name: "deadline exceeded",
		term: deadline(137, t0.Add(31*time.Second)),
		want: Outcome{Phase: v1alpha1.StepRunFailed, Reason: v1alpha1.ReasonDeadlineExceeded,
			Message:  "main ran past the Pod's activeDeadlineSeconds and was stopped (exit code 137)",
			ExitCode: ptr[int32](137)},
	}, {
		name: "deadline exceeded, main exited 0 on SIGTERM at the deadline",
		term: deadline(0, t0.Add(30*time.Second)),
		want: Outcome{Phase: v1alpha1.StepRunFailed, Reason: v1alpha1.ReasonDeadlineExceeded,
			Message:  "main ran past the Pod's activeDeadlineSeconds and was stopped (exit code 0)",
			ExitCode: ptr[int32](0)},
	}, {
		name:      "deadline passed while collecting, main had succeeded before it",
		term:      deadline(0, t0.Add(20*time.Second)),
		collected: Collected{Parameters: params},
		want: Outcome{Phase: v1alpha1.StepRunSucceeded, Reason: v1alpha1.ReasonSucceeded,
			Message: "main exited with code 0", ExitCode: ptr[int32](0)},
	}, {
		name: "deadline outranks OOMKilled",
		term: func() Termination { tt := deadline(137, t1); tt.Reason = "OOMKilled"; return tt }(),
		want: Outcome{Phase: v1alpha1.StepRunFailed, Reason: v1alpha1.ReasonDeadlineExceeded,
			Message:  "main ran past the Pod's activeDeadlineSeconds and was stopped (exit code 137)",
			ExitCode: ptr[int32](137)},
	}, {
		name:      "output missing",
		term:      term(0, "Completed"),
		collected: Collected{Parameters: params, Failure: missing},
		want: Outcome{Phase: v1alpha1.StepRunFailed, Reason: v1alpha1.ReasonOutputMissing,
			Message: "output a is missing", ExitCode: ptr[int32](0)},
	}, {
		name:      "outputs lost is an Error, exit code kept",
		term:      term(0, "Completed"),
		collected: Collected{Failure: lost},
		want: Outcome{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonOutputsLost,
			Message: "output a is lost", ExitCode: ptr[int32](0)},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Decide(tt.term, tt.collected, result, 0)
			tt.want.StartedAt, tt.want.FinishedAt = tt.term.StartedAt, tt.term.FinishedAt
			tt.want.Duration = tt.term.FinishedAt.Sub(tt.term.StartedAt)
			tt.want.Parameters = tt.collected.Parameters
			tt.want.Result = result
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Decide (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecideMainTheRuntimeCouldNotStart(t *testing.T) {
	for _, reason := range []string{"StartError", "ContainerCannotRun"} {
		t.Run(reason, func(t *testing.T) {
			// What the kubelet reports for a container whose runc create failed.
			term := Termination{ExitCode: 128, Reason: reason, Message: "runc create failed", StartedAt: time.Unix(0, 0), FinishedAt: t1}
			got := Decide(term, Collected{Parameters: []v1alpha1.OutputParameterValue{{Name: "a", Value: "1"}}}, nil, 0)
			want := Outcome{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonMainStartFailed,
				Message:  "the container runtime could not start main (" + reason + "): runc create failed",
				ExitCode: ptr[int32](128), Duration: -1, MainNeverStarted: true,
				Parameters: []v1alpha1.OutputParameterValue{{Name: "a", Value: "1"}}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Decide (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecideDuration(t *testing.T) {
	term := Termination{StartedAt: t0, FinishedAt: t0.Add(time.Second)}
	if got := Decide(term, Collected{}, nil, 350*time.Millisecond).Duration; got != 350*time.Millisecond {
		t.Errorf("measured duration = %v, want the executor's measure", got)
	}
	if got := Decide(term, Collected{}, nil, 0).Duration; got != time.Second {
		t.Errorf("duration = %v, want the Pod's", got)
	}
	if got := Decide(Termination{FinishedAt: t0}, Collected{}, nil, 0).Duration; got >= 0 {
		t.Errorf("duration without startedAt = %v, want unknown", got)
	}
	if got := Decide(term, Collected{}, nil, time.Minute).Duration; got != time.Second {
		t.Errorf("duration = %v, want the Pod's when the measure disagrees with it", got)
	}
	if got := Decide(Termination{}, Collected{}, nil, time.Minute).Duration; got != time.Minute {
		t.Errorf("duration = %v, want the measure when the Pod has no times", got)
	}
}

func stepRunWith(rv string, phase v1alpha1.StepRunPhase, conds ...metav1.Condition) *v1alpha1.StepRun {
	sr := &v1alpha1.StepRun{}
	sr.Name, sr.Namespace, sr.UID, sr.ResourceVersion, sr.Generation = "sr", "ns", types.UID("uid-1"), rv, 2
	sr.CreationTimestamp = metav1.NewTime(t0.Add(-time.Second))
	sr.Status.Phase = phase
	sr.Status.Conditions = conds
	return sr
}

var privileged = metav1.Condition{
	Type: v1alpha1.ConditionExecutorPrivileged, Status: metav1.ConditionFalse,
	Reason: v1alpha1.ReasonUIDAndGIDKnown, Message: "runs as main's UID/GID", LastTransitionTime: metav1.NewTime(t0),
}

// decodeJSON turns a report's JSON patch into the object it writes, for comparison: each
// "test" op's value under its path, each "add" op's value under its own. Only tests come first,
// only of metadata; only adds follow, only of status fields.
func decodeJSON(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var ops []struct {
		Op, Path string
		Value    any
	}
	if err := json.Unmarshal(b, &ops); err != nil {
		t.Fatalf("patch is not a JSON patch: %v: %s", err, b)
	}
	m := map[string]any{}
	adding := false
	for _, op := range ops {
		parent, field, ok := strings.Cut(strings.TrimPrefix(op.Path, "/"), "/")
		if !ok || strings.Contains(field, "/") {
			t.Fatalf("op %+v: want /<metadata|status>/<field>", op)
		}
		switch {
		case op.Op == "test" && !adding && parent == "metadata":
		case op.Op == "add" && parent == "status":
			adding = true
		default:
			t.Fatalf("op %+v out of place in %s", op, b)
		}
		if m[parent] == nil {
			m[parent] = map[string]any{}
		}
		m[parent].(map[string]any)[field] = op.Value
	}
	return m
}

func mainStartedCond(status, reason, message, at string) map[string]any {
	return map[string]any{"type": "MainStarted", "status": status, "reason": reason, "message": message,
		"observedGeneration": float64(2), "lastTransitionTime": at}
}

func TestRunningPatch(t *testing.T) {
	now := t0.Add(5 * time.Second)
	// The config says root with SYS_PTRACE; the condition already there says otherwise: the
	// executor's own knowledge wins and the transition time moves.
	info := RunInfo{Pod: "sr-pod", Privilege: executorconfig.Privilege{Privileged: true, Reason: "UIDOrGIDUnknown", Message: "runs as root"},
		ExecutorRestarts: 1}
	b, err := RunningPatch(stepRunWith("7", v1alpha1.StepRunPending, privileged), info, t0, now)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"metadata": map[string]any{"uid": "uid-1"},
		"status": map[string]any{
			"phase":              "Running",
			"podName":            "sr-pod",
			"observedGeneration": float64(2),
			"startedAt":          "2026-05-01T10:00:00Z",
			"reason":             "Running",
			"message":            "main is running",
			"executorRestarts":   float64(1),
			"conditions": []any{
				map[string]any{"type": "ExecutorPrivileged", "status": "True", "reason": "UIDOrGIDUnknown",
					"message": "runs as root", "observedGeneration": float64(2), "lastTransitionTime": "2026-05-01T10:00:05Z"},
				map[string]any{"type": "Succeeded", "status": "Unknown", "reason": "Running",
					"message": "main is running", "observedGeneration": float64(2),
					"lastTransitionTime": "2026-05-01T10:00:05Z"},
				mainStartedCond("True", "MainStarted", "main was started", "2026-05-01T10:00:05Z"),
			},
		},
	}
	if diff := cmp.Diff(want, decodeJSON(t, b)); diff != "" {
		t.Errorf("RunningPatch (-want +got):\n%s", diff)
	}
}

func TestTerminalPatch(t *testing.T) {
	now := t1.Add(time.Second)
	reportedAt := map[string]any{"reported": "2026-05-01T10:01:03.000000Z"}
	running := metav1.Condition{Type: v1alpha1.ConditionSucceeded, Status: metav1.ConditionUnknown,
		Reason: v1alpha1.ReasonRunning, Message: "main is running", LastTransitionTime: metav1.NewTime(t0)}
	tests := []struct {
		name    string
		outcome Outcome
		want    map[string]any
	}{{
		name: "succeeded with outputs",
		outcome: Outcome{Phase: v1alpha1.StepRunSucceeded, Reason: v1alpha1.ReasonSucceeded,
			Message: "main exited with code 0", ExitCode: ptr[int32](0), StartedAt: t0, FinishedAt: t1,
			Duration: 62 * time.Second, Parameters: []v1alpha1.OutputParameterValue{{Name: "a", Value: "1"}},
			Result: ptr("hello\n")},
		want: map[string]any{
			"metadata": map[string]any{"uid": "uid-1"},
			"status": map[string]any{
				"phase": "Succeeded", "exitCode": float64(0), "podName": "sr-pod", "observedGeneration": float64(2),
				"startedAt": "2026-05-01T10:00:00Z", "finishedAt": "2026-05-01T10:01:02Z", "duration": "1m2s",
				"reason": "Succeeded", "message": "main exited with code 0",
				"timings": reportedAt,
				"outputs": map[string]any{
					"parameters": []any{map[string]any{"name": "a", "value": "1"}},
					"result":     "hello\n",
				},
				"conditions": []any{
					map[string]any{"type": "ExecutorPrivileged", "status": "False", "reason": "UIDAndGIDKnown",
						"message": "runs as main's UID/GID", "observedGeneration": float64(2), "lastTransitionTime": "2026-05-01T10:00:00Z"},
					map[string]any{"type": "Succeeded", "status": "True", "reason": "Succeeded",
						"message": "main exited with code 0", "observedGeneration": float64(2),
						"lastTransitionTime": "2026-05-01T10:01:03Z"},
					mainStartedCond("True", "MainStarted", "main was started", "2026-05-01T10:01:03Z"),
				},
			},
		},
	}, {
		name: "OOMKilled, no outputs, unknown duration",
		outcome: Outcome{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonOOMKilled,
			Message: "oom", ExitCode: ptr[int32](137), FinishedAt: t1, Duration: -1},
		want: map[string]any{
			"metadata": map[string]any{"uid": "uid-1"},
			"status": map[string]any{
				"phase": "Error", "exitCode": float64(137), "finishedAt": "2026-05-01T10:01:02Z", "podName": "sr-pod", "observedGeneration": float64(2),
				"reason": "OOMKilled", "message": "oom", "timings": reportedAt,
				"conditions": []any{
					map[string]any{"type": "ExecutorPrivileged", "status": "False", "reason": "UIDAndGIDKnown",
						"message": "runs as main's UID/GID", "observedGeneration": float64(2), "lastTransitionTime": "2026-05-01T10:00:00Z"},
					map[string]any{"type": "Succeeded", "status": "False", "reason": "OOMKilled",
						"message": "oom", "observedGeneration": float64(2),
						"lastTransitionTime": "2026-05-01T10:01:03Z"},
					mainStartedCond("True", "MainStarted", "main was started", "2026-05-01T10:01:03Z"),
				},
			},
		},
	}, {
		// The kubelet reports 1970 as the start of a container that never started: no startedAt
		// and no duration rather than 498897h.
		name: "main never started: impossible start time dropped, MainStarted False",
		outcome: Outcome{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonMainStartFailed, Message: "no start",
			ExitCode: ptr[int32](128), StartedAt: time.Unix(0, 0), FinishedAt: t1, Duration: t1.Sub(time.Unix(0, 0)),
			MainNeverStarted: true},
		want: map[string]any{
			"metadata": map[string]any{"uid": "uid-1"},
			"status": map[string]any{
				"phase": "Error", "exitCode": float64(128), "finishedAt": "2026-05-01T10:01:02Z", "podName": "sr-pod", "observedGeneration": float64(2),
				"reason": "MainStartFailed", "message": "no start", "timings": reportedAt,
				"conditions": []any{
					map[string]any{"type": "ExecutorPrivileged", "status": "False", "reason": "UIDAndGIDKnown",
						"message": "runs as main's UID/GID", "observedGeneration": float64(2), "lastTransitionTime": "2026-05-01T10:00:00Z"},
					map[string]any{"type": "Succeeded", "status": "False", "reason": "MainStartFailed",
						"message": "no start", "observedGeneration": float64(2),
						"lastTransitionTime": "2026-05-01T10:01:03Z"},
					mainStartedCond("False", "MainNeverStarted", "main never started", "2026-05-01T10:01:03Z"),
				},
			},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Same privilege as already recorded: its transition time stays.
			info := RunInfo{Pod: "sr-pod", Privilege: executorconfig.Privilege{Reason: "UIDAndGIDKnown", Message: "runs as main's UID/GID"}}
			b, err := TerminalPatch(stepRunWith("9", v1alpha1.StepRunRunning, privileged, running), info, tt.outcome, now)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, decodeJSON(t, b)); diff != "" {
				t.Errorf("TerminalPatch (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := TerminalPatch(stepRunWith("9", v1alpha1.StepRunRunning), RunInfo{}, Outcome{Phase: v1alpha1.StepRunRunning}, now); err == nil {
		t.Error("TerminalPatch with phase Running should fail")
	}
}

// fakeStepRunAPI serves GET and PATCH of one StepRun and records the patches.
type fakeStepRunAPI struct {
	mu       sync.Mutex
	sr       *v1alpha1.StepRun
	rv       int
	reads    int
	patches  []*http.Request
	bodies   [][]byte
	failNext []int // status codes for the next PATCHes
}

func (f *fakeStepRunAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	const path = "/apis/workflows.pnsflow.dev/v1alpha1/namespaces/ns/stepruns/sr"
	switch {
	case r.Method == http.MethodGet && r.URL.Path == path:
		f.reads++
		f.sr.ResourceVersion = itoa(f.rv)
		_ = json.NewEncoder(w).Encode(f.sr)
	case r.Method == http.MethodPatch && r.URL.Path == path+"/status":
		body, _ := io.ReadAll(r.Body)
		f.patches = append(f.patches, r)
		f.bodies = append(f.bodies, body)
		if len(f.failNext) > 0 {
			code := f.failNext[0]
			f.failNext = f.failNext[1:]
			writeStatus(w, code, "fake")
			return
		}
		next, err := applyReport(f.sr, body)
		if err != nil {
			writeStatus(w, http.StatusUnprocessableEntity, err.Error())
			return
		}
		f.rv++
		f.sr = next
		f.sr.ResourceVersion = itoa(f.rv)
		_ = json.NewEncoder(w).Encode(f.sr)
	default:
		http.NotFound(w, r)
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func newFakeReporter(t *testing.T, api *fakeStepRunAPI) *Reporter {
	t.Helper()
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	r, err := NewReporter(&rest.Config{Host: srv.URL}, "ns", "sr")
	if err != nil {
		t.Fatal(err)
	}
	r.Now = func() time.Time { return t1 }
	return r
}

func TestReporterSendsItsTwoReportsWithoutReadingTheStepRun(t *testing.T) {
	api := &fakeStepRunAPI{sr: stepRunWith("", v1alpha1.StepRunPending), rv: 1}
	r := newFakeReporter(t, api)
	r.UID = "uid-1"
	r.Info = RunInfo{Pod: "sr-pod", Privilege: executorconfig.Privilege{Reason: "UIDAndGIDKnown", Message: "runs as main's UID/GID"}}
	r.Now = func() time.Time { return t0 }
	if err := r.ReportRunning(context.Background(), t0); err != nil {
		t.Fatal(err)
	}
	r.Now = func() time.Time { return t1 }
	o := Outcome{Phase: v1alpha1.StepRunFailed, Reason: v1alpha1.ReasonExitCode, Message: "main exited with code 2",
		ExitCode: ptr[int32](2), Duration: -1}
	if err := r.ReportTerminal(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if api.reads != 0 || len(api.patches) != 2 {
		t.Fatalf("%d reads and %d patches, want 0 and 2", api.reads, len(api.patches))
	}
	for _, p := range api.patches {
		if ct := p.Header.Get("Content-Type"); ct != string(types.JSONPatchType) {
			t.Errorf("Content-Type = %q, want %q", ct, types.JSONPatchType)
		}
		if fm := p.URL.Query().Get("fieldManager"); fm != v1alpha1.FieldManagerExecutor {
			t.Errorf("fieldManager = %q, want %q", fm, v1alpha1.FieldManagerExecutor)
		}
	}
	st := api.sr.Status
	if st.Phase != v1alpha1.StepRunFailed || st.ExitCode == nil || *st.ExitCode != 2 || st.ObservedGeneration != 2 {
		t.Errorf("status = %+v", st)
	}
	// Built over the first report's answer: the unchanged condition keeps its first transition.
	if c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionExecutorPrivileged); c == nil || !c.LastTransitionTime.Time.Equal(t0) {
		t.Errorf("ExecutorPrivileged = %+v, want its transition at the first report (%v)", c, t0)
	}
}

func TestReporterRereadsAfterARefusalAndTriesAgain(t *testing.T) {
	api := &fakeStepRunAPI{sr: stepRunWith("", v1alpha1.StepRunRunning), rv: 10,
		failNext: []int{http.StatusConflict, http.StatusUnprocessableEntity}}
	r := newFakeReporter(t, api)
	r.UID = "uid-1"
	o := Outcome{Phase: v1alpha1.StepRunFailed, Reason: v1alpha1.ReasonExitCode, Message: "main exited with code 2",
		ExitCode: ptr[int32](2), Duration: -1}
	if err := r.ReportTerminal(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if len(api.patches) != 3 || api.reads != 2 {
		t.Fatalf("%d patches and %d reads, want 3 and 2 (a read after each refusal)", len(api.patches), api.reads)
	}
	if api.sr.Status.Phase != v1alpha1.StepRunFailed {
		t.Errorf("phase = %s, want Failed", api.sr.Status.Phase)
	}
}

func TestReporterReadsFirstWhenTheExecutorWasRestarted(t *testing.T) {
	api := &fakeStepRunAPI{sr: stepRunWith("", v1alpha1.StepRunRunning), rv: 3}
	first := t0.Add(-time.Minute)
	api.sr.Status.Timings = &v1alpha1.StepRunTimings{ExecutorStarted: v1alpha1.MicroTimeOf(first)}
	r := newFakeReporter(t, api)
	r.UID = "uid-1"
	r.Restarts = func() int32 { return 1 }
	r.Timings = func() v1alpha1.StepRunTimings {
		return v1alpha1.StepRunTimings{ExecutorStarted: v1alpha1.MicroTimeOf(t0)}
	}
	if err := r.ReportTerminal(context.Background(), Outcome{Phase: v1alpha1.StepRunSucceeded, Reason: "Succeeded", ExitCode: ptr[int32](0)}); err != nil {
		t.Fatal(err)
	}
	if api.reads != 1 {
		t.Errorf("%d reads, want 1: an earlier executor may have reported", api.reads)
	}
	if got := api.sr.Status.Timings.ExecutorStarted; got == nil || !got.Time.Equal(first) {
		t.Errorf("executorStarted = %v, want the first executor's %v", got, first)
	}
}

func TestReporterGivesUpAfterMaxConflicts(t *testing.T) {
	api := &fakeStepRunAPI{sr: stepRunWith("", v1alpha1.StepRunRunning), rv: 1,
		failNext: []int{409, 409, 409, 409}}
	r := newFakeReporter(t, api)
	r.MaxConflicts = 2
	err := r.ReportRunning(context.Background(), t0)
	if err == nil || len(api.patches) != 3 {
		t.Errorf("err = %v after %d patches; want an error after 3", err, len(api.patches))
	}
}

func TestReporterRetriesServerErrors(t *testing.T) {
	api := &fakeStepRunAPI{sr: stepRunWith("", v1alpha1.StepRunPending), rv: 1, failNext: []int{http.StatusInternalServerError}}
	r := newFakeReporter(t, api)
	if err := r.ReportRunning(context.Background(), t0); err != nil {
		t.Fatal(err)
	}
	if len(api.patches) != 2 {
		t.Errorf("%d patches, want 2", len(api.patches))
	}
}

func TestReporterDoesNotRetryForbidden(t *testing.T) {
	api := &fakeStepRunAPI{sr: stepRunWith("", v1alpha1.StepRunPending), rv: 1, failNext: []int{http.StatusForbidden}}
	r := newFakeReporter(t, api)
	if err := r.ReportRunning(context.Background(), t0); err == nil || len(api.patches) != 1 {
		t.Errorf("err = %v after %d patches; want an error after 1", err, len(api.patches))
	}
}

func TestReporterStopsAtTerminalPhase(t *testing.T) {
	for _, phase := range []v1alpha1.StepRunPhase{v1alpha1.StepRunFailed, v1alpha1.StepRunError} {
		api := &fakeStepRunAPI{sr: stepRunWith("", phase), rv: 1}
		api.sr.Status.Reason = "ByTheController"
		r := newFakeReporter(t, api)
		err := r.ReportTerminal(context.Background(), Outcome{Phase: v1alpha1.StepRunSucceeded, Reason: "Succeeded"})
		// The schema refuses the report; the read that follows says why.
		if !errors.Is(err, ErrAlreadyTerminal) || len(api.patches) != 1 || api.reads != 1 {
			t.Errorf("%s: err = %v, %d patches, %d reads; want ErrAlreadyTerminal after one refused patch and one read",
				phase, err, len(api.patches), api.reads)
		}
		if api.sr.Status.Phase != phase || api.sr.Status.Reason != "ByTheController" {
			t.Errorf("%s: the terminal status changed: %+v", phase, api.sr.Status)
		}
	}
}

func TestReporterRefusesAReplacedStepRun(t *testing.T) {
	api := &fakeStepRunAPI{sr: stepRunWith("", v1alpha1.StepRunPending), rv: 1}
	r := newFakeReporter(t, api)
	r.UID = "another-uid"
	err := r.ReportRunning(context.Background(), t0)
	if err == nil || !strings.Contains(err.Error(), "replaced") || api.sr.Status.Phase != v1alpha1.StepRunPending {
		t.Errorf("err = %v, phase %s; want the patch's UID test to refuse it and the read to say the run was replaced",
			err, api.sr.Status.Phase)
	}
}

func TestReportsKeepTheStageTimesAlreadyRecorded(t *testing.T) {
	// An executor restarted after its first report knows its own, later, start: the status keeps
	// the first, and gains what it lacked.
	first, restarted := t0.Add(1500*time.Microsecond), t0.Add(9*time.Second)
	current := stepRunWith("7", v1alpha1.StepRunRunning)
	current.Status.Timings = &v1alpha1.StepRunTimings{ExecutorStarted: v1alpha1.MicroTimeOf(first)}
	info := RunInfo{Pod: "sr-pod", Timings: v1alpha1.StepRunTimings{
		ExecutorStarted: v1alpha1.MicroTimeOf(restarted),
		MainExited:      v1alpha1.MicroTimeOf(t1),
	}}
	now := t1.Add(250 * time.Microsecond)
	b, err := TerminalPatch(current, info, Outcome{Phase: v1alpha1.StepRunSucceeded, Reason: v1alpha1.ReasonSucceeded}, now)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"executorStarted": "2026-05-01T10:00:00.001500Z",
		"mainExited":      "2026-05-01T10:01:02.000000Z",
		"reported":        "2026-05-01T10:01:02.000250Z",
	}
	got := decodeJSON(t, b)["status"].(map[string]any)["timings"]
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("timings (-want +got):\n%s", diff)
	}

	b, err = RunningPatch(stepRunWith("7", v1alpha1.StepRunPending), RunInfo{Pod: "sr-pod"}, t0, now)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := decodeJSON(t, b)["status"].(map[string]any)["timings"]; ok {
		t.Errorf("a Running report without stage times sends timings %v, want none", got)
	}
}

func TestDecodeStateKeepsMetadataAndStatusNotSpec(t *testing.T) {
	raw := []byte(`{"apiVersion":"workflows.pnsflow.dev/v1alpha1","kind":"StepRun",
		"metadata":{"name":"sr","namespace":"ns","uid":"uid-1","generation":2,"resourceVersion":"42"},
		"spec":{"image":"busybox","command":["true"]},
		"status":{"phase":"Running","podName":"sr-pod","conditions":[{"type":"Succeeded","status":"Unknown","reason":"Running","message":"m","lastTransitionTime":"2026-05-01T10:00:00Z"}]}}`)
	sr, err := decodeState(raw)
	if err != nil {
		t.Fatal(err)
	}
	if sr.UID != "uid-1" || sr.Generation != 2 || sr.ResourceVersion != "42" || sr.Name != "sr" {
		t.Errorf("metadata = %+v", sr.ObjectMeta)
	}
	if sr.Status.Phase != v1alpha1.StepRunRunning || sr.Status.PodName != "sr-pod" || len(sr.Status.Conditions) != 1 {
		t.Errorf("status = %+v", sr.Status)
	}
	if sr.Spec.Image != "" {
		t.Errorf("spec decoded (%q): the reports never read it", sr.Spec.Image)
	}
	if _, err := decodeState([]byte(`{"metadata":`)); err == nil {
		t.Error("a truncated body decoded")
	}
}
