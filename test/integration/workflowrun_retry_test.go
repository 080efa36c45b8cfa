package integration

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	. "github.com/pnsflow/pnsflow/internal/testutil"
)

// endWithError ends a StepRun Error/reason once its Pod exists, through the status subresource.
// mainStarted, unless empty, is the MainStarted condition's status: False plays the StepRun
// controller ending a run whose main never started; True plays an executor that saw main run
// before it was lost.
func endWithError(namespace, name, reason string, mainStarted metav1.ConditionStatus) {
	pending(stepRun(namespace, name))
	ExpectWithOffset(1, retry.RetryOnConflict(executorBackoff, func() error {
		sr := &v1alpha1.StepRun{}
		if err := k8s.Get(ctx, key(namespace, name), sr); err != nil {
			return err
		}
		now := time.Now()
		sr.Status.SetTimes(nil, &now)
		sr.Status.SetPhase(v1alpha1.StepRunError, reason, "injected by the test", sr.Generation, now)
		if mainStarted != "" {
			c := metav1.Condition{Type: v1alpha1.ConditionMainStarted, Status: mainStarted,
				Reason: v1alpha1.ReasonMainNeverStarted, ObservedGeneration: sr.Generation}
			if mainStarted == metav1.ConditionTrue {
				c.Reason = v1alpha1.ReasonMainStarted
			}
			meta.SetStatusCondition(&sr.Status.Conditions, c)
		}
		return k8s.Status().Update(ctx, sr)
	})).To(Succeed())
}

// neverStarted plays the StepRun controller ending a run whose main never started.
func neverStarted(namespace, name string) {
	endWithError(namespace, name, v1alpha1.ReasonExecutorLost, metav1.ConditionFalse)
}

var _ = Describe("WorkflowRun infrastructure retries", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace(nil) })

	It("retries a step whose main never started, without retries.limit, and succeeds", func() {
		wfr := createRun(MakeWorkflowRun("infra", ns).Steps(MakeStep("a")).Obj())
		neverStarted(ns, "infra-a")

		r1 := stepRun(ns, "infra-a-r1")
		Expect(r1.Labels).To(HaveKeyWithValue(v1alpha1.LabelAttempt, "1"))
		succeed(ns, r1.Name)
		Eventually(runStatus(wfr)).Should(HaveField("Phase", v1alpha1.WorkflowRunSucceeded))

		got := &v1alpha1.WorkflowRun{}
		Expect(k8s.Get(ctx, key(ns, wfr.Name), got)).To(Succeed())
		Expect(got.Spec.Steps[0].Retries).To(BeNil(), "the step has no retries of its own")
		Expect(got.Spec.InfrastructureRetries).To(HaveValue(Equal(int32(v1alpha1.DefaultInfrastructureRetries))), "the schema default")
		Expect(got.Status.Steps[0]).To(And(HaveField("Phase", v1alpha1.StepSucceeded),
			HaveField("Attempts", int32(2)), HaveField("StepRun", "infra-a-r1")))
		Expect(got.Status.Counts).To(And(HaveField("Retries", int32(1)), HaveField("Succeeded", int32(1))))
		Expect(names(stepRunsOf(wfr))).To(Equal([]string{"infra-a", "infra-a-r1"}))
	})

	DescribeTable("does not retry a step whose main may have run, when the step has no retries",
		func(mainStarted metav1.ConditionStatus) {
			wfr := createRun(MakeWorkflowRun("started", ns).Steps(MakeStep("a")).Obj())
			endWithError(ns, "started-a", v1alpha1.ReasonExecutorLost, mainStarted)
			Eventually(runStatus(wfr)).Should(And(HaveField("Phase", v1alpha1.WorkflowRunFailed),
				HaveField("Message", ContainSubstring("StepRun started-a ended Error (ExecutorLost): injected by the test"))))
			Expect(runStatus(wfr)(Default).Message).NotTo(ContainSubstring("never started"))
			Consistently(func() []string { return names(stepRunsOf(wfr)) }, "500ms").Should(Equal([]string{"started-a"}))
		},
		Entry("MainStarted True", metav1.ConditionTrue),
		Entry("no MainStarted condition", metav1.ConditionStatus("")),
	)

	It("retries nothing with infrastructureRetries 0", func() {
		wfr := createRun(MakeWorkflowRun("off", ns).InfrastructureRetries(0).Steps(MakeStep("a")).Obj())
		neverStarted(ns, "off-a")
		Eventually(runStatus(wfr)).Should(And(HaveField("Phase", v1alpha1.WorkflowRunFailed),
			HaveField("Message", ContainSubstring("main never started; infrastructureRetries is 0"))))
		Consistently(func() []string { return names(stepRunsOf(wfr)) }, "500ms").Should(Equal([]string{"off-a"}))
	})

	It("fails the item once its infrastructure retries are used up, counting them again after a manager restart", func() {
		wfr := createRun(MakeWorkflowRun("bound", ns).InfrastructureRetries(1).Steps(MakeStep("fan").Sequence(2)).Obj())
		succeed(ns, stepRun(ns, "bound-fan-0").Name)
		neverStarted(ns, "bound-fan-1")
		pending(stepRun(ns, "bound-fan-1-r1"))

		By("ending the retry while no manager runs: the next one rebuilds the count from the StepRuns")
		stopManager()
		neverStarted(ns, "bound-fan-1-r1")
		stopManager = startManager()

		Eventually(runStatus(wfr)).Should(And(HaveField("Phase", v1alpha1.WorkflowRunFailed),
			HaveField("Message", ContainSubstring("StepRun bound-fan-1-r1 ended Error (ExecutorLost): injected by the test; main never started; infrastructure retries used up (1)"))))
		Consistently(func() []string { return names(stepRunsOf(wfr)) }, "500ms").Should(Equal([]string{"bound-fan-0", "bound-fan-1", "bound-fan-1-r1"}))
		st := runStatus(wfr)(Default)
		Expect(st.Steps[0].Items).To(HaveValue(And(HaveField("Succeeded", int32(1)), HaveField("Error", int32(1)), HaveField("Retries", int32(1)))))
		Expect(st.Steps[0].StepRun).To(Equal("bound-fan-1-r1"))
	})
})
