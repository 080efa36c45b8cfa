//go:build chaos

// Package chaos injects faults into a real cluster while StepRuns and WorkflowRuns are in flight,
// and checks that every run still ends with the right phase and reason, exactly one Pod per
// StepRun, no duplicate StepRun in a WorkflowRun, and intact outputs. The cluster is the one in
// KUBECONFIG (its current context) with the operator deployed and the test images loaded, as
// `make quickstart` leaves it; the API-server fault needs a kind node reachable with
// `docker exec`.
//
//	make test-chaos   # after make test-e2e, on the same cluster
//
// The faults run one after another (an Ordered container): the kube-apiserver killed, the
// manager's Pod deleted, the executors SIGKILLed from inside main, Pods evicted through the
// Eviction API, main OOM-killed. Each ends with one row of the table printed at the end.
//
// Settings (environment, shared with test/e2e): E2E_BUSYBOX_IMG (the test busybox image),
// E2E_DOCKER (the Docker client; default /usr/bin/docker when present, else docker),
// E2E_NODE_CONTAINER (the kind node's container; default: the only node's name),
// E2E_KEEP_NAMESPACES=1 (keep a failed fault's namespace).
package chaos

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
	"github.com/pnsflow/pnsflow/internal/manager"
	. "github.com/pnsflow/pnsflow/internal/testutil"
)

const (
	managerNamespace = "pnsflow-system"
	managerLabel     = "app.kubernetes.io/name"
	managerName      = "pnsflow-manager"
	// managerLease is the manager's leader-election Lease (in managerNamespace).
	managerLease = "pnsflow-manager.pnsflow.dev"
	// outputs is where every run writes its value; the executor reads it from its own mount.
	outputs = "/pnsflow/outputs"
)

var (
	ctx    context.Context
	cancel context.CancelFunc
	cfg    *rest.Config
	k8s    client.WithWatch
	cs     *kubernetes.Clientset

	busyboxImage = envOr("E2E_BUSYBOX_IMG", "localhost/pnsflow-busybox:test")
	uid1000      = new(int64(1000))
	gid1000      = new(int64(1000))

	// namespaces made by the running spec, for the failure dump.
	specNamespaces []string
)

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func TestChaos(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(2 * time.Minute)
	SetDefaultEventuallyPollingInterval(250 * time.Millisecond)
	RunSpecs(t, "chaos Suite")
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
	cs, err = kubernetes.NewForConfig(cfg)
	Expect(err).NotTo(HaveOccurred())
	GinkgoWriter.Printf("cluster: %s\n", cfg.Host)

	By("finding the operator deployed and ready")
	dep := &appsv1.Deployment{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: managerNamespace, Name: managerName}, dep)).
		To(Succeed(), "the manager is not deployed: run make quickstart (or make deploy)")
	Eventually(managerReady).WithTimeout(3 * time.Minute).Should(Succeed())

	By("finding the busybox test image on the nodes and the control plane's container")
	nodes := &corev1.NodeList{}
	Expect(k8s.List(ctx, nodes)).To(Succeed())
	var controlPlanes []string
	for _, n := range nodes.Items {
		if _, ok := n.Labels["node-role.kubernetes.io/control-plane"]; ok {
			controlPlanes = append(controlPlanes, n.Name)
		}
		if len(n.Status.Images) < 50 {
			var names []string
			for _, img := range n.Status.Images {
				names = append(names, img.Names...)
			}
			Expect(names).To(ContainElement(HaveSuffix(busyboxImage)), "on %s: run make images kind-load", n.Name)
		}
	}
	Expect(controlPlanes).To(HaveLen(1), "one kind control plane (it runs kube-apiserver): set E2E_NODE_CONTAINER otherwise")
	nodeContainer = envOr("E2E_NODE_CONTAINER", controlPlanes[0])
	out, err := nodeExec("true")
	Expect(err).NotTo(HaveOccurred(), "docker exec %s: %s (set E2E_DOCKER or E2E_NODE_CONTAINER)", nodeContainer, out)
})

var _ = AfterSuite(func() {
	if cancel != nil {
		cancel()
	}
})

var nodeContainer string

// dockerBin is the Docker client kind runs on (hack/kind prefers Debian's /usr/bin/docker).
func dockerBin() string {
	if d := os.Getenv("E2E_DOCKER"); d != "" {
		return d
	}
	if _, err := os.Stat("/usr/bin/docker"); err == nil {
		return "/usr/bin/docker"
	}
	return "docker"
}

// nodeExec runs a shell command in the kind node's container.
func nodeExec(script string) (string, error) {
	out, err := exec.CommandContext(ctx, dockerBin(), "exec", nodeContainer, "sh", "-c", script).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// managerReady passes when every replica the manager Deployment asks for is ready and up to
// date, with no other Pod, and one of them holds the lease.
func managerReady(g Gomega) {
	dep := &appsv1.Deployment{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: managerNamespace, Name: managerName}, dep)).To(Succeed())
	want := ptr.Deref(dep.Spec.Replicas, 1)
	g.Expect(dep.Status.ObservedGeneration).To(Equal(dep.Generation))
	g.Expect(dep.Status.UpdatedReplicas).To(Equal(want))
	g.Expect(dep.Status.ReadyReplicas).To(Equal(want))
	g.Expect(dep.Status.Replicas).To(Equal(want))
	g.Expect(LeaderPod(ctx, k8s, managerNamespace, managerLease)).NotTo(BeEmpty(), "a manager holds the lease")
}

func managerPods(g Gomega) []corev1.Pod {
	pods := &corev1.PodList{}
	g.Expect(k8s.List(ctx, pods, client.InNamespace(managerNamespace),
		client.MatchingLabels{managerLabel: managerName})).To(Succeed())
	return pods.Items
}

var _ = AfterEach(func() {
	if CurrentSpecReport().Failed() {
		for _, ns := range specNamespaces {
			dumpNamespace(ns)
		}
	}
	specNamespaces = nil
})

// newNamespace makes a namespace for one fault, deleted (not waited for) when the fault ends.
func newNamespace(prefix string) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "chaos-" + prefix + "-"}}
	ExpectWithOffset(1, k8s.Create(ctx, ns)).To(Succeed())
	specNamespaces = append(specNamespaces, ns.Name)
	DeferCleanup(func() {
		if CurrentSpecReport().Failed() && os.Getenv("E2E_KEEP_NAMESPACES") == "1" {
			GinkgoWriter.Printf("keeping namespace %s (E2E_KEEP_NAMESPACES=1)\n", ns.Name)
			return
		}
		// Not waited for until gone, but the delete itself is retried: a fault may have left the
		// API server busy.
		Eventually(func() error { return client.IgnoreNotFound(k8s.Delete(context.Background(), ns)) }).
			WithTimeout(time.Minute).Should(Succeed(), "deleting namespace %s", ns.Name)
	})
	return ns.Name
}

// step is a StepRun of the busybox test image whose main runs script as UID/GID 1000 (so the
// executor runs unprivileged as the same UID) and declares the output v.
func step(ns, name, script string) *StepRunWrapper {
	return MakeStepRun(name, ns).Image(busyboxImage).PullPolicy(corev1.PullIfNotPresent).
		Command("sh", "-c", script).RunAs(uid1000, gid1000).Output("v", outputs+"/v", nil)
}

// wstep is a WorkflowRun step of the busybox test image running script, as UID/GID 1000.
func wstep(name, script string) *StepWrapper {
	s := MakeStep(name).Image(busyboxImage).PullPolicy(corev1.PullIfNotPresent).Command("sh", "-c", script)
	s.Template.SecurityContext = &corev1.SecurityContext{RunAsUser: uid1000, RunAsGroup: gid1000}
	return s
}

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

func exitCode(sr *v1alpha1.StepRun) string {
	if sr.Status.ExitCode == nil {
		return "<none>"
	}
	return fmt.Sprint(*sr.Status.ExitCode)
}

func describeStatus(sr *v1alpha1.StepRun) string {
	var outs []string
	if sr.Status.Outputs != nil {
		for _, p := range sr.Status.Outputs.Parameters {
			outs = append(outs, p.Name+"="+p.Value)
		}
	}
	return fmt.Sprintf("%s/%s phase=%s reason=%s exitCode=%s restarts=%d message=%q outputs=%v",
		sr.Namespace, sr.Name, sr.Status.Phase, sr.Status.Reason, exitCode(sr), sr.Status.ExecutorRestarts,
		sr.Status.Message, outs)
}

func dumpNamespace(ns string) {
	c := context.Background()
	GinkgoWriter.Printf("\n==== namespace %s (failure dump) ====\n", ns)
	wfrs := &v1alpha1.WorkflowRunList{}
	if err := k8s.List(c, wfrs, client.InNamespace(ns)); err == nil {
		for _, w := range wfrs.Items {
			GinkgoWriter.Printf("workflowrun %s phase=%s reason=%s progress=%s message=%q\n",
				w.Name, w.Status.Phase, w.Status.Reason, w.Status.Progress, w.Status.Message)
		}
	}
	srs := &v1alpha1.StepRunList{}
	if err := k8s.List(c, srs, client.InNamespace(ns)); err == nil {
		for i := range srs.Items {
			GinkgoWriter.Printf("steprun %s\n", describeStatus(&srs.Items[i]))
		}
	}
	pods := &corev1.PodList{}
	if err := k8s.List(c, pods, client.InNamespace(ns)); err == nil {
		for _, p := range pods.Items {
			var st []string
			for _, s := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
				st = append(st, fmt.Sprintf("%s{running=%v waiting=%v terminated=%v restarts=%d}", s.Name,
					s.State.Running != nil, s.State.Waiting, s.State.Terminated, s.RestartCount))
			}
			GinkgoWriter.Printf("pod %s phase=%s reason=%s deleting=%v containers=%s\n", p.Name,
				p.Status.Phase, p.Status.Reason, p.DeletionTimestamp != nil, strings.Join(st, " "))
		}
	}
	events := &corev1.EventList{}
	if err := k8s.List(c, events, client.InNamespace(ns)); err == nil {
		for _, e := range events.Items {
			if e.Type == corev1.EventTypeWarning {
				GinkgoWriter.Printf("event %s %s/%s %s: %s\n", e.Type, e.InvolvedObject.Kind,
					e.InvolvedObject.Name, e.Reason, e.Message)
			}
		}
	}
}
