//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The Pod network of the multi-node cluster: a check that a node's Pods reach the artifact
// repository's Service (run after a node is restarted, so that a node left half-connected fails
// where it was broken rather than in a later case), and what a failure dump prints about it.

// repositoryService is the in-cluster SeaweedFS that make quickstart deploys.
var repositoryService = client.ObjectKey{Namespace: "pnsflow-system", Name: "seaweedfs"}

// expectRepositoryReachableFrom waits until a Pod on node connects to the repository's Service.
func expectRepositoryReachableFrom(node string) {
	svc := &corev1.Service{}
	ExpectWithOffset(1, k8s.Get(ctx, repositoryService, svc)).To(Succeed())
	target := fmt.Sprintf("%s %d", svc.Spec.ClusterIP, svc.Spec.Ports[0].Port)
	// In default, not a namespace of the case's: a restart can run in a cleanup, where no
	// further cleanup may be deferred; each Pod is deleted once it has ended.
	attempt := 0
	EventuallyWithOffset(1, func() error {
		attempt++
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceDefault, GenerateName: "e2e-connect-"},
			Spec: corev1.PodSpec{
				NodeName:      node,
				RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{
					Name: "connect", Image: busyboxImage, ImagePullPolicy: corev1.PullIfNotPresent,
					Command: []string{"sh", "-c", "echo | nc -w 3 " + target + " >/dev/null"},
				}},
			},
		}
		if err := k8s.Create(ctx, pod); err != nil {
			return err
		}
		defer func() { _ = k8s.Delete(context.Background(), pod) }()
		done := &corev1.Pod{}
		if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			return k8s.Get(ctx, key(pod), done) == nil &&
				(done.Status.Phase == corev1.PodSucceeded || done.Status.Phase == corev1.PodFailed), nil
		}); err != nil {
			return fmt.Errorf("the connecting Pod on %s did not end: %w", node, err)
		}
		if done.Status.Phase != corev1.PodSucceeded {
			return fmt.Errorf("a Pod on %s cannot connect to %s (%s)", node, repositoryService, target)
		}
		return nil
	}).WithTimeout(3*time.Minute).WithPolling(2*time.Second).Should(Succeed(), func() string {
		dumpNetwork()
		return "the restarted node's Pods reach the artifact repository"
	})
	AddReportEntry("Pods on "+node+" reach the artifact repository", fmt.Sprintf("after %d attempt(s)", attempt))
}

// dumpNetwork prints, for the reader of a red run, each node's addresses as the API and Docker
// see them, its routes, and the repository's endpoints.
func dumpNetwork() {
	GinkgoWriter.Printf("\n==== the Pod network (failure dump) ====\n")
	nodes := &corev1.NodeList{}
	if err := k8s.List(context.Background(), nodes); err != nil {
		GinkgoWriter.Printf("listing nodes: %v\n", err)
		return
	}
	for _, n := range nodes.Items {
		var internal string
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				internal = a.Address
			}
		}
		docker, _ := exec.CommandContext(context.Background(), dockerBin(), "inspect", "-f",
			"{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", n.Name).CombinedOutput()
		routes, _ := exec.CommandContext(context.Background(), dockerBin(), "exec", n.Name, "ip", "route").CombinedOutput()
		GinkgoWriter.Printf("node %s: InternalIP %s, Docker address %s, podCIDR %s, routes:\n%s\n",
			n.Name, internal, strings.TrimSpace(string(docker)), n.Spec.PodCIDR, routes)
	}
	slices := &discoveryv1.EndpointSliceList{}
	if err := k8s.List(context.Background(), slices, client.InNamespace(repositoryService.Namespace),
		client.MatchingLabels{discoveryv1.LabelServiceName: repositoryService.Name}); err == nil {
		for _, s := range slices.Items {
			for _, ep := range s.Endpoints {
				GinkgoWriter.Printf("repository endpoint %v on node %v ready=%v\n", ep.Addresses, ptr.Deref(ep.NodeName, ""), ep.Conditions.Ready != nil && *ep.Conditions.Ready)
			}
		}
	}
}
