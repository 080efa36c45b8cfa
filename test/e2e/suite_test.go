//go:build e2e

// Package e2e runs pnsflow on a real cluster: the one in KUBECONFIG (its current context), with
// the operator deployed and the test images loaded — `make quickstart` sets that up on a local
// kind cluster. Every case asserts through the API (StepRun, Pod and WorkflowRun objects), never
// by reading logs, and runs in a namespace of its own.
//
//	make test-e2e     # every case but the measurements (label filter '!bench')
//	make bench-e2e    # the measurements (label bench)
//
// Settings (environment): E2E_BUSYBOX_IMG, E2E_ENTRYPOINT_IMG and E2E_NONROOT_IMG (the images hack/images builds),
// E2E_KUBECTL (the kubectl the printer-column case runs), E2E_DOCKER and E2E_NODE_CONTAINER (how
// bench-e2e reads the executor's cgroup on a kind node), E2E_KEEP_NAMESPACES=1 to keep the
// namespaces of failed cases for a look.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
	"github.com/pnsflow/pnsflow/internal/manager"
	. "github.com/pnsflow/pnsflow/internal/testutil"
)

const (
	managerNamespace = "pnsflow-system"
	managerLabel     = "app.kubernetes.io/name"
	managerName      = "pnsflow-manager"
	// managerLease is the manager's leader-election Lease (in managerNamespace).
	managerLease = "pnsflow-manager.pnsflow.dev"
	// A run of a short main takes a few seconds on a 2-core node; this bounds the waits of cases
	// that expect nothing slow (an image pull grace or a deletion has its own bound).
	runTimeout = 2 * time.Minute
	// faultAnnotation names the containers whose first `runc create` the kind node's runc wrapper
	// fails (hack/kind/runc-wrapper); a StepRun's annotations are copied to its Pod.
	faultAnnotation = "fault.pnsflow.dev/fail-create-once"
)

var (
	ctx    context.Context
	cancel context.CancelFunc
	cfg    *rest.Config
	k8s    client.WithWatch

	busyboxImage    = envOr("E2E_BUSYBOX_IMG", "localhost/pnsflow-busybox:test")
	entrypointImage = envOr("E2E_ENTRYPOINT_IMG", "localhost/pnsflow-entrypoint:test")
	nonrootImage    = envOr("E2E_NONROOT_IMG", "localhost/pnsflow-nonroot:test")
	kubectlBin      = envOr("E2E_KUBECTL", "kubectl")

	// namespaces made by the running spec, for the failure dump and the cleanup.
	specNamespaces []string
)

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(runTimeout)
	SetDefaultEventuallyPollingInterval(250 * time.Millisecond)
	RunSpecs(t, "e2e Suite")
}

var _ = BeforeSuite(func() {
	ctx, cancel = context.WithCancel(context.Background())
	var err error
	cfg, err = ctrl.GetConfig()
	Expect(err).NotTo(HaveOccurred(), "no cluster: set KUBECONFIG or run make quickstart")
	cfg.QPS, cfg.Burst = 100, 200
	scheme, err := manager.Scheme()
	Expect(err).NotTo(HaveOccurred())
	k8s, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	GinkgoWriter.Printf("cluster: %s\n", cfg.Host)

	By("finding the operator deployed and ready")
	dep := &appsv1.Deployment{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: managerNamespace, Name: managerName}, dep)).
		To(Succeed(), "the manager is not deployed: run make quickstart (or make deploy)")
	Eventually(managerReady).WithTimeout(3 * time.Minute).Should(Succeed())

	By("finding the test images on every node (there is no registry to pull them from)")
	// kubelet refreshes the image list it publishes every ~30 s, so on a fresh cluster images
	// loaded a moment ago show up a little later; it lists at most 50 (the largest), so only a
	// shorter list is complete.
	Eventually(func(g Gomega) {
		nodes := &corev1.NodeList{}
		g.Expect(k8s.List(ctx, nodes)).To(Succeed())
		g.Expect(nodes.Items).NotTo(BeEmpty())
		for _, n := range nodes.Items {
			if len(n.Status.Images) >= 50 {
				continue
			}
			var names []string
			for _, img := range n.Status.Images {
				names = append(names, img.Names...)
			}
			for _, want := range []string{busyboxImage, entrypointImage, nonrootImage} {
				g.Expect(names).To(ContainElement(HaveSuffix(want)),
					"node %s has no image %s: run make images kind-load", n.Name, want)
			}
		}
	}).WithTimeout(90 * time.Second).WithPolling(2 * time.Second).Should(Succeed())

	By("finding the kubectl the printer-column case runs")
	out, err := exec.Command(kubectlBin, "version", "--client").CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "E2E_KUBECTL=%s: %s", kubectlBin, out)
	GinkgoWriter.Printf("kubectl: %s", out)
})

var _ = AfterSuite(func() {
	if cancel != nil {
		cancel()
	}
})

// managerReady passes when every replica the manager Deployment asks for is ready and up to
// date, with no other Pod (an old one still terminating), and one of them holds the lease.
func managerReady(g Gomega) {
	dep := &appsv1.Deployment{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: managerNamespace, Name: managerName}, dep)).To(Succeed())
	want := ptr.Deref(dep.Spec.Replicas, 1)
	g.Expect(dep.Status.ObservedGeneration).To(Equal(dep.Generation))
	g.Expect(dep.Status.UpdatedReplicas).To(Equal(want))
	g.Expect(dep.Status.ReadyReplicas).To(Equal(want))
	g.Expect(dep.Status.Replicas).To(Equal(want))
	g.Expect(managerLeader()).NotTo(BeEmpty(), "a manager holds the lease")
}

// managerLeader names the manager Pod holding the leader lease ("" when none does).
func managerLeader() (string, error) {
	return LeaderPod(ctx, k8s, managerNamespace, managerLease)
}

var _ = BeforeEach(func() { specNamespaces = nil })

// On failure, print what the API says about the spec's namespaces: the StepRuns, their Pods and
// the events. (Asserting stays API-only; this is for the reader of a red run.)
var _ = AfterEach(func() {
	if !CurrentSpecReport().Failed() {
		return
	}
	for _, ns := range specNamespaces {
		dumpNamespace(ns)
	}
	dumpNetwork()
})

// newNamespace makes a namespace for one case, deleted when the case ends.
func newNamespace(prefix string, labels map[string]string) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-" + prefix + "-", Labels: labels}}
	ExpectWithOffset(1, k8s.Create(ctx, ns)).To(Succeed())
	specNamespaces = append(specNamespaces, ns.Name)
	DeferCleanup(func() {
		if CurrentSpecReport().Failed() && os.Getenv("E2E_KEEP_NAMESPACES") == "1" {
			GinkgoWriter.Printf("keeping namespace %s (E2E_KEEP_NAMESPACES=1)\n", ns.Name)
			return
		}
		// Not waited for: deleting a namespace with finished Pods takes seconds, and nothing
		// later depends on it being gone.
		_ = k8s.Delete(context.Background(), ns)
	})
	return ns.Name
}

// step starts a StepRun of the busybox test image, pulled only if absent (there is no registry).
func step(name, ns string) *StepRunWrapper {
	return MakeStepRun(name, ns).Image(busyboxImage).PullPolicy(corev1.PullIfNotPresent)
}

// shell makes main run script with the image's sh.
func shell(w *StepRunWrapper, script string) *StepRunWrapper {
	return w.Command("sh", "-c", script)
}

func create(sr *v1alpha1.StepRun) *v1alpha1.StepRun {
	ExpectWithOffset(1, k8s.Create(ctx, sr)).To(Succeed())
	return sr
}

func key(obj client.Object) client.ObjectKey { return client.ObjectKeyFromObject(obj) }

// terminal waits (by watch) until sr's phase is terminal and returns it.
func terminal(sr *v1alpha1.StepRun, timeout time.Duration) *v1alpha1.StepRun {
	got, _, err := awaitStepRun(ctx, key(sr), timeout, isTerminal)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return got
}

// inPhase waits (by watch) until sr reads phase.
func inPhase(sr *v1alpha1.StepRun, phase v1alpha1.StepRunPhase, timeout time.Duration) *v1alpha1.StepRun {
	got, _, err := awaitStepRun(ctx, key(sr), timeout, func(s *v1alpha1.StepRun) bool {
		return s.Status.Phase == phase || s.Status.Phase.IsTerminal()
	})
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	ExpectWithOffset(1, got.Status.Phase).To(Equal(phase), "status: %s", describeStatus(got))
	return got
}

func isTerminal(s *v1alpha1.StepRun) bool { return s.Status.Phase.IsTerminal() }

// podsOf lists the Pods of a StepRun by the label the Pod builder puts on them.
func podsOf(sr *v1alpha1.StepRun) []corev1.Pod {
	pods := &corev1.PodList{}
	ExpectWithOffset(1, k8s.List(ctx, pods, client.InNamespace(sr.Namespace),
		client.MatchingLabels{v1alpha1.LabelStepRun: sr.Name})).To(Succeed())
	return pods.Items
}

// output returns the value of a collected output parameter and whether it is there.
func output(sr *v1alpha1.StepRun, name string) (string, bool) {
	if sr.Status.Outputs == nil {
		return "", false
	}
	for _, p := range sr.Status.Outputs.Parameters {
		if p.Name == name {
			return p.Value, true
		}
	}
	return "", false
}

func outputs(sr *v1alpha1.StepRun) map[string]string {
	m := map[string]string{}
	if sr.Status.Outputs != nil {
		for _, p := range sr.Status.Outputs.Parameters {
			m[p.Name] = p.Value
		}
	}
	return m
}

func result(sr *v1alpha1.StepRun) string {
	if sr.Status.Outputs == nil || sr.Status.Outputs.Result == nil {
		return ""
	}
	return *sr.Status.Outputs.Result
}

func exitCode(sr *v1alpha1.StepRun) string {
	if sr.Status.ExitCode == nil {
		return "<none>"
	}
	return fmt.Sprint(*sr.Status.ExitCode)
}

func describeStatus(sr *v1alpha1.StepRun) string {
	return fmt.Sprintf("%s/%s phase=%s reason=%s exitCode=%s message=%q outputs=%v",
		sr.Namespace, sr.Name, sr.Status.Phase, sr.Status.Reason, exitCode(sr), sr.Status.Message, outputs(sr))
}

// kubectl runs the real kubectl against the same cluster (KUBECONFIG, current context).
func kubectl(args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, kubectlBin, args...).CombinedOutput()
	return string(out), err
}

func dumpNamespace(ns string) {
	GinkgoWriter.Printf("\n==== namespace %s (failure dump) ====\n", ns)
	srs := &v1alpha1.StepRunList{}
	if err := k8s.List(context.Background(), srs, client.InNamespace(ns)); err == nil {
		for i := range srs.Items {
			GinkgoWriter.Printf("steprun %s\n", describeStatus(&srs.Items[i]))
		}
	}
	pods := &corev1.PodList{}
	if err := k8s.List(context.Background(), pods, client.InNamespace(ns)); err == nil {
		for _, p := range pods.Items {
			var cs []string
			for _, c := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
				cs = append(cs, fmt.Sprintf("%s{running=%v waiting=%v terminated=%v restarts=%d}", c.Name,
					c.State.Running != nil, c.State.Waiting, c.State.Terminated, c.RestartCount))
			}
			GinkgoWriter.Printf("pod %s node=%s ip=%s phase=%s reason=%s deleting=%v containers=%s\n", p.Name, p.Spec.NodeName,
				p.Status.PodIP, p.Status.Phase, p.Status.Reason, p.DeletionTimestamp != nil, strings.Join(cs, " "))
		}
		// The executor's own account, for the first few Pods: a fan-out's would drown the dump.
		for _, p := range pods.Items[:min(3, len(pods.Items))] {
			dumpExecutorLog(p.Namespace, p.Name)
		}
	}
	events := &corev1.EventList{}
	if err := k8s.List(context.Background(), events, client.InNamespace(ns)); err == nil {
		for _, e := range events.Items {
			GinkgoWriter.Printf("event %s %s/%s %s: %s\n", e.Type, e.InvolvedObject.Kind,
				e.InvolvedObject.Name, e.Reason, e.Message)
		}
	}
}

// dumpExecutorLog prints the last lines the executor of a Pod logged.
func dumpExecutorLog(ns, pod string) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return
	}
	raw, err := cs.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{
		Container: executorconfig.ExecutorContainer, TailLines: new(int64(40))}).DoRaw(context.Background())
	if err != nil {
		GinkgoWriter.Printf("executor log of %s: %v\n", pod, err)
		return
	}
	GinkgoWriter.Printf("executor log of %s (last 40 lines):\n%s\n", pod, raw)
}
