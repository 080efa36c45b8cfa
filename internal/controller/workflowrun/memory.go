package workflowrun

import (
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// expectationTimeout forgets a created StepRun never seen in the cache (deleted at once by
// someone else); the item is then created again under the same name.
const expectationTimeout = time.Minute

// memory is what the controller remembers between reconciles of one run. None of it is
// needed for correctness after a restart — the StepRuns are the source of truth — it only
// saves work and bridges the gap between a create and the cache seeing it.
type memory struct {
	runs sync.Map // types.NamespacedName → *runMemory
}

type runMemory struct {
	uid types.UID

	// plan is compiled once per generation.
	generation int64
	plan       *Plan
	planErr    error

	mu sync.Mutex
	// resolutions of steps whose inputs are final, by step name. Guarded by mu: creates add
	// item errors concurrently.
	resolutions map[string]*resolution
	expected    map[string]expectation
	// podDeletes remembers, per StepRun UID, the resourceVersion at which its Pod was deleted
	// on cancel, so it is deleted again only if the StepRun moved on without ending.
	podDeletes map[types.UID]string
	// lastStatusWrite rate-limits status writes.
	lastStatusWrite time.Time
	// cost is what the last reconcile spent listing and evaluating the run's StepRuns (ns);
	// StepRun events are batched in proportion (batchDelay). Read by event handlers.
	cost atomic.Int64
}

func (m *memory) get(key types.NamespacedName, uid types.UID) *runMemory {
	if v, ok := m.runs.Load(key); ok && v.(*runMemory).uid == uid {
		return v.(*runMemory)
	}
	rm := &runMemory{uid: uid, generation: -1, resolutions: map[string]*resolution{},
		expected: map[string]expectation{}, podDeletes: map[types.UID]string{}}
	m.runs.Store(key, rm)
	return rm
}

func (m *memory) forget(key types.NamespacedName) { m.runs.Delete(key) }

// evalCost is the last evaluation cost of the run at key, zero for a run not reconciled yet.
func (m *memory) evalCost(key types.NamespacedName) time.Duration {
	if v, ok := m.runs.Load(key); ok {
		return time.Duration(v.(*runMemory).cost.Load())
	}
	return 0
}

// expect records a created StepRun until the cache shows it.
func (rm *runMemory) expect(name string, e expectation) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	rm.expected[name] = e
}

func (rm *runMemory) unexpect(name string) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	delete(rm.expected, name)
}

// pending drops expectations the cache has met or that timed out, and returns the rest.
func (rm *runMemory) pending(seen func(name string) bool, now time.Time) map[string]expectation {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	out := make(map[string]expectation, len(rm.expected))
	for name, e := range rm.expected {
		if seen(name) || now.Sub(e.at) > expectationTimeout {
			delete(rm.expected, name)
			continue
		}
		out[name] = e
	}
	return out
}

// itemFailed records an item that cannot be created (its name belongs to someone else, or
// the API server refused the substituted spec); it is final until the controller restarts.
func (rm *runMemory) itemFailed(step string, item int, msg string) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if res := rm.resolutions[step]; res != nil {
		if res.itemErr == nil {
			res.itemErr = map[int]string{}
		}
		res.itemErr[item] = msg
	}
}
