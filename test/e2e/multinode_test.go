//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/podspec"
	. "github.com/pnsflow/pnsflow/internal/testutil"
)

// workerLabel marks the kind cluster's worker nodes (KIND_WORKERS), valued w1, w2, ...
const workerLabel = "pnsflow.dev/worker"

// workers lists the labelled worker nodes in label order. Fewer than two skip the spec on a
// one-node cluster, and fail it when E2E_WORKERS (make test-e2e passes KIND_WORKERS) says the
// cluster was built with them, as in CI.
func workers() []corev1.Node {
	nodes := &corev1.NodeList{}
	ExpectWithOffset(1, k8s.List(ctx, nodes, client.HasLabels{workerLabel})).To(Succeed())
	sort.Slice(nodes.Items, func(i, j int) bool {
		return nodes.Items[i].Labels[workerLabel] < nodes.Items[j].Labels[workerLabel]
	})
	if len(nodes.Items) < 2 {
		asked, _ := strconv.Atoi(os.Getenv("E2E_WORKERS"))
		ExpectWithOffset(1, asked).To(BeNumerically("<", 2), "E2E_WORKERS=%d, but the cluster has %d labelled workers", asked, len(nodes.Items))
		Skip("needs two worker nodes: KIND_WORKERS=2 KIND_RECREATE=1 make quickstart")
	}
	return nodes.Items
}

// podNode is the node a StepRun's only Pod was bound to.
func podNode(sr *v1alpha1.StepRun) string {
	pods := podsOf(sr)
	ExpectWithOffset(1, pods).To(HaveLen(1), "%s has one Pod", sr.Name)
	return pods[0].Spec.NodeName
}

// fanOutRun is a WorkflowRun "fan" of n items at the given parallelism; each item runs script,
// then writes its item to the output item.
func fanOutRun(ns string, n, parallelism int32, script string) *WorkflowRunWrapper {
	return MakeWorkflowRun("fan", ns).Parallelism(parallelism).Steps(
		wstep("work", script+"\nprintf '{{item}}' > /pnsflow/outputs/item").Output("item", "/pnsflow/outputs/item").Sequence(n))
}

// itemRuns lists a WorkflowRun's StepRuns by item.
func itemRuns(wf *v1alpha1.WorkflowRun) map[string][]v1alpha1.StepRun {
	list := &v1alpha1.StepRunList{}
	ExpectWithOffset(1, k8s.List(ctx, list, client.InNamespace(wf.Namespace),
		client.MatchingLabels{v1alpha1.LabelWorkflowRun: wf.Name})).To(Succeed())
	byItem := map[string][]v1alpha1.StepRun{}
	for _, sr := range list.Items {
		byItem[sr.Labels[v1alpha1.LabelItem]] = append(byItem[sr.Labels[v1alpha1.LabelItem]], sr)
	}
	return byItem
}

// expectOnceEach checks a fan-out of n items that ended Succeeded: every item has exactly one
// Succeeded StepRun with its own item as output, and no StepRun has more than one Pod: nothing
// was made twice. It returns the other attempts, for the caller to judge.
func expectOnceEach(wf *v1alpha1.WorkflowRun, n int) (retried []v1alpha1.StepRun) {
	byItem := itemRuns(wf)
	ExpectWithOffset(1, byItem).To(HaveLen(n))
	pods := &corev1.PodList{}
	ExpectWithOffset(1, k8s.List(ctx, pods, client.InNamespace(wf.Namespace),
		client.MatchingLabels{v1alpha1.LabelWorkflowRun: wf.Name})).To(Succeed())
	podsOfRun := map[string]int{}
	for _, p := range pods.Items {
		podsOfRun[p.Labels[v1alpha1.LabelStepRun]]++
	}
	runs := 0
	for i := range n {
		item := strconv.Itoa(i)
		attempts := byItem[item]
		var succeeded []string
		for _, sr := range attempts {
			runs++
			// At most: the taint manager deletes every Pod of a lost node, and a finished one goes
			// at once (the API server needs no kubelet to delete a terminal Pod).
			ExpectWithOffset(1, podsOfRun[sr.Name]).To(BeNumerically("<=", 1), "%s has one Pod", sr.Name)
			if sr.Status.Phase == v1alpha1.StepRunSucceeded {
				succeeded = append(succeeded, sr.Name)
				ExpectWithOffset(1, outputs(&sr)).To(Equal(map[string]string{"item": item}), sr.Name)
			} else {
				retried = append(retried, sr)
			}
		}
		ExpectWithOffset(1, succeeded).To(HaveLen(1), "item %s: one Succeeded attempt of %d", item, len(attempts))
	}
	ExpectWithOffset(1, len(pods.Items)).To(BeNumerically("<=", runs), "no Pod besides one per StepRun")
	return retried
}

// stepRunsAtLeast waits until the WorkflowRun has made at least n StepRuns.
func stepRunsAtLeast(wf *v1alpha1.WorkflowRun, n int, timeout time.Duration) {
	EventuallyWithOffset(1, func(g Gomega) {
		list := &v1alpha1.StepRunList{}
		g.Expect(k8s.List(ctx, list, client.InNamespace(wf.Namespace),
			client.MatchingLabels{v1alpha1.LabelWorkflowRun: wf.Name})).To(Succeed())
		g.Expect(len(list.Items)).To(BeNumerically(">=", n))
	}).WithTimeout(timeout).Should(Succeed())
}

// leaderPod is the manager Pod holding the lease.
func leaderPod() *corev1.Pod {
	name, err := managerLeader()
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	pod := &corev1.Pod{}
	ExpectWithOffset(1, k8s.Get(ctx, client.ObjectKey{Namespace: managerNamespace, Name: name}, pod)).To(Succeed())
	return pod
}

// newLeaderAfter waits until a manager other than old holds the lease (its first write as the
// leader) and returns when that was seen, to within the 100 ms poll.
func newLeaderAfter(old string, timeout time.Duration) (string, time.Time) {
	var leader string
	EventuallyWithOffset(1, func(g Gomega) {
		var err error
		leader, err = managerLeader()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(leader).NotTo(Or(BeEmpty(), Equal(old)))
	}).WithTimeout(timeout).WithPolling(100 * time.Millisecond).Should(Succeed())
	return leader, time.Now()
}

func nodeReady(name string) bool {
	n := &corev1.Node{}
	ExpectWithOffset(1, k8s.Get(ctx, client.ObjectKey{Name: name}, n)).To(Succeed())
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// setTaint adds taint to the node, or removes it.
func setTaint(node string, taint corev1.Taint, on bool) {
	EventuallyWithOffset(1, func(g Gomega) {
		n := &corev1.Node{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: node}, n)).To(Succeed())
		var kept []corev1.Taint
		for _, t := range n.Spec.Taints {
			if t.Key != taint.Key {
				kept = append(kept, t)
			}
		}
		if on {
			kept = append(kept, taint)
		}
		n.Spec.Taints = kept
		g.Expect(k8s.Update(ctx, n)).To(Succeed())
	}).Should(Succeed())
}

// docker runs the Docker client kind's nodes run on.
func docker(args ...string) {
	out, err := exec.CommandContext(ctx, dockerBin(), args...).CombinedOutput()
	ExpectWithOffset(1, err).NotTo(HaveOccurred(), "docker %v: %s", args, out)
}

// restartNode starts a stopped kind node, waits for it to be Ready, reconnects the Pod networks
// (its routes went with it) and checks that its Pods reach the artifact repository.
func restartNode(name string) {
	docker("start", name)
	EventuallyWithOffset(1, func() bool { return nodeReady(name) }).WithTimeout(3 * time.Minute).Should(BeTrue())
	out, err := exec.CommandContext(ctx, filepath.Join("..", "..", "hack", "kind", "network.sh")).CombinedOutput()
	ExpectWithOffset(1, err).NotTo(HaveOccurred(), "hack/kind/network.sh: %s", out)
	GinkgoWriter.Printf("hack/kind/network.sh after restarting %s:\n%s", name, out)
	expectRepositoryReachableFrom(name)
}

var _ = Describe("Placement on a multi-node cluster", func() {
	It("spreads a 40-item fan-out with no placement over both workers", func() {
		ws := workers()
		ns := newNamespace("spread", nil)
		wf := fanOutRun(ns, 40, 40, "true").Obj()
		Expect(k8s.Create(ctx, wf)).To(Succeed())
		got := workflowTerminal(wf, 5*time.Minute)
		Expect(got.Status.Phase).To(Equal(v1alpha1.WorkflowRunSucceeded), "%+v", got.Status)
		perNode := map[string]int{}
		for _, runs := range itemRuns(wf) {
			for i := range runs {
				perNode[podNode(&runs[i])]++
			}
		}
		AddReportEntry("fan-out Pods per node", perNode)
		Expect(perNode).To(And(HaveKey(ws[0].Name), HaveKey(ws[1].Name)), "%v", perNode)
	})

	It("places Pods exactly where nodeSelector, tolerations and affinity ask", func() {
		ws := workers()
		w1, w2 := ws[0], ws[1]
		ns := newNamespace("placement", nil)
		taint := corev1.Taint{Key: "pnsflow.dev/e2e-dedicated", Value: ns, Effect: corev1.TaintEffectNoSchedule}
		setTaint(w1.Name, taint, true)
		DeferCleanup(func() { setTaint(w1.Name, taint, false) })
		tolerate := corev1.Toleration{Key: taint.Key, Operator: corev1.TolerationOpEqual, Value: ns, Effect: taint.Effect}
		onlyOn := func(label string) *corev1.Affinity {
			return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
					MatchExpressions: []corev1.NodeSelectorRequirement{{Key: workerLabel, Operator: corev1.NodeSelectorOpIn, Values: []string{label}}},
				}}},
			}}
		}
		want := map[*v1alpha1.StepRun]string{
			create(shell(step("selector", ns), "true").NodeSelector(workerLabel, w2.Labels[workerLabel]).Obj()):                      w2.Name,
			create(shell(step("toleration", ns), "true").NodeSelector(workerLabel, w1.Labels[workerLabel]).Tolerate(tolerate).Obj()): w1.Name,
			create(shell(step("affinity", ns), "true").Affinity(onlyOn(w1.Labels[workerLabel])).Tolerate(tolerate).Obj()):            w1.Name,
		}
		refused := create(shell(step("untolerated", ns), "true").Affinity(onlyOn(w1.Labels[workerLabel])).Obj())
		for sr, node := range want {
			got := terminal(sr, runTimeout)
			Expect(got.Status.Phase).To(Equal(v1alpha1.StepRunSucceeded), describeStatus(got))
			Expect(podNode(got)).To(Equal(node), got.Name)
		}
		By("a Pod that does not tolerate the only node it may use stays unscheduled, its run Pending")
		Eventually(func(g Gomega) {
			pods := podsOf(refused)
			g.Expect(pods).To(HaveLen(1))
			g.Expect(pods[0].Spec.NodeName).To(BeEmpty())
			g.Expect(pods[0].Status.Conditions).To(ContainElement(And(
				HaveField("Type", corev1.PodScheduled), HaveField("Status", corev1.ConditionFalse),
				HaveField("Reason", corev1.PodReasonUnschedulable))))
		}).WithTimeout(time.Minute).Should(Succeed())
		Expect(stepRun(ns, refused.Name).Status.Phase).To(Equal(v1alpha1.StepRunPending))
	})
})

// Serial: it takes the leading manager away twice, and a node.
var _ = Describe("A highly available manager on several nodes", Serial, func() {
	It("hands a 200-item fan-out to the standby when the leader's Pod is deleted, then when the leader's node is stopped; the node's runs end NodeLost in bound and are retried on the other worker; back, the node runs steps again", func() {
		ws := workers()
		ns := newNamespace("takeover", nil)
		wf := fanOutRun(ns, 200, 40, "true").Obj()
		wf.Spec.Steps[0].Retries = &v1alpha1.RetryStrategy{Limit: 2}
		Expect(k8s.Create(ctx, wf)).To(Succeed())

		By("deleting the leader's Pod once the fan-out is past its first wave")
		stepRunsAtLeast(wf, 41, 5*time.Minute)
		first := leaderPod()
		deletedAt := time.Now()
		Expect(k8s.Delete(ctx, first, client.Preconditions{UID: &first.UID})).To(Succeed())
		second, tookOver := newLeaderAfter(first.Name, time.Minute)
		AddReportEntry("takeover after the leader's Pod was deleted", fmt.Sprintf("%s led %s after the delete",
			second, tookOver.Sub(deletedAt).Round(100*time.Millisecond)))

		By("pinning two StepRuns to the new leader's node, then stopping that node")
		var lost, other string
		lostNode := leaderPod().Spec.NodeName
		labelOf := map[string]string{} // node name → its worker label
		for _, w := range ws {
			labelOf[w.Name] = w.Labels[workerLabel]
			if w.Name == lostNode {
				lost = w.Name
			} else if other == "" {
				other = w.Name
			}
		}
		Expect(lost).NotTo(BeEmpty(), "the leader %s runs on %s, a worker", second, lostNode)
		pinned := []*v1alpha1.StepRun{
			create(shell(step("pinned-0", ns), "sleep 3600").NodeSelector(workerLabel, labelOf[lost]).Obj()),
			create(shell(step("pinned-1", ns), "sleep 3600").NodeSelector(workerLabel, labelOf[lost]).Obj()),
		}
		for _, sr := range pinned {
			// Beside 40 starting Pods, a Pod can take a minute to start on two cores.
			inPhase(sr, v1alpha1.StepRunRunning, 5*time.Minute)
		}
		fanning := &v1alpha1.WorkflowRun{}
		Expect(k8s.Get(ctx, key(wf), fanning)).To(Succeed())
		Expect(fanning.Status.Phase.IsTerminal()).To(BeFalse(), "the fan-out is still running when the node stops: %s", fanning.Status.Progress)
		stoppedAt := time.Now()
		docker("stop", lost)
		DeferCleanup(func() {
			if !nodeReady(lost) {
				restartNode(lost)
			}
		})
		third, tookOver := newLeaderAfter(second, time.Minute)
		Eventually(func() bool { return nodeReady(lost) }).WithTimeout(3 * time.Minute).WithPolling(500 * time.Millisecond).Should(BeFalse())
		notReadyAt := time.Now()
		AddReportEntry("takeover after the leader's node was stopped", fmt.Sprintf("%s led %s after the stop, at %s of the fan-out; the node NotReady after %s",
			third, tookOver.Sub(stoppedAt).Round(100*time.Millisecond), fanning.Status.Progress, notReadyAt.Sub(stoppedAt).Round(time.Second)))

		By("the runs on it end NodeLost within node-lost-after of the node going NotReady")
		bound := podspec.DefaultNodeLostAfter + 30*time.Second
		for _, sr := range pinned {
			got, endedAt, err := awaitStepRun(ctx, key(sr), bound+30*time.Second, isTerminal)
			Expect(err).NotTo(HaveOccurred())
			Expect(got.Status.Phase).To(Equal(v1alpha1.StepRunError), describeStatus(got))
			Expect(got.Status.Reason).To(Equal(v1alpha1.ReasonNodeLost), describeStatus(got))
			Expect(endedAt.Sub(notReadyAt)).To(BeNumerically("<=", bound), got.Name)
			AddReportEntry("node lost: "+got.Name, fmt.Sprintf("NodeLost %s after the stop, %s after NotReady",
				endedAt.Sub(stoppedAt).Round(time.Second), endedAt.Sub(notReadyAt).Round(time.Second)))
		}

		By("the fan-out ends Succeeded: one success and one Pod per item, the lost items retried on the other worker")
		got := workflowTerminal(wf, 20*time.Minute)
		Expect(got.Status.Phase).To(Equal(v1alpha1.WorkflowRunSucceeded), "%+v", got.Status)
		// Besides the lost node's runs, a 2-core cluster this loaded has the runtime fail a start
		// now and then (containerd timing out on a sandbox's state: MainStartFailed); those are
		// retried like any Error, so every failed attempt is an Error and none is left unretried.
		lostItems, reasons := map[string]bool{}, map[string]int{}
		for _, f := range expectOnceEach(wf, 200) {
			Expect(f.Status.Phase).To(Equal(v1alpha1.StepRunError), describeStatus(&f))
			reasons[f.Status.Reason]++
			if f.Status.Reason == v1alpha1.ReasonNodeLost {
				lostItems[f.Labels[v1alpha1.LabelItem]] = true
			}
		}
		AddReportEntry("fan-out attempts retried, by reason", reasons)
		Expect(lostItems).NotTo(BeEmpty(), "items were in flight on the node when it stopped")
		movedOn := 0
		for item, runs := range itemRuns(wf) {
			if !lostItems[item] {
				continue
			}
			for i := range runs {
				if runs[i].Status.Phase == v1alpha1.StepRunSucceeded {
					Expect(podNode(&runs[i])).To(Equal(other), "item %s's retry", item)
					movedOn++
				}
			}
		}
		AddReportEntry("fan-out items lost with the node and retried on the other worker", movedOn)

		By("starting the node again: it rejoins and runs the next StepRun pinned to it")
		restartNode(lost)
		back := terminal(create(shell(step("back", ns), "true").NodeSelector(workerLabel, labelOf[lost]).Obj()), 3*time.Minute)
		Expect(back.Status.Phase).To(Equal(v1alpha1.StepRunSucceeded), describeStatus(back))
		Expect(podNode(back)).To(Equal(lost))
		Eventually(managerReady).WithTimeout(3 * time.Minute).Should(Succeed())
	})
})
