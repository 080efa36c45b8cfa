package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

// fakePod is a PodWatcher fed by the test instead of an API server.
type fakePod struct{ *PodWatcher }

func newFakePod() *fakePod { return &fakePod{NewPodWatcherForClient(nil, "ns", "p")} }

func (f *fakePod) Run(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }

func (f *fakePod) set(state corev1.ContainerState) {
	p := pod("1", state)
	f.observe(&p, false)
}

type findFunc func(ctx context.Context, firstScan func() error) (int, error)

func (f findFunc) Find(ctx context.Context, firstScan func() error) (int, error) {
	return f(ctx, firstScan)
}

// findsAfterReady is a finder that finds pid right after its first scan.
func findsAfterReady(pid int) findFunc {
	return func(_ context.Context, firstScan func() error) (int, error) {
		if err := firstScan(); err != nil {
			return 0, err
		}
		return pid, nil
	}
}

// neverFinds is a finder that looks until ctx ends.
func neverFinds() findFunc {
	return func(ctx context.Context, firstScan func() error) (int, error) {
		if err := firstScan(); err != nil {
			return 0, err
		}
		<-ctx.Done()
		return 0, fmt.Errorf("%w: %w", ErrNotFound, ctx.Err())
	}
}

type secureFunc func(pid int) (*MainProcess, error)

func (f secureFunc) Secure(pid int) (*MainProcess, error) { return f(pid) }

type waitFunc func(ctx context.Context, p *MainProcess) error

func (f waitFunc) Wait(ctx context.Context, p *MainProcess) error { return f(ctx, p) }

type fakeCollector struct {
	root      *os.File
	called    bool
	collected Collected
}

func (f *fakeCollector) Collect(root *os.File) Collected {
	f.root, f.called = root, true
	return f.collected
}

type fakeResults string

func (f fakeResults) Result(context.Context) (string, error) { return string(f), nil }

// fakeReporter records the reports in order.
type fakeReporter struct {
	mu        sync.Mutex
	calls     []string
	startedAt time.Time
	outcome   *Outcome
	onRunning func()
	err       error
}

func (f *fakeReporter) ReportRunning(_ context.Context, startedAt time.Time) error {
	f.mu.Lock()
	f.calls = append(f.calls, "running")
	f.startedAt = startedAt
	f.mu.Unlock()
	if f.onRunning != nil {
		f.onRunning()
	}
	return nil
}

func (f *fakeReporter) ReportTerminal(_ context.Context, o Outcome) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "terminal")
	f.outcome = &o
	return f.err
}

func (f *fakeReporter) called() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// newTestExecutor wires fakes; each test replaces what it needs.
func newTestExecutor(t *testing.T) (*Executor, *fakePod, *fakeCollector, *fakeReporter) {
	t.Helper()
	pod := newFakePod()
	col := &fakeCollector{}
	rep := &fakeReporter{}
	e := &Executor{
		Finder:    neverFinds(),
		Securer:   secureFunc(func(int) (*MainProcess, error) { return nil, errors.New("no securer") }),
		Waiter:    waitFunc(func(ctx context.Context, _ *MainProcess) error { <-ctx.Done(); return ctx.Err() }),
		Pod:       pod,
		Collector: col,
		Results:   fakeResults("tail"),
		Reporter:  rep,
		Ready:     func() error { return nil },
		Grace:     DefaultGrace,
		Log:       funcr.New(func(prefix, args string) { t.Log(prefix, args) }, funcr.Options{}),
	}
	return e, pod, col, rep
}

func TestRunMainCaught(t *testing.T) {
	e, pod, col, rep := newTestExecutor(t)
	root, err := os.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	readyCalls, stopReadyCalls := 0, 0
	e.Ready = func() error { readyCalls++; return nil }
	e.StopReady = func() error { stopReadyCalls++; return nil }
	e.Finder = findsAfterReady(42)
	e.Securer = secureFunc(func(pid int) (*MainProcess, error) {
		if pid != 42 {
			t.Errorf("Secure(%d), want 42", pid)
		}
		return &MainProcess{PID: pid, Root: root, Started: time.Second}, nil
	})
	e.BootTime = func() time.Duration { return time.Second + 350*time.Millisecond }
	reported := make(chan struct{})
	rep.onRunning = func() { close(reported) }
	e.Waiter = waitFunc(func(ctx context.Context, p *MainProcess) error {
		if readyCalls != 1 || stopReadyCalls != 1 {
			t.Errorf("while main runs: Ready called %d times, StopReady %d; want 1 and 1 (main may use the port)", readyCalls, stopReadyCalls)
		}
		<-reported // main runs a while, then exits within the second it started, says the kubelet
		quick := terminated(0, "Completed")
		quick.Terminated.FinishedAt = quick.Terminated.StartedAt
		pod.set(quick)
		return nil
	})

	col.collected = Collected{Parameters: []v1alpha1.OutputParameterValue{{Name: "a", Value: "1"}}}
	pod.set(running)

	if err := e.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if readyCalls != 1 {
		t.Errorf("Ready called %d times, want 1", readyCalls)
	}
	if diff := cmp.Diff([]string{"running", "terminal"}, rep.called()); diff != "" {
		t.Errorf("reports (-want +got):\n%s", diff)
	}
	if !rep.startedAt.Equal(t0) {
		t.Errorf("Running startedAt = %v, want the Pod's %v", rep.startedAt, t0)
	}
	if col.root != root {
		t.Errorf("collected through %v, want the held root", col.root)
	}
	want := Outcome{Phase: v1alpha1.StepRunSucceeded, Reason: v1alpha1.ReasonSucceeded, Message: "main exited with code 0",
		ExitCode: ptr[int32](0), StartedAt: t0, FinishedAt: t0, Duration: 350 * time.Millisecond,
		Parameters: col.collected.Parameters, Result: ptr("tail")}
	if diff := cmp.Diff(&want, rep.outcome); diff != "" {
		t.Errorf("terminal outcome (-want +got):\n%s", diff)
	}
}

func TestRunMainNeverCaught(t *testing.T) {
	e, pod, col, rep := newTestExecutor(t)
	e.Finder = neverFinds()
	// main starts and ends unseen; the Pod says so.
	e.Ready = func() error { pod.set(terminated(1, "Error")); return nil }
	if err := e.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"terminal"}, rep.called()); diff != "" {
		t.Errorf("reports (-want +got): no Running for a main never caught\n%s", diff)
	}
	if !col.called || col.root != nil {
		t.Errorf("Collect called %v with root %v, want called with nil", col.called, col.root)
	}
	if o := rep.outcome; o.Phase != v1alpha1.StepRunFailed || *o.ExitCode != 1 || o.Duration != t1.Sub(t0) {
		t.Errorf("outcome = %+v", o)
	}
}

func TestRunSecureFailsFallsBackToThePod(t *testing.T) {
	e, pod, col, rep := newTestExecutor(t)
	e.Finder = findsAfterReady(42)
	e.Securer = secureFunc(func(int) (*MainProcess, error) { return nil, ErrMainExited })
	pod.set(running)
	rep.onRunning = func() { pod.set(terminated(0, "Completed")) }
	if err := e.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"running", "terminal"}, rep.called()); diff != "" {
		t.Errorf("reports (-want +got):\n%s", diff)
	}
	if col.root != nil {
		t.Errorf("collected through %v, want nil", col.root)
	}
}

func TestRunWaitEndsWhenThePodSaysMainTerminated(t *testing.T) {
	// The process held outlives main (a child of main was caught): the Pod's word ends the wait.
	e, pod, _, rep := newTestExecutor(t)
	e.Finder = findsAfterReady(42)
	e.Securer = secureFunc(func(pid int) (*MainProcess, error) { return &MainProcess{PID: pid}, nil })
	e.Waiter = waitFunc(func(ctx context.Context, _ *MainProcess) error {
		pod.set(terminated(0, "Completed"))
		<-ctx.Done()
		return ctx.Err()
	})
	if err := e.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rep.outcome == nil || rep.outcome.Phase != v1alpha1.StepRunSucceeded {
		t.Errorf("outcome = %+v", rep.outcome)
	}
}

func TestRunCancelledBeforeTheExitCodeIsKnown(t *testing.T) {
	e, _, col, rep := newTestExecutor(t)
	e.Grace = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	e.Ready = func() error { cancel(); return nil } // SIGTERM, and the kubelet never reports main
	if err := e.Run(ctx); !errors.Is(err, ErrNoExitCode) {
		t.Errorf("Run = %v, want ErrNoExitCode", err)
	}
	if len(rep.called()) != 0 || col.called {
		t.Errorf("reports %v, collected %v; want nothing", rep.called(), col.called)
	}
}

func TestRunCancelledThenTheExitCodeArrivesWithinGrace(t *testing.T) {
	e, pod, _, rep := newTestExecutor(t)
	ctx, cancel := context.WithCancel(context.Background())
	e.Ready = func() error {
		cancel()                          // SIGTERM (activeDeadlineSeconds, say) ...
		pod.set(terminated(143, "Error")) // ... and main's exit reported during the grace period
		return nil
	}
	if err := e.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"terminal"}, rep.called()); diff != "" {
		t.Errorf("reports (-want +got):\n%s", diff)
	}
	if o := rep.outcome; o.Phase != v1alpha1.StepRunFailed || *o.ExitCode != 143 {
		t.Errorf("outcome = %+v", o)
	}
}

// givesUpBeforeLooking is a finder whose context ends before its first look completes, as
// ProcFinder's does when it checks ctx first.
func givesUpBeforeLooking() findFunc {
	return func(ctx context.Context, _ func() error) (int, error) {
		<-ctx.Done()
		return 0, fmt.Errorf("%w: %w", ErrNotFound, ctx.Err())
	}
}

func TestRunRestartedAsMainExitsReportsFromThePod(t *testing.T) {
	// A restarted executor may start just as main exits: before it has looked once, the kubelet
	// says main terminated, or already stops the executor (SIGTERM). Both still end in a report.
	for _, sigterm := range []bool{false, true} {
		t.Run(fmt.Sprintf("sigterm=%v", sigterm), func(t *testing.T) {
			e, pod, col, rep := newTestExecutor(t)
			e.Finder = givesUpBeforeLooking()
			readyCalls := 0
			e.Ready = func() error { readyCalls++; return nil }
			col.collected = Collected{Parameters: []v1alpha1.OutputParameterValue{{Name: "v", Value: "written"}}}
			pod.set(terminated(0, "Completed"))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if sigterm {
				cancel()
			}
			if err := e.Run(ctx); err != nil {
				t.Fatalf("Run = %v, want the terminal report", err)
			}
			if diff := cmp.Diff([]string{"terminal"}, rep.called()); diff != "" {
				t.Errorf("reports (-want +got):\n%s", diff)
			}
			if o := rep.outcome; o.Phase != v1alpha1.StepRunSucceeded || len(o.Parameters) != 1 {
				t.Errorf("outcome = %+v, want Succeeded with the collected output", o)
			}
			if readyCalls != 0 {
				t.Errorf("Ready called %d times: nothing was looked at", readyCalls)
			}
		})
	}
}

func TestRunReadyFails(t *testing.T) {
	e, _, col, rep := newTestExecutor(t)
	e.Ready = func() error { return errors.New("address in use") }
	err := e.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "address in use") {
		t.Errorf("Run = %v, want the readiness error", err)
	}
	if len(rep.called()) != 0 || col.called {
		t.Error("nothing may happen after a failed readiness signal")
	}
}

func TestRunStepRunAlreadyTerminal(t *testing.T) {
	e, pod, _, rep := newTestExecutor(t)
	rep.err = fmt.Errorf("%w: Error", ErrAlreadyTerminal)
	e.Ready = func() error { pod.set(terminated(0, "Completed")); return nil }
	if err := e.Run(context.Background()); err != nil {
		t.Errorf("Run = %v, want nil: a terminal StepRun is not an executor failure", err)
	}
}

func TestRunReportErrorFails(t *testing.T) {
	e, pod, _, rep := newTestExecutor(t)
	rep.err = errors.New("forbidden")
	e.Ready = func() error { pod.set(terminated(0, "Completed")); return nil }
	if err := e.Run(context.Background()); err == nil {
		t.Error("Run = nil, want the report's error")
	}
}

type feedFunc func(ctx context.Context) error

func (f feedFunc) Feed(ctx context.Context) error { return f(ctx) }

func TestRunFeedsStdinUntilMainTerminates(t *testing.T) {
	e, pod, _, _ := newTestExecutor(t)
	fed := make(chan error, 1)
	e.Stdin = feedFunc(func(ctx context.Context) error {
		pod.set(terminated(0, "Completed"))
		<-ctx.Done() // ended by main's termination, not by Run's return
		fed <- ctx.Err()
		return ctx.Err()
	})
	if err := e.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-fed:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("stdin ctx error = %v", err)
		}
	default:
		t.Error("Run returned before the stdin writer ended")
	}
}

// Stdin feeder.

type getFunc func(ctx context.Context) (*v1alpha1.StepRun, error)

func (f getFunc) Get(ctx context.Context) (*v1alpha1.StepRun, error) { return f(ctx) }

type fakeAttacher struct {
	mu    sync.Mutex
	got   []string
	fails int
}

func (f *fakeAttacher) Attach(_ context.Context, stdin io.Reader) error {
	b, err := io.ReadAll(stdin)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, string(b))
	if f.fails > 0 {
		f.fails--
		return errors.New("upgrade failed")
	}
	return nil
}

func stepRunWithStdin(stdin *string) getFunc {
	return func(context.Context) (*v1alpha1.StepRun, error) {
		sr := &v1alpha1.StepRun{}
		sr.Spec.Stdin = stdin
		return sr, nil
	}
}

func TestStdinFeeder(t *testing.T) {
	t.Run("writes once main runs", func(t *testing.T) {
		pod := newFakePod()
		pod.set(running)
		a := &fakeAttacher{fails: 1}
		f := &StdinFeeder{StepRun: stepRunWithStdin(ptr("hello\n")), Pod: pod, Attacher: a}
		if err := f.Feed(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"hello\n", "hello\n"}, a.got); diff != "" {
			t.Errorf("attached (-want +got):\n%s", diff)
		}
	})
	t.Run("no stdin", func(t *testing.T) {
		a := &fakeAttacher{}
		f := &StdinFeeder{StepRun: stepRunWithStdin(nil), Pod: newFakePod(), Attacher: a}
		if err := f.Feed(testCtx(t)); err != nil || len(a.got) != 0 {
			t.Errorf("Feed = %v with %d attaches; want nil, none", err, len(a.got))
		}
	})
	t.Run("main ended first", func(t *testing.T) {
		pod := newFakePod()
		pod.set(terminated(0, "Completed"))
		a := &fakeAttacher{}
		f := &StdinFeeder{StepRun: stepRunWithStdin(ptr("x")), Pod: pod, Attacher: a}
		if err := f.Feed(testCtx(t)); err == nil || len(a.got) != 0 {
			t.Errorf("Feed = %v with %d attaches; want an error, none", err, len(a.got))
		}
	})
}

func TestWithGraceEndsWhenThePodIsBeingDeleted(t *testing.T) {
	cut := make(chan struct{})
	parent, cancel := context.WithCancel(context.Background())
	ctx, stop := withGrace(parent, time.Hour, cut)
	defer stop()
	close(cut)
	if ctx.Err() != nil {
		t.Fatal("the grace context ended while its parent lives")
	}
	cancel()
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the grace context did not end once the parent ended with the Pod being deleted")
	}
}

func TestPodWatcherSeesThePodBeingDeleted(t *testing.T) {
	w := NewPodWatcherForClient(nil, "ns", "p")
	w.observe(&corev1.Pod{}, false)
	select {
	case <-w.Deleting():
		t.Fatal("Deleting closed for a Pod not being deleted")
	default:
	}
	now := metav1.Now()
	w.observe(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}}, false)
	w.observe(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}}, true) // closing twice must not panic
	select {
	case <-w.Deleting():
	default:
		t.Fatal("Deleting not closed for a Pod being deleted")
	}
}

func TestWithGrace(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	ctx, stop := withGrace(parent, time.Hour, nil)
	defer stop()
	cancel()
	if ctx.Err() != nil {
		t.Fatal("the grace context ended with its parent")
	}
	stop()
	if ctx.Err() == nil {
		t.Fatal("stop did not end the grace context")
	}
	ctx2, stop2 := withGrace(context.Background(), time.Nanosecond, nil)
	defer stop2()
	if ctx2.Err() != nil {
		t.Fatal("the grace context ended while its parent lives")
	}
}

// blockingResults reads main's log tail as slowly as an upload that outlasts the grace: it
// returns only when its context ends.
type blockingResults struct{}

func (blockingResults) Result(ctx context.Context) (string, error) {
	<-ctx.Done()
	return "", ctx.Err()
}

// ctxReporter is a fakeReporter that also records whether the terminal report's context was
// still live when it was sent.
type ctxReporter struct {
	*fakeReporter
	liveAtTerminal bool
}

func (r *ctxReporter) ReportTerminal(ctx context.Context, o Outcome) error {
	r.liveAtTerminal = ctx.Err() == nil
	return r.fakeReporter.ReportTerminal(ctx, o)
}

func TestRunCollectingThatOutlastsTheGraceStillLeavesTimeToReportTheExitCode(t *testing.T) {
	e, pod, _, rep := newTestExecutor(t)
	cr := &ctxReporter{fakeReporter: rep}
	e.Reporter, e.Results = cr, blockingResults{}
	e.Grace = 400 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	e.Ready = func() error {
		cancel() // SIGTERM as main ends ...
		pod.set(terminated(7, "Error"))
		return nil
	}
	if err := e.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if !cr.liveAtTerminal {
		t.Error("the terminal report was sent with the grace already over")
	}
	if o := rep.outcome; o == nil || o.ExitCode == nil || *o.ExitCode != 7 {
		t.Errorf("outcome = %+v, want exit code 7", o)
	}
}

func TestCollectGraceKeepsAPartOfTheGraceForTheReport(t *testing.T) {
	for grace, want := range map[time.Duration]time.Duration{
		DefaultGrace:           DefaultGrace - reportReserve,
		40 * time.Second:       30 * time.Second,
		8 * time.Second:        6 * time.Second,
		400 * time.Millisecond: 300 * time.Millisecond,
	} {
		if got := collectGrace(grace); got != want {
			t.Errorf("collectGrace(%s) = %s, want %s", grace, got, want)
		}
	}
}
