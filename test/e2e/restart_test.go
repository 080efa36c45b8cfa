//go:build e2e

package e2e

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

func managerPods() []corev1.Pod {
	pods := &corev1.PodList{}
	ExpectWithOffset(1, k8s.List(ctx, pods, client.InNamespace(managerNamespace),
		client.MatchingLabels{managerLabel: managerName})).To(Succeed())
	return pods.Items
}

// Serial: it takes the operator away for a while, which no other case should see.
var _ = Describe("the leading manager restarted while StepRuns run", Serial, func() {
	It("ends every StepRun, with exactly one Pod each", func() {
		ns := newNamespace("restart", nil)
		const n = 10
		runs := make([]*v1alpha1.StepRun, n)
		for i := range runs {
			runs[i] = create(shell(step(fmt.Sprintf("run-%02d", i), ns), "sleep 6; printf done > /pnsflow/outputs/v").
				Output("v", "/pnsflow/outputs/v", nil).Obj())
		}
		By("waiting until the first run is Running")
		inPhase(runs[0], v1alpha1.StepRunRunning, runTimeout)

		By("deleting the leading manager's Pod (the standby takes the lease; the Deployment makes a new standby)")
		leader, err := managerLeader()
		Expect(err).NotTo(HaveOccurred())
		var old corev1.Pod
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: managerNamespace, Name: leader}, &old)).To(Succeed())
		Expect(k8s.Delete(ctx, &old, client.Preconditions{UID: &old.UID})).To(Succeed())

		for _, sr := range runs {
			got := terminal(sr, 3*time.Minute)
			Expect(got.Status.Phase).To(Equal(v1alpha1.StepRunSucceeded), describeStatus(got))
			Expect(outputs(got)).To(Equal(map[string]string{"v": "done"}), describeStatus(got))
			Expect(podsOf(got)).To(HaveLen(1), "exactly one Pod for %s", got.Name)
		}

		By("waiting for every manager replica, so later cases find them serving")
		Eventually(managerReady).WithTimeout(3 * time.Minute).Should(Succeed())
		Expect(managerPods()).NotTo(ContainElement(HaveField("UID", old.UID)), "the deleted manager is gone")
		Expect(managerLeader()).NotTo(Equal(old.Name), "another manager leads")
		// A run created after the restart is served by the new manager (and its Pod created once).
		late := terminal(create(shell(step("after-restart", ns), "true").Obj()), runTimeout)
		Expect(late.Status.Phase).To(Equal(v1alpha1.StepRunSucceeded), describeStatus(late))
		Expect(podsOf(late)).To(HaveLen(1))
	})
})
