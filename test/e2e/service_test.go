//go:build e2e

package e2e

import (
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

// What proves the path, and what does not:
//   - client-go's in-cluster config (the manager's and the executor's only config: neither gets
//     a kubeconfig) dials https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT. kubelet sets
//     those two variables in every container from the `kubernetes` Service in `default`; the
//     case reads them inside a StepRun's Pod (the executor's Pod) and checks that neither the
//     manager's nor the executor's container overrides them.
//   - The Service's ClusterIP (10.96.0.1:443) is virtual: no interface has it, the API server
//     listens on the node's address and port 6443 (its EndpointSlice). A Pod that is not on the
//     host network reaches it only through kube-proxy's rules; the case checks that neither Pod
//     is on the host network.
//   - The executor's status patches are recorded under its field manager (pns-executor) on the
//     StepRun, and the manager's Pod create under pnsflow-manager on the Pod: each of them did
//     reach the API server, and by the above it can only have done so through 10.96.0.1:443.
//
// It does not inspect packets or kube-proxy's rules; hack/kind/verify.sh additionally checks the
// TCP path with nc from a plain Pod.
var _ = Describe("The kubernetes Service", func() {
	It("carries the manager's and an executor's API calls (10.96.0.1)", func() {
		svc := &corev1.Service{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "default", Name: "kubernetes"}, svc)).To(Succeed())
		Expect(svc.Spec.ClusterIP).To(Equal("10.96.0.1"))
		Expect(svc.Spec.Ports).To(ContainElement(HaveField("Port", BeEquivalentTo(443))))
		slices := &discoveryv1.EndpointSliceList{}
		Expect(k8s.List(ctx, slices, client.InNamespace("default"),
			client.MatchingLabels{discoveryv1.LabelServiceName: "kubernetes"})).To(Succeed())
		Expect(slices.Items).NotTo(BeEmpty())
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				Expect(e.Addresses).NotTo(ContainElement("10.96.0.1"), "the API server itself is elsewhere")
			}
		}

		By("an executor: its Pod sees the Service's address and its report arrives")
		ns := newNamespace("service", nil)
		sr := create(shell(step("service", ns), `printf "%s:%s" "$KUBERNETES_SERVICE_HOST" "$KUBERNETES_SERVICE_PORT" > /pnsflow/outputs/api`).
			RunAs(uid1000, gid1000).Output("api", "/pnsflow/outputs/api", nil).Obj())
		got := terminal(sr, runTimeout)
		Expect(got.Status.Phase).To(Equal(v1alpha1.StepRunSucceeded), describeStatus(got))
		Expect(outputs(got)).To(HaveKeyWithValue("api", "10.96.0.1:443"))
		Expect(got.ManagedFields).To(ContainElement(And(
			HaveField("Manager", v1alpha1.FieldManagerExecutor),
			HaveField("Subresource", "status"))), "the executor wrote the status")
		pods := podsOf(got)
		Expect(pods).To(HaveLen(1))
		pod := pods[0]
		Expect(pod.Spec.HostNetwork).To(BeFalse())
		Expect(pod.Status.PodIP).NotTo(Equal(pod.Status.HostIP))
		for _, c := range pod.Spec.Containers {
			Expect(c.Env).NotTo(ContainElement(HaveField("Name", HavePrefix("KUBERNETES_SERVICE"))), c.Name)
		}
		Expect(pod.ManagedFields).To(ContainElement(And(
			HaveField("Manager", v1alpha1.FieldManagerController),
			HaveField("Operation", BeEquivalentTo("Update")))), "the manager created the Pod")

		By("the managers: not on the host network, no override, no kubeconfig")
		mgrs := managerPods()
		Expect(mgrs).NotTo(BeEmpty())
		for _, mgr := range mgrs {
			Expect(mgr.Spec.HostNetwork).To(BeFalse())
			Expect(mgr.Status.PodIP).NotTo(Equal(mgr.Status.HostIP))
			for _, c := range mgr.Spec.Containers {
				Expect(c.Env).NotTo(ContainElement(HaveField("Name", HavePrefix("KUBERNETES_SERVICE"))))
				Expect(strings.Join(append(c.Command, c.Args...), " ")).NotTo(ContainSubstring("kubeconfig"))
			}
		}
	})
})
