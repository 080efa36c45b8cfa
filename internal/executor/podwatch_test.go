package executor

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

// pod builds the executor's Pod with main in the given state.
func pod(rv string, main corev1.ContainerState, mutate ...func(*corev1.Pod)) corev1.Pod {
	p := corev1.Pod{}
	p.Name, p.Namespace, p.ResourceVersion = "p", "ns", rv
	p.Status.ContainerStatuses = []corev1.ContainerStatus{
		{Name: executorconfig.ExecutorContainer, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
		{Name: executorconfig.MainContainer, State: main},
	}
	for _, m := range mutate {
		m(&p)
	}
	return p
}

var (
	waiting = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
	running = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(t0)}}
)

func terminated(code int32, reason string) corev1.ContainerState {
	return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: code, Reason: reason, StartedAt: metav1.NewTime(t0), FinishedAt: metav1.NewTime(t1),
	}}
}

func TestMainStateOf(t *testing.T) {
	deadline := func(p *corev1.Pod) {
		p.Spec.ActiveDeadlineSeconds = ptr[int64](30)
		p.Status.StartTime = ptr(metav1.NewTime(t0))
		p.Status.Reason, p.Status.Message = "DeadlineExceeded", "Pod was active on the node longer than the specified deadline"
	}
	tests := []struct {
		name string
		pod  corev1.Pod
		want MainState
	}{
		{"no statuses yet", corev1.Pod{}, MainState{}},
		{"waiting", pod("1", waiting), MainState{}},
		{"running", pod("1", running), MainState{Running: &Running{StartedAt: t0}}},
		{"OOMKilled", pod("1", terminated(137, "OOMKilled")), MainState{Terminated: &Termination{
			ExitCode: 137, Reason: "OOMKilled", StartedAt: t0, FinishedAt: t1}}},
		{"deadline", pod("1", terminated(137, "Error"), deadline), MainState{Terminated: &Termination{
			ExitCode: 137, Reason: "Error", StartedAt: t0, FinishedAt: t1,
			PodReason: "DeadlineExceeded", PodMessage: "Pod was active on the node longer than the specified deadline",
			DeadlineAt: t0.Add(30 * time.Second)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, MainStateOf(&tt.pod)); diff != "" {
				t.Errorf("MainStateOf (-want +got):\n%s", diff)
			}
		})
	}
}

// fakePodAPI serves get and watch of Pod ns/p. Each get answers with the next of gets (the
// last repeats); each watch streams the next of watches, then ends the stream, or, with none left,
// holds it open until the client goes.
type fakePodAPI struct {
	mu        sync.Mutex
	gets      []corev1.Pod
	watches   [][]watchEvent
	getCalls  int
	watchRVs  []string
	selectors []string
}

func event(typ string, obj any) watchEvent {
	b, _ := json.Marshal(obj)
	return watchEvent{Type: typ, Object: b}
}

func (f *fakePodAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f.mu.Lock()
	if r.URL.Path == "/api/v1/namespaces/ns/pods/p" {
		i := min(f.getCalls, len(f.gets)-1)
		f.getCalls++
		p := f.gets[i]
		f.mu.Unlock()
		_ = json.NewEncoder(w).Encode(p)
		return
	}
	if r.URL.Path != "/api/v1/namespaces/ns/pods" || q.Get("watch") != "true" {
		f.mu.Unlock()
		http.NotFound(w, r) // no list: the executor may only get and watch its Pod
		return
	}
	f.selectors = append(f.selectors, q.Get("fieldSelector"))
	f.watchRVs = append(f.watchRVs, q.Get("resourceVersion"))
	var events []watchEvent
	hold := len(f.watches) == 0
	if !hold {
		events, f.watches = f.watches[0], f.watches[1:]
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	for _, ev := range events {
		_ = json.NewEncoder(w).Encode(ev)
	}
	w.(http.Flusher).Flush()
	if hold {
		<-r.Context().Done()
	}
}

func startPodWatcher(t *testing.T, api *fakePodAPI) (*PodWatcher, chan error) {
	t.Helper()
	srv := httptest.NewServer(api)
	w, err := NewPodWatcher(&rest.Config{Host: srv.URL}, "ns", "p")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Close()
	})
	return w, done
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestPodWatcherFollowsMain(t *testing.T) {
	api := &fakePodAPI{
		gets: []corev1.Pod{pod("5", waiting)},
		watches: [][]watchEvent{{
			event("MODIFIED", pod("6", running)),
			event("BOOKMARK", map[string]any{"metadata": map[string]any{"resourceVersion": "7"}}),
		}, {
			event("MODIFIED", pod("8", terminated(2, "Error"))),
		}},
	}
	w, done := startPodWatcher(t, api)
	ctx := testCtx(t)

	st, err := w.MainStarted(ctx)
	if err != nil || st.Running == nil || !st.Running.StartedAt.Equal(t0) {
		t.Fatalf("MainStarted = %+v, %v; want running since %v", st, err, t0)
	}
	term, err := w.MainTerminated(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if term.ExitCode != 2 || term.Reason != "Error" || !term.FinishedAt.Equal(t1) {
		t.Errorf("MainTerminated = %+v", term)
	}
	// Run stops watching once main terminated.
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil once main terminated", err)
	}
	done <- nil // for the cleanup
	api.mu.Lock()
	defer api.mu.Unlock()
	if diff := cmp.Diff([]string{"5", "7"}, api.watchRVs); diff != "" {
		t.Errorf("watch resourceVersions (-want +got):\n%s", diff)
	}
	for _, s := range api.selectors {
		if s != "metadata.name=p" {
			t.Errorf("fieldSelector = %q", s)
		}
	}
}

func TestPodWatcherRereadsWhenTheWatchExpires(t *testing.T) {
	api := &fakePodAPI{
		gets: []corev1.Pod{pod("5", running), pod("9", terminated(0, "Completed"))},
		watches: [][]watchEvent{{
			event("ERROR", metav1.Status{Code: http.StatusGone, Reason: metav1.StatusReasonExpired, Message: "too old"}),
		}},
	}
	w, _ := startPodWatcher(t, api)
	term, err := w.MainTerminated(testCtx(t))
	if err != nil || term.ExitCode != 0 || term.Reason != "Completed" {
		t.Errorf("MainTerminated = %+v, %v", term, err)
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if api.getCalls != 2 {
		t.Errorf("%d gets, want 2", api.getCalls)
	}
}

func TestPodWatcherPodDeleted(t *testing.T) {
	api := &fakePodAPI{
		gets:    []corev1.Pod{pod("5", running)},
		watches: [][]watchEvent{{event("DELETED", pod("6", running))}},
	}
	w, _ := startPodWatcher(t, api)
	if _, err := w.MainTerminated(testCtx(t)); !errors.Is(err, ErrPodGone) {
		t.Errorf("MainTerminated error = %v, want ErrPodGone", err)
	}
}

func TestPodWatcherTerminationInTheDeletedPod(t *testing.T) {
	api := &fakePodAPI{
		gets:    []corev1.Pod{pod("5", running)},
		watches: [][]watchEvent{{event("DELETED", pod("6", terminated(1, "Error")))}},
	}
	w, _ := startPodWatcher(t, api)
	if term, err := w.MainTerminated(testCtx(t)); err != nil || term.ExitCode != 1 {
		t.Errorf("MainTerminated = %+v, %v; want exit 1", term, err)
	}
}

func TestPodWatcherWaitHonoursContext(t *testing.T) {
	api := &fakePodAPI{gets: []corev1.Pod{pod("5", waiting)}}
	w, _ := startPodWatcher(t, api)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := w.MainStarted(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("MainStarted error = %v, want context.Canceled", err)
	}
}

func TestPodWatcherPodNotFound(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
			Status: metav1.StatusFailure, Code: http.StatusNotFound, Reason: metav1.StatusReasonNotFound})
	}))
	defer srv.Close()
	w, err := NewPodWatcher(&rest.Config{Host: srv.URL}, "ns", "p")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Run(testCtx(t)); err != nil {
		t.Errorf("Run = %v, want nil once the Pod is known gone", err)
	}
	if _, err := w.MainTerminated(testCtx(t)); !errors.Is(err, ErrPodGone) {
		t.Errorf("MainTerminated error = %v, want ErrPodGone", err)
	}
}

// The executor decodes only the fields it reads; what it makes of a whole Pod must not change.
func TestDecodePodKeepsWhatTheExecutorReads(t *testing.T) {
	full := pod("42", terminated(3, "Error"), func(p *corev1.Pod) {
		p.CreationTimestamp = metav1.NewTime(t0.Add(-time.Minute))
		p.DeletionTimestamp = new(metav1.NewTime(t1))
		p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}
		p.Spec.ActiveDeadlineSeconds = new(int64(30))
		p.Spec.Containers = []corev1.Container{{Name: "main", Image: "busybox", Env: []corev1.EnvVar{{Name: "A", Value: "b"}}}}
		p.Status.StartTime = new(metav1.NewTime(t0))
		p.Status.Reason = "DeadlineExceeded"
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue,
			LastTransitionTime: metav1.NewTime(t0.Add(-30 * time.Second))}}
		p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: executorconfig.ExecutorContainer, RestartCount: 2}}
		p.Status.ContainerStatuses = p.Status.ContainerStatuses[1:]
	})
	raw, err := json.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodePod(raw)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(MainStateOf(&full), MainStateOf(got)); diff != "" {
		t.Errorf("main's state from the decoded Pod (-whole +decoded):\n%s", diff)
	}
	if got.ResourceVersion != "42" || got.DeletionTimestamp == nil || !got.DeletionTimestamp.Equal(full.DeletionTimestamp) {
		t.Errorf("resourceVersion %q, deletionTimestamp %v; want 42, %v", got.ResourceVersion, got.DeletionTimestamp, full.DeletionTimestamp)
	}
	if st := MainStateOf(got); st.Terminated == nil || st.Terminated.DeadlineAt.IsZero() || st.ExecutorRestarts != 2 {
		t.Errorf("decoded state %+v: want main terminated with its deadline, 2 executor restarts", st)
	}
}
