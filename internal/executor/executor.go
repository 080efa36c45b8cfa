package executor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"
	"k8s.io/client-go/rest"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

// The steps, as Run uses them.
type (
	// Finder finds main's pid; firstScan is called once after its first complete look.
	Finder interface {
		Find(ctx context.Context, firstScan func() error) (int, error)
	}
	// Securer pins main's process and holds its root filesystem.
	Securer interface {
		Secure(pid int) (*MainProcess, error)
	}
	// Waiter waits for main's process to exit.
	Waiter interface {
		Wait(ctx context.Context, p *MainProcess) error
	}
	// PodStatus follows main's state in the Pod's status: Run watches until main terminated;
	// MainStarted and MainTerminated wait for what it saw.
	PodStatus interface {
		Run(ctx context.Context) error
		MainStarted(ctx context.Context) (MainState, error)
		MainTerminated(ctx context.Context) (Termination, error)
		// Deleting is closed once the Pod is seen being deleted.
		Deleting() <-chan struct{}
	}
	// OutputCollector reads the outputs; root is nil when main's root was never held.
	OutputCollector interface {
		Collect(root *os.File) Collected
	}
	// ResultReader reads the tail of main's log.
	ResultReader interface {
		Result(ctx context.Context) (string, error)
	}
	// StatusReporter patches the StepRun's status.
	StatusReporter interface {
		ReportRunning(ctx context.Context, startedAt time.Time) error
		ReportTerminal(ctx context.Context, o Outcome) error
	}
	// StdinWriter writes main's stdin.
	StdinWriter interface {
		Feed(ctx context.Context) error
	}
)

// ErrNoExitCode is returned by Run when it was stopped before main's exit code was known; no
// terminal status was reported, and the controller decides from the Pod.
var ErrNoExitCode = errors.New("stopped before main's exit code was known; no terminal status reported")

// resultTimeout bounds reading main's log, so a slow log endpoint cannot hold back the report.
const resultTimeout = 30 * time.Second

// DefaultGrace is how long Run goes on after its context ends (SIGTERM) to learn main's exit
// code and report it. kubelet sends the sidecar SIGTERM as soon as main has ended, often before
// it has published main's exit code; on a loaded node that publication (and the report) can take
// many seconds, and an API server outage as long as it lasts: a 25 s grace lost runs whose main
// ended during a 24 s outage. It is most of the Pod's terminationGracePeriodSeconds (90 s, set by
// the Pod builder); a deleted Pod ends it at once.
const DefaultGrace = 80 * time.Second

// Executor runs one step's watch: find → secure → report Running → wait → exit code → collect →
// result → report terminal.
type Executor struct {
	Finder    Finder
	Securer   Securer
	Waiter    Waiter
	Pod       PodStatus
	Collector OutputCollector
	Results   ResultReader
	Reporter  StatusReporter
	// Stdin is nil when the StepRun has no stdin.
	Stdin StdinWriter
	// Ready is called once the first look at /proc is done: from then on main cannot start
	// unseen by the finder, so the startup probe may pass. Its error ends Run.
	Ready func() error
	// StopReady is called once the look for main has ended (main caught, or never to be): the
	// probe passed before kubelet started main, and the port is main's to use from then on.
	StopReady func() error
	// Artifacts stores the output artifacts; nil when there are none.
	Artifacts *ArtifactCollector
	// Logs archives main's log while main runs, and gives the result; nil when the run does not
	// archive it.
	Logs *LogArchiver
	// AdoptMainIDs, when set, makes the executor take main's UID, GID and groups once main is
	// found, before its root is opened (an executor started as root because main's IDs were not
	// known).
	AdoptMainIDs func(pid int) (IDs, error)
	// Grace is how long Run goes on after ctx ends to learn the exit code and report it.
	Grace time.Duration
	// BootTime reads CLOCK_BOOTTIME (MainProcess.Started's clock); nil means the real clock.
	BootTime func() time.Duration
	Log      logr.Logger

	// marks are the stage times the reports carry.
	marks stageMarks
	// startedBoot is when this executor process started, on the boot clock.
	startedBoot time.Duration
}

// Timings are the stage times the executor knows now, for its reports.
func (e *Executor) Timings() v1alpha1.StepRunTimings { return e.marks.timings() }

// Options are what New needs to wire an Executor.
type Options struct {
	Config executorconfig.Config
	REST   *rest.Config
	// ProcRoot is the proc filesystem; "" means /proc.
	ProcRoot string
	// MainParent is main's parent pid as ProcRoot shows it: 0, the default, in a Pod.
	MainParent int
	// ReadyAddr is where to listen for the startup probe when ready; "" means every address of
	// the Pod on executorconfig.ReadyPort.
	ReadyAddr string
	// Grace is Executor.Grace; zero means DefaultGrace.
	Grace time.Duration
	Log   logr.Logger
}

// New wires an Executor from the Pod's configuration and the in-cluster REST config.
func New(o Options) (*Executor, error) {
	c := o.Config
	if o.ProcRoot == "" {
		o.ProcRoot = DefaultProcRoot
	}
	if o.ReadyAddr == "" {
		o.ReadyAddr = fmt.Sprintf(":%d", executorconfig.ReadyPort)
	}
	if o.Grace == 0 {
		o.Grace = DefaultGrace
	}
	// One core client serves the Pod watch, the log and the attach.
	core, err := newCoreClient(o.REST)
	if err != nil {
		return nil, err
	}
	pod := NewPodWatcherForClient(core, c.Namespace, c.Pod)
	logs := NewPodLogsForClient(core, c.Namespace, c.Pod)
	reporter, err := NewReporter(o.REST, c.Namespace, c.StepRun)
	if err != nil {
		return nil, err
	}
	reporter.UID = c.UID
	reporter.Info = RunInfoOf(c)
	reporter.Restarts = pod.ExecutorRestarts
	finder := NewProcFinder(o.ProcRoot, c.UID)
	finder.Parent = o.MainParent
	adopt := c.Privilege.AdoptMainIDs && os.Geteuid() == 0
	finder.AsOwner = adopt
	ready := &ReadySignal{Addr: o.ReadyAddr}
	// kubelet starts main only after the startup probe connects: look for it from then on.
	finder.Gate = ready.Connected()
	e := &Executor{
		Finder:    finder,
		Securer:   ProcSecurer{ProcRoot: o.ProcRoot, Marker: MarkerFor(c.UID)},
		Waiter:    PidfdWaiter{},
		Pod:       pod,
		Collector: Collector{Outputs: c.Outputs, Mounts: c.Mounts},
		Results:   logs,
		Reporter:  reporter,
		Ready:     ready.Signal,
		StopReady: ready.Close,
		Grace:     o.Grace,
		Log:       o.Log,
	}
	started, startedBoot := processStart(o.ProcRoot)
	e.marks.started(started)
	e.startedBoot = startedBoot
	reporter.Timings = e.Timings
	if (len(c.Artifacts) > 0 || c.Logs != nil) && c.Repository != nil {
		up, err := newUploader(*c.Repository)
		if err != nil {
			return nil, err
		}
		if len(c.Artifacts) > 0 {
			e.Artifacts = &ArtifactCollector{Artifacts: c.Artifacts, Mounts: c.Mounts, Uploader: up}
		}
		if c.Logs != nil {
			e.Logs = newLogArchiver(core, c, pod, up)
		}
	}
	if adopt {
		e.AdoptMainIDs = func(pid int) (IDs, error) {
			ids, err := ReadIDs(o.ProcRoot, pid)
			if err != nil {
				return IDs{}, err
			}
			if err := AdoptIDs(ids); err != nil {
				return ids, err
			}
			// Runs before any report: the ExecutorPrivileged condition says which IDs were taken.
			reporter.Info.Privilege.Message += fmt.Sprintf("; it took main's UID %d and GID %d", ids.UID, ids.GID)
			return ids, nil
		}
	}
	if c.Stdin {
		attacher := &PodAttacher{cfg: o.REST, client: core, namespace: c.Namespace, pod: c.Pod}
		e.Stdin = &StdinFeeder{StepRun: reporter, Pod: pod, Attacher: attacher}
	}
	return e, nil
}

// Run watches main through to its terminal report. When ctx ends (SIGTERM), Run goes on for
// Grace to learn main's exit code; it reports the terminal status if it learns it, and returns
// ErrNoExitCode otherwise.
func (e *Executor) Run(ctx context.Context) error {
	log := e.Log
	ctx = logr.NewContext(ctx, log)
	e.marks.started(time.Now())
	if e.startedBoot == 0 {
		e.startedBoot = e.bootTime()
	}
	// A deleted Pod ends the grace at once: kubelet stops main too, and the controller records
	// the deletion (PodDeleted) rather than an exit code the deletion caused.
	work, cancelWork := withGrace(ctx, e.Grace, e.Pod.Deleting())
	defer cancelWork()
	// Collecting (artifacts, the log's archive, its tail) stops before the grace does, so the
	// exit code is still reported when an upload outlasts it.
	collect, cancelCollect := withGrace(ctx, collectGrace(e.Grace), e.Pod.Deleting())
	defer cancelCollect()
	// Reading main's log stops earlier still, so what was read of a log the kubelet serves
	// slower than main wrote it is stored, not lost with the upload.
	readLog, cancelReadLog := withGrace(ctx, collectGrace(collectGrace(e.Grace)), e.Pod.Deleting())
	defer cancelReadLog()

	var bg sync.WaitGroup
	defer bg.Wait()
	defer cancelWork() // runs before bg.Wait: stops the background goroutines
	bg.Go(func() {
		if err := e.Pod.Run(work); err != nil && work.Err() == nil {
			log.Error(err, "Watching the Pod stopped")
		}
	})
	if e.Stdin != nil {
		stdinCtx, stop := e.untilMainTerminated(work)
		bg.Go(func() {
			defer stop()
			if err := e.Stdin.Feed(stdinCtx); err != nil && stdinCtx.Err() == nil {
				log.Error(err, "Could not write main's stdin")
			}
		})
	}

	var archived chan ArchivedLog
	if e.Logs != nil {
		archived = make(chan ArchivedLog, 1)
		bg.Go(func() { archived <- e.Logs.Archive(collect, readLog) })
	}

	proc, err := e.findAndSecure(ctx)
	if err != nil {
		return err
	}
	defer proc.Close()
	var mainStarted time.Duration // on the boot clock
	if proc != nil {
		mainStarted = mainStart(proc.Started, proc.Found, e.startedBoot)
		e.marks.mainRan(bootToWall(mainStarted, e.bootTime(), time.Now()), time.Time{})
	}

	// Running is reported beside the wait, not before it: it waits for the kubelet to say main
	// runs, and the terminal report waits for it, so the two are never out of order.
	runningCtx, cancelRunning := context.WithCancel(work)
	defer cancelRunning()
	runningDone := make(chan struct{})
	go func() {
		defer close(runningDone)
		e.reportRunning(ctx, runningCtx)
	}()
	var measured time.Duration
	if proc != nil {
		measured = e.wait(work, proc, mainStarted)
	}

	term, err := e.Pod.MainTerminated(work)
	if err != nil {
		if work.Err() != nil {
			return ErrNoExitCode
		}
		return fmt.Errorf("%w: %w", ErrNoExitCode, err)
	}
	e.marks.kubelet(term.Pod, term.StartedAt, term.FinishedAt)
	log.Info("Main terminated", "exitCode", term.ExitCode, "reason", term.Reason, "podReason", term.PodReason, "cpu", ownCPU().String())

	var root *os.File
	if proc != nil {
		root = proc.Root
	}
	collected := e.Collector.Collect(root)
	if e.Artifacts != nil {
		var f *Failure
		collected.Artifacts, f = e.Artifacts.Collect(collect, root)
		collected.Failure = worse(collected.Failure, f)
	}
	var result *string
	if archived != nil {
		// The follow ends with main; the archive is complete once its upload is.
		a := <-archived
		if a.Artifact != nil {
			collected.Artifacts = append(collected.Artifacts, *a.Artifact)
			result = &a.Result
		}
		collected.Failure = worse(collected.Failure, a.Failure)
	}
	if f := collected.Failure; f != nil {
		log.Info("Collecting outputs failed", "reason", f.Reason, "message", f.Message)
	}
	if result == nil {
		resultCtx, cancelResult := context.WithTimeout(collect, resultTimeout)
		if s, err := e.Results.Result(resultCtx); err != nil {
			log.Error(err, "Could not read the tail of main's log")
		} else {
			result = &s
		}
		cancelResult()
	}

	o := Decide(term, collected, result, measured)
	// A Running report still being tried is stale now; stop it before the terminal one (should
	// it still reach the server after it, the schema refuses to change a terminal phase).
	cancelRunning()
	<-runningDone
	if err := e.Reporter.ReportTerminal(work, o); err != nil {
		if errors.Is(err, ErrAlreadyTerminal) {
			log.Info("StepRun already terminal; not reporting", "detail", err.Error())
			return nil
		}
		return fmt.Errorf("reporting the terminal status: %w", err)
	}
	log.Info("Reported", "phase", o.Phase, "reason", o.Reason, "exitCode", term.ExitCode, "cpu", ownCPU().String())
	return nil
}

// findAndSecure looks for main until it is found, the Pod says main terminated, or ctx ends,
// then holds its root. A nil process (no error) means main was never held: Run goes on with the
// Pod's word alone. Errors of the first look are fatal: without it main must not start.
func (e *Executor) findAndSecure(ctx context.Context) (*MainProcess, error) {
	log := e.Log
	findCtx, stop := e.untilMainTerminated(ctx)
	defer stop()
	if e.StopReady != nil {
		defer func() {
			if err := e.StopReady(); err != nil {
				log.Error(err, "Could not stop listening for the startup probe")
			}
		}()
	}
	ready := false
	pid, err := e.Finder.Find(findCtx, func() error {
		if e.Ready != nil {
			if err := e.Ready(); err != nil {
				return fmt.Errorf("signalling readiness: %w", err)
			}
		}
		ready = true
		log.Info("Watching for main", "cpu", ownCPU().String())
		return nil
	})
	found := e.bootTime()
	if st, ok := e.Finder.(interface{ Stats() FindStats }); ok {
		s := st.Stats()
		log.Info("Looked for main", "looks", s.Looks, "fullScans", s.FullScans,
			"fastWaits", s.Fast, "armedWaits", s.Armed, "idleWaits", s.Idle, "initLead", s.InitLead.String(), "cpu", ownCPU().String())
	}
	if err != nil {
		// Ended before its first look (SIGTERM, or the Pod already says main terminated: a
		// restarted executor may start just as main exits) is not a failure: the Pod's word
		// is all there is then too.
		switch {
		case findCtx.Err() == nil && !ready:
			return nil, fmt.Errorf("looking for main: %w", err)
		case findCtx.Err() == nil:
			log.Error(err, "Looking for main failed; relying on the Pod's status")
		case ctx.Err() != nil:
			log.Info("Stopped looking for main")
		default:
			log.Info("Main terminated before it was caught; relying on the Pod's status")
		}
		return nil, nil
	}
	if e.AdoptMainIDs != nil {
		if ids, err := e.AdoptMainIDs(pid); err != nil {
			log.Error(err, "Could not take main's IDs; its root filesystem may be out of reach", "pid", pid)
		} else {
			log.Info("Took main's IDs", "uid", ids.UID, "gid", ids.GID, "groups", ids.Groups)
		}
	}
	proc, err := e.Securer.Secure(pid)
	if err != nil {
		log.Error(err, "Could not hold main's root filesystem; relying on the Pod's status", "pid", pid)
		return nil, nil
	}
	log.Info("Holding main's root filesystem", "pid", pid)
	proc.Found = found
	return proc, nil
}

// reportRunning reports Running once the Pod says main runs, unless main already terminated or
// ctx ended (a Running report then would be stale). Failing to report Running is not fatal.
func (e *Executor) reportRunning(ctx, work context.Context) {
	st, err := e.Pod.MainStarted(work)
	if err != nil || st.Terminated != nil || st.Running == nil || ctx.Err() != nil {
		return
	}
	e.marks.kubelet(st.Pod, st.Running.StartedAt, time.Time{})
	if err := e.Reporter.ReportRunning(work, st.Running.StartedAt); err != nil {
		if errors.Is(err, ErrAlreadyTerminal) {
			e.Log.Info("StepRun already terminal; not reporting Running")
			return
		}
		e.Log.Error(err, "Could not report Running")
	}
}

// wait waits for main's process to exit, or for the Pod to say main terminated (the process held
// may outlive main when main's child was caught instead). It returns main's run time measured on
// the boot clock from started, or zero.
func (e *Executor) wait(work context.Context, proc *MainProcess, started time.Duration) time.Duration {
	waitCtx, stop := e.untilMainTerminated(work)
	defer stop()
	if err := e.Waiter.Wait(waitCtx, proc); err != nil {
		if work.Err() == nil && waitCtx.Err() == nil {
			e.Log.Error(err, "Waiting for main's process failed; relying on the Pod's status")
		}
		return 0
	}
	exited, bootNow := time.Now(), e.bootTime()
	e.marks.mainRan(time.Time{}, exited)
	if started <= 0 {
		return 0
	}
	if d := bootNow - started; d > 0 {
		return d
	}
	return 0
}

func (e *Executor) bootTime() time.Duration {
	if e.BootTime != nil {
		return e.BootTime()
	}
	return bootTime()
}

// untilMainTerminated returns a context that ends with parent or when the Pod says main
// terminated.
func (e *Executor) untilMainTerminated(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	go func() {
		if _, err := e.Pod.MainTerminated(ctx); err == nil {
			cancel()
		}
	}()
	return ctx, cancel
}

// withGrace returns a context that ends grace after parent ends, or as soon as parent has ended
// and cut is closed.
func withGrace(parent context.Context, grace time.Duration, cut <-chan struct{}) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	stop := context.AfterFunc(parent, func() {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-cut:
			cancel()
		case <-ctx.Done():
		}
	})
	return ctx, func() {
		stop()
		cancel()
	}
}

// reportReserve is the part of the grace kept for the terminal report: collecting stops that
// long before the grace ends (a quarter of the grace when that is shorter). Reading main's log
// for its archive stops as much before collecting does, leaving the upload time to finish.
const reportReserve = 10 * time.Second

// collectGrace is how long collecting may go on after SIGTERM, given the executor's grace.
func collectGrace(grace time.Duration) time.Duration {
	return grace - min(reportReserve, grace/4)
}

// ownCPU is the CPU time this process has used so far (user and system, every thread), zero
// when unknown: the executor logs it with its report, beside what its container's cgroup also
// charges it (the runtime's start, the startup probe's execs).
func ownCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
