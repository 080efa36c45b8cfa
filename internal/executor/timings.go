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

// bootToWall converts a CLOCK_BOOTTIME instant to wall-clock time, given both clocks now.
func bootToWall(at, bootNow time.Duration, wallNow time.Time) time.Time {
	if at <= 0 || at > bootNow {
		return time.Time{}
	}
	return wallNow.Add(at - bootNow)
}

// processStart is when this process started, from /proc/self/stat (10 ms precision); now when
// that cannot be read.
func processStart(procRoot string) time.Time {
	now, boot := time.Now(), bootTime()
	_, ticks, err := readStat(procRoot, os.Getpid())
	if err != nil {
		return now
	}
	if t := bootToWall(time.Duration(ticks)*time.Second/clockTicksPerSecond, boot, now); !t.IsZero() {
		return t
	}
	return now
}
