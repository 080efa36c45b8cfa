//go:build chaos

package chaos

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	. "github.com/pnsflow/pnsflow/internal/testutil"
)

// The faults, one after another, each on runs of its own namespace. A fault is injected once
// the runs it hits are seen Running (through the tracker's watches, never after a sleep). A
// failed fault does not stop the next one: the table then shows every fault that ran.
var _ = Describe("Faults while runs are in flight", Ordered, ContinueOnFailure, func() {
	BeforeEach(func() {
		Eventually(managerReady).WithTimeout(3 * time.Minute).Should(Succeed())
	})

	It("kube-apiserver killed: every StepRun and fan-out item ends Succeeded once, with its output, and the manager serves again", apiServerKilled)
	It("leading manager's Pod deleted: every run ends Succeeded once, with its output, under the standby", managerDeleted)
	It("executors SIGKILLed by main (kill -9 -1 as UID 1000): kubelet restarts them and every run ends Succeeded with the output main wrote after the kill", executorsKilled)
	It("Pods evicted through the Eviction API: Error/PodEvicted; in a WorkflowRun an evicted step is retried by its retries, a never-started one by infrastructureRetries", podsEvicted)
	It("main OOM-killed: Error/OOMKilled with exit code 137, the runs beside it Succeeded", mainOOMKilled)

	AfterAll(func() {
		t := table()
		GinkgoWriter.Printf("\nFaults, measured:\n%s\n", t)
		AddReportEntry("faults table", t)
	})
})

// valueRuns makes n StepRuns named prefix-NN whose main runs work, then writes its own name to
// the output v: each run's value is distinct, so a value in the wrong run shows.
func valueRuns(ns, prefix string, n int, work string) []*v1alpha1.StepRun {
	runs := make([]*v1alpha1.StepRun, n)
	for i := range runs {
		name := fmt.Sprintf("%s-%02d", prefix, i)
		runs[i] = step(ns, name, fmt.Sprintf("%s\nprintf %s > %s/v", work, name, outputs)).Obj()
	}
	return runs
}

// fanOut is a WorkflowRun of one step over items 0..n-1, each writing its item to the output
// item after work.
func fanOut(ns, name string, n, parallelism int32, work string) *v1alpha1.WorkflowRun {
	return MakeWorkflowRun(name, ns).Parallelism(parallelism).Steps(
		wstep("work", work+"\n"+`printf "{{item}}" > `+outputs+`/item`).Output("item", outputs+"/item").Sequence(n),
	).Obj()
}

// expectValues checks that every run Succeeded with its own name as its value.
func expectValues(srs map[string]*v1alpha1.StepRun) {
	for name, sr := range srs {
		ExpectWithOffset(1, sr.Status.Phase).To(Equal(v1alpha1.StepRunSucceeded), describeStatus(sr))
		v, ok := output(sr, "v")
		ExpectWithOffset(1, ok && v == name).To(BeTrue(), "output v of %s is its name: %s", name, describeStatus(sr))
	}
}

// expectFanOut checks a fan-out over items 0..n-1 (verifyWorkflow's result) that must have
// Succeeded: every item's last attempt Succeeded with the item as its value, and an earlier
// attempt exists only where main never started (an infrastructure retry), so the run has
// exactly n StepRuns plus those retries.
func expectFanOut(wf *v1alpha1.WorkflowRun, items map[itemKey][]*v1alpha1.StepRun, n int) {
	ExpectWithOffset(1, wf.Status.Phase).To(Equal(v1alpha1.WorkflowRunSucceeded), "%+v", wf.Status)
	ExpectWithOffset(1, wf.Status.Progress).To(Equal(fmt.Sprintf("%d/%d", n, n)))
	ExpectWithOffset(1, items).To(HaveLen(n), "one item per value")
	retries := 0
	for i := range n {
		attempts := items[itemKey{"work", fmt.Sprint(i)}]
		ExpectWithOffset(1, attempts).NotTo(BeEmpty(), "item %d", i)
		last := attempts[len(attempts)-1]
		v, _ := output(last, "item")
		ExpectWithOffset(1, last.Status.Phase == v1alpha1.StepRunSucceeded && v == fmt.Sprint(i)).To(BeTrue(),
			"item %d Succeeded with its value: %s", i, describeStatus(last))
		for _, a := range attempts[:len(attempts)-1] {
			ExpectWithOffset(1, a.Status.NeverStartedInfrastructureFailure()).To(BeTrue(),
				"only a never-started attempt is retried here: %s", describeStatus(a))
			retries++
		}
	}
	ExpectWithOffset(1, flatten(items)).To(HaveLen(n+retries), "StepRuns of %s: one per item plus its infrastructure retries", wf.Name)
}

// retried counts the attempts that were followed by another.
func retried(items map[itemKey][]*v1alpha1.StepRun) int {
	n := 0
	for _, a := range items {
		n += len(a) - 1
	}
	return n
}

// managerState is the leading manager's Pod and its container's restart count.
type managerState struct {
	pod      string
	uid      types.UID
	restarts int32
}

func currentManager() managerState {
	leader, err := LeaderPod(ctx, k8s, managerNamespace, managerLease)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	p := corev1.Pod{}
	ExpectWithOffset(1, k8s.Get(ctx, client.ObjectKey{Namespace: managerNamespace, Name: leader}, &p)).To(Succeed(), "the leader %q", leader)
	var restarts int32
	for _, s := range p.Status.ContainerStatuses {
		restarts += s.RestartCount
	}
	return managerState{pod: p.Name, uid: p.UID, restarts: restarts}
}

// managerServing passes once the manager's leader Lease was renewed after since by a Ready
// manager Pod other than notUID: the manager is back at work, not merely running.
func managerServing(since time.Time, notUID types.UID) func(Gomega) {
	return func(g Gomega) {
		lease, err := cs.CoordinationV1().Leases(managerNamespace).Get(ctx, managerLease, metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(lease.Spec.RenewTime).NotTo(BeNil())
		g.Expect(lease.Spec.RenewTime.After(since)).To(BeTrue(), "the lease was renewed after the fault")
		holder := HolderPod(ptr.Deref(lease.Spec.HolderIdentity, ""))
		serving := false
		for _, p := range managerPods(g) {
			if holder == p.Name && p.UID != notUID && p.DeletionTimestamp == nil && podReady(&p) {
				serving = true
			}
		}
		g.Expect(serving).To(BeTrue(), "the lease holder %q is a Ready manager Pod", holder)
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// apiReady passes when the API server answers /readyz.
func apiReady(g Gomega) {
	_, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").Timeout(5 * time.Second).DoRaw(ctx)
	g.Expect(err).NotTo(HaveOccurred())
}

// inFlight names the StepRuns of the namespace that existed and had not ended at at.
func inFlight(t *tracker, at time.Time) func(string) (time.Time, bool) {
	return func(name string) (time.Time, bool) { return at, t.inFlightAt(name, at) }
}

func apiServerKilled() {
	ns := newNamespace("apiserver")
	t := track(ns)
	const runs, items, inFlightRuns, parallelism = 20, 50, 8, 10
	// Mains last long enough that StepRuns and items are Running together on a loaded node, and
	// that most of those in flight end while the API server is down.
	Expect(createRetrying(fanOut(ns, "fan", items, parallelism, "sleep 5"))).To(Succeed())
	b := t.start(valueRuns(ns, "run", runs, "sleep 6"), inFlightRuns)
	// A log followed across the kill, in a namespace of its own so that the table's timings are
	// the runs' alone.
	logNS := newNamespace("apiserver-logs")
	Expect(createRetrying(countingStep(logNS, "counted"))).To(Succeed())
	followed := followLogs(logNS, "counted")

	By("waiting for StepRuns and fan-out items in flight, and the followed log under way")
	Expect(t.waitUntil(4*time.Minute, "runs Running", func() bool {
		return t.countLocked(b.names, isRunning) >= 2 && t.countWorkflowLocked("fan", isRunning) >= 2
	})).To(Succeed())
	Eventually(followed.printed).WithTimeout(3*time.Minute).Should(ContainSubstring("line-1\n"), "kubectl pnsflow logs -f printed main's first line")
	Expect(followed.printed()).NotTo(ContainSubstring(fmt.Sprintf("line-%d\n", countedLines)), "the followed log is still being written at the kill")
	before := currentManager()

	By("killing kube-apiserver with SIGKILL; kubelet restarts its static Pod")
	faultAt := time.Now()
	out, err := nodeExec("kill -9 $(pidof kube-apiserver)")
	Expect(err).NotTo(HaveOccurred(), out)
	Eventually(func(g Gomega) {
		_, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").Timeout(2 * time.Second).DoRaw(ctx)
		g.Expect(err).To(HaveOccurred())
	}).WithTimeout(30*time.Second).Should(Succeed(), "the API server went away")
	Eventually(apiReady).WithTimeout(3*time.Minute).Should(Succeed(), "the API server came back")
	apiBack := time.Now()
	Eventually(managerServing(apiBack, "")).WithTimeout(4*time.Minute).Should(Succeed(), "the manager serves again")
	managerBack := time.Now()
	after := currentManager()
	restarts := after.restarts - before.restarts
	if after.uid != before.uid {
		restarts = -1 // another Pod leads: counted apart
	}
	GinkgoWriter.Printf("API down %s; manager serving %s after the kill (restarts %d)\n",
		apiBack.Sub(faultAt), managerBack.Sub(faultAt), restarts)

	Expect(t.finish(b, 6*time.Minute)).To(Succeed())
	Expect(t.workflowEnded("fan", 6*time.Minute)).To(Succeed())
	resumed := t.firstPodAfter(apiBack)

	srs := verifyRuns(t, b.names)
	wf, attempts := verifyWorkflow(t, "fan")
	all := append(values(srs), flatten(attempts)...)
	names := t.stepRunNames()
	lat := sinceFault(t, names, inFlight(t, faultAt))
	restartNote := fmt.Sprintf("%d restart(s) of the leader's container", restarts)
	if restarts < 0 {
		restartNote = "another manager Pod took the lease"
	}
	record(row{
		fault:       "kube-apiserver SIGKILLed",
		runs:        fmt.Sprintf("%d StepRuns (%d at a time) + a %d-item WorkflowRun (parallelism %d)", runs, inFlightRuns, items, parallelism),
		outcomes:    describeTally(tally(all...)),
		p50:         percentile(lat, 0.5),
		max:         percentile(lat, 1),
		allTerminal: t.lastEnded(names).Sub(faultAt),
		notes: fmt.Sprintf("%d runs in flight at the kill; API ready again after %s; manager serving after %s (%s); first new Pod %s after the API was back; %d item(s) retried",
			len(lat), secs(apiBack.Sub(faultAt)), secs(managerBack.Sub(faultAt)), restartNote, secs(resumed.Sub(apiBack)), retried(attempts)),
	})
	expectValues(srs)
	expectFanOut(wf, attempts, items)

	By("kubectl pnsflow logs -f printed the counting step's every line once, across the kill")
	stdout, stderr, err := followed.wait(6 * time.Minute)
	Expect(err).NotTo(HaveOccurred(), "kubectl pnsflow logs -f: %s", stderr)
	expectCounted(stdout)
	Expect(stderr).To(ContainSubstring("resuming after the last line printed"), "the follow broke with the API server and was resumed")
	AddReportEntry("kubectl pnsflow logs -f across the kill", stderr)
}

func managerDeleted() {
	ns := newNamespace("manager")
	t := track(ns)
	const runs, items, inFlightRuns, parallelism = 20, 6, 8, 3
	Expect(createRetrying(fanOut(ns, "fan", items, parallelism, "sleep 5"))).To(Succeed())
	b := t.start(valueRuns(ns, "run", runs, "sleep 5"), inFlightRuns)

	By("waiting for StepRuns and fan-out items in flight")
	Expect(t.waitUntil(4*time.Minute, "runs Running", func() bool {
		return t.countLocked(b.names, isRunning) >= 2 && t.countWorkflowLocked("fan", isRunning) >= 2
	})).To(Succeed())
	old := currentManager()

	By("deleting the leading manager's Pod; the standby must take the lease")
	faultAt := time.Now()
	Expect(k8s.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: managerNamespace, Name: old.pod}},
		client.Preconditions{UID: &old.uid})).To(Succeed())
	Eventually(managerServing(faultAt, old.uid)).WithTimeout(3*time.Minute).Should(Succeed(), "a new manager serves")
	managerBack := time.Now()

	Expect(t.finish(b, 5*time.Minute)).To(Succeed())
	Expect(t.workflowEnded("fan", 5*time.Minute)).To(Succeed())

	srs := verifyRuns(t, b.names)
	wf, attempts := verifyWorkflow(t, "fan")
	all := append(values(srs), flatten(attempts)...)
	names := t.stepRunNames()
	lat := sinceFault(t, names, inFlight(t, faultAt))
	record(row{
		fault:       "leading manager Pod deleted",
		runs:        fmt.Sprintf("%d StepRuns (%d at a time) + a %d-item WorkflowRun (parallelism %d)", runs, inFlightRuns, items, parallelism),
		outcomes:    describeTally(tally(all...)),
		p50:         percentile(lat, 0.5),
		max:         percentile(lat, 1),
		allTerminal: t.lastEnded(names).Sub(faultAt),
		notes: fmt.Sprintf("%d runs in flight at the delete; another manager served (lease renewed, Ready) after %s; first new Pod %s after the delete; %d item(s) retried",
			len(lat), secs(managerBack.Sub(faultAt)), secs(t.firstPodAfter(faultAt).Sub(faultAt)), retried(attempts)),
	})
	expectValues(srs)
	expectFanOut(wf, attempts, items)
}
