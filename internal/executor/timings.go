package executor

import (
	"os"
	"sync"
	"time"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

// stageMarks are the stage times the executor knows, read by each report as they are then.
// Its own (its start, main's start and exit) are microsecond wall-clock times; the Pod's and the
// kubelet's fill in what it did not see. The first time known for a mark stays, as in the status
// (v1alpha1.MergeTimings).
type stageMarks struct {
	mu sync.Mutex
	t  v1alpha1.StepRunTimings
}

// add records the marks of next that are not known yet.
func (m *stageMarks) add(next v1alpha1.StepRunTimings) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if merged := v1alpha1.MergeTimings(&m.t, next); merged != nil {
		m.t = *merged
	}
}

// started records the executor's start.
func (m *stageMarks) started(t time.Time) {
	m.add(v1alpha1.StepRunTimings{ExecutorStarted: v1alpha1.MicroTimeOf(t)})
}

// mainRan records main's start and exit as the executor saw them; a zero time is left unset.
func (m *stageMarks) mainRan(started, exited time.Time) {
	m.add(v1alpha1.StepRunTimings{}.WithMain(started, exited))
}

// kubelet records what the Pod says: its own times, and main's start and exit (one-second
// precision) where the executor saw none.
func (m *stageMarks) kubelet(pod v1alpha1.StepRunTimings, mainStarted, mainExited time.Time) {
	m.add(pod.WithMain(mainStarted, mainExited))
}

// timings is what a report records; the terminal report adds when it is sent.
func (m *stageMarks) timings() v1alpha1.StepRunTimings {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.t
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
