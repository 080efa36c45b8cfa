package integration

import (
	"fmt"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
	"github.com/pnsflow/pnsflow/internal/podspec"
	. "github.com/pnsflow/pnsflow/internal/testutil"
)

var (
	inNamespace    = func(ns string) client.InNamespace { return client.InNamespace(ns) }
	matchingLabels = func(l map[string]string) client.MatchingLabels { return client.MatchingLabels(l) }
)

// phaseOf fetches a StepRun's status for Eventually.
func statusOf(sr *v1alpha1.StepRun) func(Gomega) v1alpha1.StepRunStatus {
	return func(g Gomega) v1alpha1.StepRunStatus {
		got := &v1alpha1.StepRun{}
		g.Expect(k8s.Get(ctx, key(sr.Namespace, sr.Name), got)).To(Succeed())
		return got.Status
	}
}

func create(sr *v1alpha1.StepRun) *v1alpha1.StepRun {
	ExpectWithOffset(1, k8s.Create(ctx, sr)).To(Succeed())
	return sr
}

// pending waits for the run's Pod and returns it; the run reads Pending all along (a schema
// default: the controller writes no status on the happy path). It also fills in sr's UID.
func pending(sr *v1alpha1.StepRun) *corev1.Pod {
	pod := &corev1.Pod{}
	EventuallyWithOffset(1, func() error {
		return k8s.Get(ctx, key(sr.Namespace, podspec.PodName(sr.Name)), pod)
	}).Should(Succeed())
	ExpectWithOffset(1, k8s.Get(ctx, key(sr.Namespace, sr.Name), sr)).To(Succeed())
	ExpectWithOffset(1, sr.Status.Phase).To(Equal(v1alpha1.StepRunPending))
	return pod
}

func ended(phase v1alpha1.StepRunPhase, reason string) OmegaMatcher {
	return And(HaveField("Phase", phase), HaveField("Reason", reason))
}

var uid1000, gid1000 = new(int64(1000)), new(int64(1000))

var _ = Describe("StepRun controller", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace(nil) })

	It("creates exactly one Pod of the designed shape and marks the run Pending", func() {
		sr := create(MakeStepRun("shape", ns).RunAs(uid1000, gid1000).Output("out", "/tmp/out", nil).Obj())
		pod := pending(sr)

		Expect(pod.Spec.ShareProcessNamespace).To(HaveValue(BeTrue()))
		Expect(pod.Spec.RestartPolicy).To(Equal(corev1.RestartPolicyNever))
		// The executor is a native sidecar; the API server accepts the layout as built.
		Expect(pod.Spec.InitContainers).To(HaveLen(1))
		executor := pod.Spec.InitContainers[0]
		Expect(executor.Name).To(Equal("pns-executor"))
		Expect(executor.Image).To(Equal(executorImage))
		Expect(executor.RestartPolicy).To(HaveValue(Equal(corev1.ContainerRestartPolicyAlways)))
		Expect(executor.StartupProbe.TCPSocket.Port.IntValue()).To(Equal(executorconfig.ReadyPort))
		Expect(pod.Spec.Containers).To(HaveLen(1))
		Expect(pod.Spec.Containers[0].Name).To(Equal("main"))
		Expect(pod.Spec.Containers[0].Command).To(Equal([]string{"true"}))
		Expect(metav1.IsControlledBy(pod, sr)).To(BeTrue())
		Expect(pod.Spec.ServiceAccountName).To(Equal("pnsflow-executor"))
		Expect(pod.Spec.AutomountServiceAccountToken).To(HaveValue(BeFalse()))

		Expect(executor.SecurityContext.RunAsUser).To(HaveValue(BeEquivalentTo(1000)))
		Expect(executor.SecurityContext.Capabilities.Drop).To(ContainElement(corev1.Capability("ALL")))
		Expect(sr.ManagedFields).To(HaveEach(HaveField("Subresource", Not(Equal("status")))),
			"the controller wrote no status on the happy path")

		By("giving the namespace the executor's identity")
		Expect(k8s.Get(ctx, key(ns, "pnsflow-executor"), &corev1.ServiceAccount{})).To(Succeed())
		rb := &rbacv1.RoleBinding{}
		Expect(k8s.Get(ctx, key(ns, "pnsflow-executor"), rb)).To(Succeed())
		Expect(rb.RoleRef.Name).To(Equal("pnsflow-executor"))

		Consistently(func() []corev1.Pod { return podsOf(sr) }, "1s").Should(HaveLen(1))
	})

	It("starts the executor as root without SYS_PTRACE when main's GID is unknown", func() {
		sr := create(MakeStepRun("adopt", ns).RunAs(uid1000, nil).Obj())
		pod := pending(sr)
		Expect(pod.Spec.InitContainers[0].SecurityContext.Capabilities).To(BeNil(), "the runtime's defaults, as main has")
		Expect(pod.Spec.InitContainers[0].SecurityContext.RunAsUser).To(HaveValue(BeZero()))
	})

	Context("where Pod Security 'restricted' is enforced", func() {
		BeforeEach(func() {
			ns = newNamespace(map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
		})

		It("admits the Pod when main's UID and GID are known", func() {
			sr := create(MakeStepRun("restricted", ns).RunAs(uid1000, gid1000).Restricted().Obj())
			pending(sr)
		})

		It("ends the run Error/PodForbidden with the admission message when the GID is unknown", func() {
			sr := create(MakeStepRun("forbidden", ns).RunAs(uid1000, nil).Restricted().Obj())
			Eventually(statusOf(sr)).Should(And(ended(v1alpha1.StepRunError, v1alpha1.ReasonPodForbidden),
				HaveField("Message", ContainSubstring("violates PodSecurity"))))
			Expect(podsOf(sr)).To(BeEmpty())
		})
	})

	It("refuses a service account that may not report, and accepts one bound to pnsflow-executor", func() {
		createMuteAndBoundAccounts(ns)

		mute := create(MakeStepRun("mute", ns).ServiceAccount("mute").Obj())
		Eventually(statusOf(mute)).Should(And(ended(v1alpha1.StepRunError, v1alpha1.ReasonServiceAccountForbidden),
			HaveField("Message", ContainSubstring(`service account "mute" may not patch stepruns/status`))))
		Expect(podsOf(mute)).To(BeEmpty())

		bound := create(MakeStepRun("bound", ns).ServiceAccount("bound").Obj())
		Expect(pending(bound).Spec.ServiceAccountName).To(Equal("bound"))
	})

	DescribeTable("ends the run Error when the executor cannot report",
		func(executor, main corev1.ContainerState, podPhase corev1.PodPhase, reason string, exitCode *int32) {
			sr := create(MakeStepRun("lost", ns).Obj())
			pod := pending(sr)
			setPodStatus(sr, podPhase, executor, main)
			Eventually(statusOf(sr)).Should(ended(v1alpha1.StepRunError, reason))
			st := statusOf(sr)(Default)
			if exitCode == nil {
				Expect(st.ExitCode).To(BeNil())
			} else {
				Expect(st.ExitCode).To(HaveValue(Equal(*exitCode)))
			}
			Expect(st.FinishedAt).NotTo(BeNil())
			Expect(st.Timings).NotTo(BeNil(), "the controller records the stage times it knows")
			Expect(st.Timings.PodCreated.Time).To(BeTemporally("==", pod.CreationTimestamp.Time))
			Expect(st.Timings.Reported).To(BeNil(), "the report stage is the executor's")
			Expect(meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionSucceeded)).To(
				And(HaveField("Status", metav1.ConditionFalse), HaveField("Reason", reason)))
		},
		Entry("main OOMKilled", exited(0, "Completed"), exited(137, "OOMKilled"), corev1.PodFailed, v1alpha1.ReasonOOMKilled, new(int32(137))),
		Entry("executor died: main's exit code kept from containerStatuses", exited(137, "Error"), exited(0, "Completed"), corev1.PodFailed, v1alpha1.ReasonExecutorLost, new(int32(0))),
		Entry("executor's postStart failed: main never started", exited(1, "Error"), waiting("PodInitializing", ""), corev1.PodFailed, v1alpha1.ReasonExecutorLost, nil),
		Entry("invalid image name", running(), waiting("InvalidImageName", "bad name"), corev1.PodPending, v1alpha1.ReasonImagePullFailed, nil),
		Entry("image pull failing past the grace period", running(), waiting("ErrImagePull", "not found"), corev1.PodPending, v1alpha1.ReasonImagePullFailed, nil),
	)

	It("deletes a Pod stuck pulling once the run has ended", func() {
		sr := create(MakeStepRun("stuck", ns).Obj())
		pending(sr)
		setPodStatus(sr, corev1.PodPending, running(), waiting("ImagePullBackOff", "back-off"))
		Eventually(statusOf(sr)).Should(ended(v1alpha1.StepRunError, v1alpha1.ReasonImagePullFailed))
		Eventually(func() []corev1.Pod { return podsOf(sr) }).Should(BeEmpty())
	})

	It("ends the run Error/PodDeleted when its Pod is deleted before a report", func() {
		sr := create(MakeStepRun("deleted", ns).Obj())
		pod := pending(sr)
		Expect(k8s.Delete(ctx, pod)).To(Succeed())
		Eventually(statusOf(sr)).Should(And(ended(v1alpha1.StepRunError, v1alpha1.ReasonPodDeleted),
			HaveField("Message", ContainSubstring(pod.Name))))
		Consistently(func() []corev1.Pod { return podsOf(sr) }, "1s").Should(BeEmpty(), "a deleted Pod is never recreated")
	})

	It("ends the run Error/NodeLost at once when the taint manager evicts its Pod from a lost node", func() {
		sr := create(MakeStepRun("lost-node", ns).Obj())
		pod := pending(sr)
		Expect(pod.Spec.Tolerations).To(ContainElement(And(HaveField("Key", corev1.TaintNodeUnreachable),
			HaveField("TolerationSeconds", HaveValue(BeEquivalentTo(60))))), "the Pod leaves an unreachable node after 60 s")
		// What the scheduler and the node's kubelet did before the node went silent.
		Expect(k8s.SubResource("binding").Create(ctx, pod, &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace},
			Target:     corev1.ObjectReference{Kind: "Node", Name: "worker-1"},
		})).To(Succeed())
		setPodStatus(sr, corev1.PodRunning, running(), running())
		// What the taint manager does once the unreachable toleration ends.
		Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(pod), pod)).To(Succeed())
			pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: corev1.DisruptionTarget,
				Status: corev1.ConditionTrue, Reason: "DeletionByTaintManager", Message: "Taint manager: deleting due to NoExecute taint"})
			return k8s.Status().Update(ctx, pod)
		})).To(Succeed())
		Expect(k8s.Delete(ctx, pod)).To(Succeed())

		Eventually(statusOf(sr)).Should(And(ended(v1alpha1.StepRunError, v1alpha1.ReasonNodeLost),
			HaveField("Message", ContainSubstring(`node "worker-1" was lost`))))
	})

	It("enforces activeDeadlineSeconds on a Pod that never runs", func() {
		sr := create(MakeStepRun("deadline", ns).Deadline(1).Obj())
		pending(sr)
		Eventually(statusOf(sr), "10s").Should(ended(v1alpha1.StepRunFailed, v1alpha1.ReasonDeadlineExceeded))
		Eventually(func() []corev1.Pod { return podsOf(sr) }).Should(BeEmpty())
	})

	It("never makes a second Pod across a manager restart", func() {
		stopManager()
		// The manager this case leaves running is stopped before the suite's next one starts:
		// two managers at once would both reconcile (and both count in the metrics).
		DeferCleanup(func() { stopManager(); stopManager = startManager() })

		By("a Pod created by a manager that died before writing Pending")
		orphan := create(MakeStepRun("orphan", ns).Obj())
		Expect(k8s.Get(ctx, key(ns, orphan.Name), orphan)).To(Succeed())
		pod, err := podspec.Build(orphan, podConfig)
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.Create(ctx, pod)).To(Succeed())
		running := create(MakeStepRun("was-running", ns).Obj())

		stopManager = startManager()
		pending(orphan)
		pending(running)
		stopManager()
		stopManager = startManager()

		Consistently(func(g Gomega) {
			g.Expect(podsOf(orphan)).To(HaveLen(1))
			g.Expect(podsOf(running)).To(HaveLen(1))
		}, "2s").Should(Succeed())
	})
})

var _ = Describe("StepRun validation by the API server", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace(nil) })

	DescribeTable("rejects invalid specs with a clear message",
		func(mutate func(*v1alpha1.StepRun), message string) {
			sr := MakeStepRun("bad", ns).Obj()
			mutate(sr)
			err := k8s.Create(ctx, sr)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), describeErr(err))
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("no image", func(sr *v1alpha1.StepRun) { sr.Spec.Image = "" }, "spec.image"),
		Entry("relative output path", func(sr *v1alpha1.StepRun) {
			sr.Spec.Outputs = &v1alpha1.Outputs{Parameters: []v1alpha1.OutputParameter{{Name: "a", ValueFrom: v1alpha1.OutputValueFrom{Path: "tmp/a"}}}}
		}, "path must be absolute"),
		Entry("output name not DNS-label-like", func(sr *v1alpha1.StepRun) {
			sr.Spec.Outputs = &v1alpha1.Outputs{Parameters: []v1alpha1.OutputParameter{{Name: "Not_OK", ValueFrom: v1alpha1.OutputValueFrom{Path: "/a"}}}}
		}, "spec.outputs.parameters[0].name"),
		Entry("duplicate output names", func(sr *v1alpha1.StepRun) {
			p := v1alpha1.OutputParameter{Name: "a", ValueFrom: v1alpha1.OutputValueFrom{Path: "/a"}}
			sr.Spec.Outputs = &v1alpha1.Outputs{Parameters: []v1alpha1.OutputParameter{p, p}}
		}, "Duplicate value"),
		Entry("too many outputs", func(sr *v1alpha1.StepRun) {
			sr.Spec.Outputs = &v1alpha1.Outputs{}
			for i := range v1alpha1.MaxOutputParameters + 1 {
				sr.Spec.Outputs.Parameters = append(sr.Spec.Outputs.Parameters,
					v1alpha1.OutputParameter{Name: fmt.Sprintf("p%d", i), ValueFrom: v1alpha1.OutputValueFrom{Path: "/a"}})
			}
		}, "must have at most 32 items"),
		Entry("reserved volume name", func(sr *v1alpha1.StepRun) {
			sr.Spec.Volumes = []corev1.Volume{{Name: "pnsflow-outputs", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		}, "reserved for pnsflow"),
		Entry("mount under /pnsflow", func(sr *v1alpha1.StepRun) {
			sr.Spec.VolumeMounts = []corev1.VolumeMount{{Name: "x", MountPath: "/pnsflow/outputs"}}
		}, "reserved for pnsflow"),
		Entry("overriding the marker env", func(sr *v1alpha1.StepRun) {
			sr.Spec.Env = []corev1.EnvVar{{Name: "PNSFLOW_STEPRUN_UID", Value: "x"}}
		}, "cannot be overridden"),
		Entry("stdin over its cap", func(sr *v1alpha1.StepRun) {
			sr.Spec.Stdin = new(strings.Repeat("x", v1alpha1.MaxStdinBytes+1))
		}, "spec.stdin"),
	)

	It("keeps spec immutable after create", func() {
		sr := create(MakeStepRun("frozen", ns).Obj())
		sr.Spec.Args = []string{"changed"}
		err := k8s.Update(ctx, sr)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), describeErr(err))
		Expect(err.Error()).To(ContainSubstring("spec is immutable after creation"))
	})

	It("never lets a terminal phase or its exit code change", func() {
		sr := create(MakeStepRun("final", ns).Obj())
		pending(sr)
		sr.Status.Phase, sr.Status.ExitCode = v1alpha1.StepRunFailed, new(int32(3))
		Expect(k8s.Status().Update(ctx, sr)).To(Succeed())

		for _, change := range []func(*v1alpha1.StepRunStatus){
			func(s *v1alpha1.StepRunStatus) { s.Phase = v1alpha1.StepRunSucceeded },
			func(s *v1alpha1.StepRunStatus) { s.ExitCode = new(int32(0)) },
			func(s *v1alpha1.StepRunStatus) { s.ExitCode = nil },
		} {
			Expect(k8s.Get(ctx, key(ns, sr.Name), sr)).To(Succeed())
			change(&sr.Status)
			err := k8s.Status().Update(ctx, sr)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), describeErr(err))
			Expect(err.Error()).To(ContainSubstring("a terminal phase (Succeeded, Failed, Error) and its exitCode cannot change"))
		}
	})

	It("caps output values and result in bytes", func() {
		sr := create(MakeStepRun("caps", ns).Obj())
		pending(sr)
		// 5462 three-byte runes: under the character limit, over the byte cap.
		sr.Status.Outputs = &v1alpha1.StepRunOutputs{Result: new(strings.Repeat("€", 2731))}
		err := k8s.Status().Update(ctx, sr)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), describeErr(err))
		Expect(err.Error()).To(ContainSubstring("result is capped at 8192 bytes"))
	})
})
