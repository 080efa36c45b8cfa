package executor

import (
	"os"
	"sync"
	"time"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

// stageMarks are the stage times the executor knows, read by each report as they are then.
// Its own (its start, main's start and exit) are microsecond wall-clock times; the Pod's and the
// kubelet's fill in what it did not see.
type stageMarks struct {
	mu              sync.Mutex
	executorStarted time.Time
	mainStarted     time.Time
	mainExited      time.Time
	pod             v1alpha1.StepRunTimings // its Pod's creation and scheduling
}

// started records the executor's start, once.
func (m *stageMarks) started(t time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.executorStarted.IsZero() {
		m.executorStarted = t
	}
}

// mainRan records main's start and exit as the executor saw them; a zero time is left unset.
func (m *stageMarks) mainRan(started, exited time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mainStarted.IsZero() {
		m.mainStarted = started
	}
	if m.mainExited.IsZero() {
		m.mainExited = exited
	}
}

// kubelet records what the Pod says: its own times, and main's start and exit (one-second
// precision) where the executor saw none.
func (m *stageMarks) kubelet(pod v1alpha1.StepRunTimings, mainStarted, mainExited time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if pod.PodCreated != nil {
		m.pod.PodCreated = pod.PodCreated
	}
	if pod.PodScheduled != nil {
		m.pod.PodScheduled = pod.PodScheduled
	}
	if m.mainStarted.IsZero() {
		m.mainStarted = mainStarted
	}
	if m.mainExited.IsZero() {
		m.mainExited = mainExited
	}
}

// timings is what a report records; the terminal report adds when it is sent.
func (m *stageMarks) timings() v1alpha1.StepRunTimings {
	m.mu.Lock()
	defer m.mu.Unlock()
	return v1alpha1.StepRunTimings{
		PodCreated:      m.pod.PodCreated,
		PodScheduled:    m.pod.PodScheduled,
		ExecutorStarted: v1alpha1.MicroTimeOf(m.executorStarted),
		MainStarted:     v1alpha1.MicroTimeOf(m.mainStarted),
		MainExited:      v1alpha1.MicroTimeOf(m.mainExited),
	}
}

// mainStart is when main started, on the boot clock, from its process's start, when the finder
// found it and when this executor started. The finder sees main within a scan of its exec, so
// that is main's start: the process itself started earlier as the runtime's init, which waits for
// the kubelet (seconds on a loaded node) before it execs main. A process older than this executor
// was found by a restarted executor, long after main started: then its start is all there is.
func mainStart(processStarted, found, executorStarted time.Duration) time.Duration {
	if processStarted > 0 && executorStarted > 0 && processStarted < executorStarted {
		return processStarted
	}
	return found
}

// bootToWall converts a CLOCK_BOOTTIME instant to wall-clock time, given both clocks now.
func bootToWall(at, bootNow time.Duration, wallNow time.Time) time.Time {
	if at <= 0 || at > bootNow {
		return time.Time{}
	}
	return wallNow.Add(at - bootNow)
}

// processStart is when this process started, from /proc/self/stat (10 ms precision), as wall
// time and on the boot clock; now when that cannot be read.
func processStart(procRoot string) (time.Time, time.Duration) {
	now, boot := time.Now(), bootTime()
	_, ticks, err := readStat(procRoot, os.Getpid())
	if err != nil {
		return now, boot
	}
	started := time.Duration(ticks) * time.Second / clockTicksPerSecond
	if t := bootToWall(started, boot, now); !t.IsZero() {
		return t, started
	}
	return now, boot
}
