//go:build e2e

package e2e

import (
	"fmt"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/controller/steprun"
	"github.com/pnsflow/pnsflow/internal/executor"
	"github.com/pnsflow/pnsflow/internal/podspec"
)

// The admission policies config/default installs (config/policy) on a real cluster: the token
// kubelet would give StepRun A's executor cannot write StepRun B's status nor attach to B's Pod.
// The token is minted with TokenRequest for A's Pod, exactly as kubelet mints the projected one,
// and used from the test process (main's busybox cannot speak TLS to the API server).

const (
	statusPolicy = "pnsflow-executor-steprun-status"
	attachPolicy = "pnsflow-executor-pod-attach"
)

var _ = Describe("An executor's token", func() {
	It("cannot write another StepRun's status nor attach to its Pod", func() {
		By("finding the policies deployed and enforced")
		for _, name := range []string{statusPolicy, attachPolicy} {
			Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, &admissionregistrationv1.ValidatingAdmissionPolicy{})).
				To(Succeed(), "policy %s is not installed: deploy config/default (make deploy)", name)
			binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
			Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, binding)).To(Succeed())
			Expect(binding.Spec.ValidationActions).To(ContainElement(admissionregistrationv1.Deny))
		}

		ns := newNamespace("forge", nil)
		// Both run while the token is minted and used: a's Pod is live, as when kubelet mints its
		// executor's token, and b is not terminal (a terminal phase would be refused by the CRD's
		// own rule first, which would prove nothing about the policy).
		a := create(shell(step("a", ns), "sleep 30").Obj())
		b := create(shell(step("b", ns), "sleep 30").Obj())
		inPhase(a, v1alpha1.StepRunRunning, runTimeout)
		inPhase(b, v1alpha1.StepRunRunning, runTimeout)

		podA := &corev1.Pod{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: podspec.PodName(a.Name)}, podA)).To(Succeed())
		Expect(podA.Spec.ServiceAccountName).To(Equal(steprun.ExecutorIdentity))
		tokenA := podToken(ns, podA)
		forger, err := client.New(tokenA, client.Options{Scheme: k8s.Scheme()})
		Expect(err).NotTo(HaveOccurred())

		By("forging b's end with a's token")
		forged := fmt.Appendf(nil, `{"status":{"phase":%q,"reason":%q,"exitCode":1,"message":"forged with a's token"}}`,
			v1alpha1.StepRunFailed, v1alpha1.ReasonExitCode)
		err = forger.Status().Patch(ctx, b.DeepCopy(), client.RawPatch(types.MergePatchType, forged))
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "want 403 Forbidden, got %v", err)
		Expect(err).To(MatchError(ContainSubstring("ValidatingAdmissionPolicy '%s'", statusPolicy)))
		Expect(err).To(MatchError(ContainSubstring("holds a token of Pod %s", podA.Name)))

		By("attaching to b's Pod with a's token")
		attacher, err := executor.NewPodAttacher(tokenA, ns, podspec.PodName(b.Name))
		Expect(err).NotTo(HaveOccurred())
		Expect(attacher.Attach(ctx, strings.NewReader("forged\n"))).
			To(MatchError(ContainSubstring("ValidatingAdmissionPolicy '%s'", attachPolicy)))

		By("writing a's own status with the same token (a dry run: admission runs, nothing changes)")
		own := client.RawPatch(types.MergePatchType, []byte(`{"status":{"message":"a's own"}}`))
		Expect(forger.Status().Patch(ctx, a.DeepCopy(), own, client.DryRunAll)).To(Succeed())

		By("b ending as its own executor reports it, untouched by the forgery")
		got := terminal(b, runTimeout)
		Expect(got.Status.Phase).To(Equal(v1alpha1.StepRunSucceeded), describeStatus(got))
		Expect(got.Status.ExitCode).To(HaveValue(BeZero()))
		Expect(got.Status.Message).NotTo(ContainSubstring("forged"))
	})
})

// podToken is the API config of a token of the executor account issued to pod, minted with
// TokenRequest as kubelet mints the executor's projected token.
func podToken(ns string, pod *corev1.Pod) *rest.Config {
	cs, err := kubernetes.NewForConfig(cfg)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, pod.Spec.ServiceAccountName, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{BoundObjectRef: &authenticationv1.BoundObjectReference{
			Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}},
	}, metav1.CreateOptions{})
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	c := rest.AnonymousClientConfig(cfg)
	c.BearerToken = tr.Status.Token
	return c
}
