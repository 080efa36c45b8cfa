package integration

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executor"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
	"github.com/pnsflow/pnsflow/internal/podspec"
	. "github.com/pnsflow/pnsflow/internal/testutil"
)

// asExecutor is the API config of an executor in namespace ns: the pnsflow-executor service
// account, so these tests also prove its ClusterRole is enough.
func asExecutor(ns string) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + ns + ":pnsflow-executor",
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}
	return c
}

func reporterFor(sr *v1alpha1.StepRun) *executor.Reporter {
	r, err := executor.NewReporter(asExecutor(sr.Namespace), sr.Namespace, sr.Name)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	r.UID = string(sr.UID)
	return r
}

var _ = Describe("The executor against a real API server", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace(nil) })

	It("reports Running and then Succeeded with outputs, as the pnsflow-executor account", func() {
		sr := create(MakeStepRun("happy", ns).Output("greeting", "/pnsflow/outputs/greeting", nil).Obj())
		pending(sr)
		rep := reporterFor(sr)
		// The executor's own stage times, microseconds and all.
		executorStarted := time.Now().Add(-1234 * time.Microsecond).UTC()
		rep.Timings = func() v1alpha1.StepRunTimings {
			return v1alpha1.StepRunTimings{ExecutorStarted: v1alpha1.MicroTimeOf(executorStarted)}
		}

		By("watching its own Pod until kubelet says main terminated")
		watcher, err := executor.NewPodWatcher(asExecutor(ns), ns, podspec.PodName(sr.Name))
		Expect(err).NotTo(HaveOccurred())
		wctx, stop := context.WithCancel(ctx)
		defer stop()
		go func() { _ = watcher.Run(wctx) }()

		setPodStatus(sr, corev1.PodRunning, running(), running())
		started, err := watcher.MainStarted(wctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(started.Running).NotTo(BeNil())
		Expect(rep.ReportRunning(ctx, started.Running.StartedAt)).To(Succeed())
		Eventually(statusOf(sr)).Should(ended(v1alpha1.StepRunRunning, v1alpha1.ReasonRunning))

		setPodStatus(sr, corev1.PodRunning, running(), exited(0, "Completed"))
		term, err := watcher.MainTerminated(wctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(term.ExitCode).To(BeZero())

		result := "hello from pnsflow\n"
		outcome := executor.Decide(term, executor.Collected{Parameters: []v1alpha1.OutputParameterValue{{Name: "greeting", Value: "world"}}}, &result, 1500*time.Millisecond)
		Expect(rep.ReportTerminal(ctx, outcome)).To(Succeed())

		Eventually(statusOf(sr)).Should(ended(v1alpha1.StepRunSucceeded, v1alpha1.ReasonSucceeded))
		st := statusOf(sr)(Default)
		Expect(st.ExitCode).To(HaveValue(BeZero()))
		Expect(st.Outputs.Parameters).To(Equal([]v1alpha1.OutputParameterValue{{Name: "greeting", Value: "world"}}))
		Expect(st.Outputs.Result).To(HaveValue(Equal(result)))
		Expect(st.StartedAt).NotTo(BeNil())
		Expect(st.FinishedAt).NotTo(BeNil())
		Expect(st.Duration).NotTo(BeEmpty())
		Expect(meta.IsStatusConditionTrue(st.Conditions, v1alpha1.ConditionSucceeded)).To(BeTrue())
		Expect(st.Timings).NotTo(BeNil())
		Expect(st.Timings.ExecutorStarted.Time).To(BeTemporally("==", executorStarted.Truncate(time.Microsecond)),
			"stage times keep their microseconds through the API server")
		Expect(st.Timings.Reported).NotTo(BeNil())
		Expect(st.Timings.Reported.Time).To(BeTemporally(">", executorStarted))
		Expect(st.Timings.PodCreated).To(BeNil(), "this reporter was given no Pod times")

		By("the controller agreeing: no mismatch, no second write of the phase")
		setPodStatus(sr, corev1.PodSucceeded, exited(0, "Completed"), exited(0, "Completed"))
		Consistently(statusOf(sr), "1s").Should(And(ended(v1alpha1.StepRunSucceeded, v1alpha1.ReasonSucceeded),
			HaveField("Conditions", Not(ContainElement(HaveField("Type", v1alpha1.ConditionExitCodeMismatch))))))
	})

	It("records the Pod and the executor's privileges with its first report", func() {
		for _, tc := range []struct {
			name       string
			gid        *int64
			privileged metav1.ConditionStatus
			reason     string
		}{
			{"unprivileged", gid1000, metav1.ConditionFalse, v1alpha1.ReasonUIDAndGIDKnown},
			{"ptrace", nil, metav1.ConditionTrue, v1alpha1.ReasonUIDOrGIDUnknown},
		} {
			sr := create(MakeStepRun(tc.name, ns).RunAs(uid1000, tc.gid).Obj())
			pod := pending(sr)
			// The executor's own configuration, as the Pod carries it.
			conf, err := executorconfig.Decode(envOf(pod.Spec.InitContainers[0], executorconfig.ConfigEnv))
			Expect(err).NotTo(HaveOccurred())
			rep := reporterFor(sr)
			rep.Info = executor.RunInfoOf(conf)
			Expect(rep.ReportRunning(ctx, time.Now())).To(Succeed())
			Eventually(statusOf(sr)).Should(And(
				ended(v1alpha1.StepRunRunning, v1alpha1.ReasonRunning),
				HaveField("PodName", pod.Name),
				HaveField("ObservedGeneration", sr.Generation),
				HaveField("Conditions", ContainElement(And(
					HaveField("Type", v1alpha1.ConditionExecutorPrivileged),
					HaveField("Status", tc.privileged),
					HaveField("Reason", tc.reason))))))
		}
	})

	It("reports Failed with main's exit code", func() {
		sr := create(MakeStepRun("exit3", ns).Obj())
		pending(sr)
		setPodStatus(sr, corev1.PodRunning, running(), exited(3, "Error"))
		Expect(reporterFor(sr).ReportTerminal(ctx, executor.Decide(executor.Termination{ExitCode: 3}, executor.Collected{}, nil, 0))).To(Succeed())
		Eventually(statusOf(sr)).Should(And(ended(v1alpha1.StepRunFailed, v1alpha1.ReasonExitCode),
			HaveField("ExitCode", HaveValue(BeEquivalentTo(3)))))
	})

	It("flags a disagreement between the executor and kubelet", func() {
		sr := create(MakeStepRun("mismatch", ns).Obj())
		pending(sr)
		Expect(reporterFor(sr).ReportTerminal(ctx, executor.Decide(executor.Termination{ExitCode: 0}, executor.Collected{}, nil, 0))).To(Succeed())
		setPodStatus(sr, corev1.PodFailed, exited(0, "Completed"), exited(2, "Error"))
		Eventually(statusOf(sr)).Should(HaveField("Conditions", ContainElement(And(
			HaveField("Type", v1alpha1.ConditionExitCodeMismatch),
			HaveField("Status", metav1.ConditionTrue),
			HaveField("Message", "the executor reported exit code 0, kubelet reported 2")))))
		Expect(statusOf(sr)(Default)).To(And(ended(v1alpha1.StepRunSucceeded, v1alpha1.ReasonSucceeded),
			HaveField("ExitCode", HaveValue(BeZero()))), "a terminal phase is never rewritten")
	})

	It("writes nothing once the controller has ended the run", func() {
		sr := create(MakeStepRun("late", ns).Obj())
		pod := pending(sr)
		Expect(k8s.Delete(ctx, pod)).To(Succeed())
		Eventually(statusOf(sr)).Should(ended(v1alpha1.StepRunError, v1alpha1.ReasonPodDeleted))
		err := reporterFor(sr).ReportTerminal(ctx, executor.Decide(executor.Termination{ExitCode: 0}, executor.Collected{}, nil, 0))
		Expect(err).To(MatchError(executor.ErrAlreadyTerminal))
		Expect(statusOf(sr)(Default)).To(ended(v1alpha1.StepRunError, v1alpha1.ReasonPodDeleted))
	})

	It("writes nothing into a StepRun made again under the same name, which waits for the old Pod to go", func() {
		old := create(MakeStepRun("again", ns).Obj())
		oldPod := pending(old)
		stale := reporterFor(old)
		Expect(k8s.Delete(ctx, old)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(old), &v1alpha1.StepRun{}))
		}).Should(BeTrue())
		again := create(MakeStepRun("again", ns).Obj())
		Expect(again.UID).NotTo(Equal(old.UID))

		By("waiting while the earlier run's Pod still exists, rather than failing")
		Consistently(func() v1alpha1.StepRunPhase { return statusOf(again)(Default).Phase }, "3s").
			Should(Equal(v1alpha1.StepRunPending))
		Expect(k8s.Delete(ctx, oldPod)).To(Succeed()) // the garbage collector's part: envtest has none
		newPod := pending(again)
		Expect(metav1.IsControlledBy(newPod, again)).To(BeTrue())

		By("refusing the earlier run's executor")
		err := stale.ReportRunning(ctx, time.Now())
		Expect(err).To(MatchError(ContainSubstring("replaced")), "the patch's UID test refuses it")
		Expect(statusOf(again)(Default).Phase).To(Equal(v1alpha1.StepRunPending))
	})

	It("may not write another namespace's StepRuns", func() {
		sr := create(MakeStepRun("other", ns).Obj())
		pending(sr)
		intruder := newNamespace(nil)
		create(MakeStepRun("intruder", intruder).Obj()) // gives the intruder namespace its executor account
		r, err := executor.NewReporter(asExecutor(intruder), ns, sr.Name)
		Expect(err).NotTo(HaveOccurred())
		Expect(r.ReportRunning(ctx, time.Now())).NotTo(Succeed())
		Expect(statusOf(sr)(Default).Phase).To(Equal(v1alpha1.StepRunPending))
	})
})

func envOf(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}
