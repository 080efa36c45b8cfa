package integration

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/controller/steprun"
	"github.com/pnsflow/pnsflow/internal/executor"
	"github.com/pnsflow/pnsflow/internal/podspec"
	. "github.com/pnsflow/pnsflow/internal/testutil"
)

// The admission policies of config/policy, installed from those files on an API server of their
// own (they are cluster-wide, and the other specs impersonate executors without Pod-bound
// tokens): a token issued to a StepRun's Pod writes that StepRun's status and attaches to that
// Pod, and nothing else; the manager and an admin are not affected. No kubelet runs: the Pods are
// API objects, which is all TokenRequest needs to bind a token to one.

const (
	statusPolicy = "pnsflow-executor-steprun-status"
	attachPolicy = "pnsflow-executor-pod-attach"
)

var _ = Describe("The executor admission policies", Ordered, func() {
	var (
		ns      string
		a, b    *v1alpha1.StepRun
		podA    *corev1.Pod
		podB    *corev1.Pod
		tokenA  client.Client // the pnsflow-executor account's token issued to A's Pod
		configA *rest.Config
	)

	BeforeAll(func() {
		usePolicyControlPlane()
		Expect(InstallShippedRBAC(ctx, k8s, filepath.Join("..", "..", "config", "rbac"), managerNamespace)).To(Succeed())
		for _, obj := range shippedPolicies(filepath.Join("..", "..", "config", "policy")) {
			Expect(k8s.Create(ctx, obj)).To(Succeed(), "installing %s", obj.GetName())
		}

		ns = newNamespace(nil)
		executorAccount(ns, steprun.ExecutorIdentity)
		a = create(MakeStepRun("a", ns).Obj())
		b = create(MakeStepRun("b", ns).Obj())
		podA = stepRunPod(a, steprun.ExecutorIdentity)
		podB = stepRunPod(b, steprun.ExecutorIdentity)
		configA = podToken(ns, steprun.ExecutorIdentity, podA)
		tokenA = clientFor(configA)

		By("waiting until the policy refuses a known-bad write (a dry run, so nothing changes before)")
		Eventually(func() error {
			return tokenA.Status().Patch(ctx, b.DeepCopy(), mergePatch("forged"), client.DryRunAll)
		}).Should(refusedBy(statusPolicy))
	})

	It("is served as admissionregistration.k8s.io/v1 and enforced with Deny", func() {
		list, err := discovery.NewDiscoveryClientForConfigOrDie(cfg).ServerResourcesForGroupVersion(admissionregistrationv1.SchemeGroupVersion.String())
		Expect(err).NotTo(HaveOccurred())
		var served []string
		for _, r := range list.APIResources {
			served = append(served, r.Name)
		}
		Expect(served).To(ContainElements("validatingadmissionpolicies", "validatingadmissionpolicybindings"))
		for _, name := range []string{statusPolicy, attachPolicy} {
			binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
			Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, binding)).To(Succeed())
			Expect(binding.Spec.ValidationActions).To(Equal([]admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}))
		}
	})

	It("refuses a token issued to one StepRun's Pod writing another StepRun's status, however it writes", func() {
		before := statusOf(b)(Default)
		for how, write := range statusWrites(tokenA, b) {
			err := write("forged by a's executor")
			GinkgoWriter.Printf("%s: %v\n", how, err)
			Expect(err).To(refusedBy(statusPolicy), how)
			Expect(err).To(MatchError(ContainSubstring("holds a token of Pod "+podA.Name)), how)
			Expect(err).To(MatchError(ContainSubstring("StepRun %s/%s is run by Pod %s/%s", ns, b.Name, ns, podB.Name)), how)
		}
		Expect(statusOf(b)(Default)).To(Equal(before), "b's status is unchanged")
	})

	It("lets that token write its own StepRun's status, however it writes", func() {
		for how, write := range statusWrites(tokenA, a) {
			Expect(write("written by a's executor: "+how)).To(Succeed(), how)
			Expect(statusOf(a)(Default).Message).To(Equal("written by a's executor: "+how), how)
		}
		By("reporting Running through the executor's own reporter")
		rep, err := executor.NewReporter(configA, ns, a.Name)
		Expect(err).NotTo(HaveOccurred())
		rep.UID = string(a.UID)
		Expect(rep.ReportRunning(ctx, time.Now())).To(Succeed())
		Expect(statusOf(a)(Default).Phase).To(Equal(v1alpha1.StepRunRunning))
	})

	It("refuses the executor account bound to no Pod: a token so minted, or impersonated (no user extras at all)", func() {
		impersonated := rest.CopyConfig(cfg)
		user, groups := ServiceAccountUser(ns, steprun.ExecutorIdentity)
		impersonated.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
		for _, c := range []*rest.Config{accountToken(ns, steprun.ExecutorIdentity, nil), impersonated} {
			Expect(clientFor(c).Status().Patch(ctx, a.DeepCopy(), mergePatch("unbound"))).
				To(And(refusedBy(statusPolicy), MatchError(ContainSubstring("holds a token bound to no Pod"))))
		}
		for how, err := range attachTransports(accountToken(ns, steprun.ExecutorIdentity, nil), ns, podA.Name) {
			Expect(err).To(attachRefusedBy(attachPolicy), how)
		}
	})

	It("confines the Pod token of a user-chosen account to its own StepRun's status, but not its other tokens", func() {
		executorAccount(ns, "builder")
		c := create(MakeStepRun("c", ns).ServiceAccount("builder").Obj())
		configC := podToken(ns, "builder", stepRunPod(c, "builder"))
		tokenC := clientFor(configC)
		Expect(tokenC.Status().Patch(ctx, c.DeepCopy(), mergePatch("own"))).To(Succeed())
		Expect(tokenC.Status().Patch(ctx, b.DeepCopy(), mergePatch("forged by c's executor"))).To(refusedBy(statusPolicy))

		By("leaving a token of that account bound to no Pod (a person's or a CI job's) to RBAC")
		unbound := clientFor(accountToken(ns, "builder", nil))
		Expect(unbound.Status().Patch(ctx, b.DeepCopy(), mergePatch("by the account's owner"))).To(Succeed())

		By("leaving its attaches to RBAC: nothing in an attach tells a StepRun's Pod from another workload's")
		for how, err := range attachTransports(configC, ns, podB.Name) {
			Expect(err).To(attachPastAdmission(), how)
		}
	})

	It("leaves the manager's Pod token unaffected, in its own namespace too", func() {
		managerPod := createPod(managerNamespace, "pnsflow-manager-0", ManagerAccount)
		manager := clientFor(podToken(managerNamespace, ManagerAccount, managerPod))
		local := create(MakeStepRun("local", managerNamespace).Obj())
		DeferCleanup(func() { _ = k8s.Delete(ctx, local) })
		for _, sr := range []*v1alpha1.StepRun{b, local} {
			// Eventually: RBAC's cache may not hold the manager's ClusterRoleBinding yet.
			Eventually(func() error { return manager.Status().Patch(ctx, sr.DeepCopy(), mergePatch("by the manager")) }).Should(Succeed(), sr.Name)
			Expect(statusOf(sr)(Default).Message).To(Equal("by the manager"), sr.Name)
		}
	})

	It("leaves an admin unaffected", func() {
		for how, write := range statusWrites(k8s, b) {
			Expect(write("by an admin: "+how)).To(Succeed(), how)
		}
		for how, err := range attachTransports(cfg, ns, podB.Name) {
			Expect(err).To(attachPastAdmission(), how)
		}
	})

	It("lets that token attach only to its own Pod (admission sees the attach as CONNECT)", func() {
		for how, err := range attachTransports(configA, ns, podB.Name) {
			Expect(err).To(attachRefusedBy(attachPolicy), how)
			Expect(err).To(MatchError(ContainSubstring("holds a token of Pod %s and may not attach to Pod %s/%s", podA.Name, ns, podB.Name)), how)
		}
		for how, err := range attachTransports(configA, ns, podA.Name) {
			Expect(err).To(attachPastAdmission(), how)
		}
	})

	It("refuses a StepRun name too long for its Pod's name", func() {
		err := k8s.Create(ctx, MakeStepRun(strings.Repeat("n", podspec.MaxStepRunNameLength+1), ns).Obj())
		Expect(err).To(MatchError(ContainSubstring("a StepRun name is at most 249 characters")))
		Expect(k8s.Create(ctx, MakeStepRun(strings.Repeat("n", podspec.MaxStepRunNameLength), ns).Obj())).To(Succeed())
	})
})

// usePolicyControlPlane starts a kube-apiserver and etcd of their own for the calling container
// and points the suite's helpers (cfg, k8s) at it until the container is done.
func usePolicyControlPlane() {
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: envtestAssets(),
	}
	// GA and on by default since 1.30 (the ValidatingAdmissionPolicy admission plugin too); said
	// here so that the API these specs need does not depend on a default.
	env.ControlPlane.GetAPIServer().Configure().Set("runtime-config", "admissionregistration.k8s.io/v1=true")
	admin, err := env.Start()
	Expect(err).NotTo(HaveOccurred())
	c, err := client.New(admin, client.Options{Scheme: k8s.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	suiteCfg, suiteK8s := cfg, k8s
	cfg, k8s = admin, c
	DeferCleanup(func() {
		cfg, k8s = suiteCfg, suiteK8s
		Expect(env.Stop()).To(Succeed())
	})
}

// shippedPolicies decodes every object of the files dir's kustomization lists, as shipped.
func shippedPolicies(dir string) []client.Object {
	var k struct{ Resources []string }
	raw, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	Expect(err).NotTo(HaveOccurred())
	Expect(yaml.Unmarshal(raw, &k)).To(Succeed())
	var out []client.Object
	for _, f := range k.Resources {
		raw, err := os.ReadFile(filepath.Join(dir, f))
		Expect(err).NotTo(HaveOccurred())
		docs := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
		for {
			doc, err := docs.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			Expect(err).NotTo(HaveOccurred())
			var head metav1.TypeMeta
			Expect(yaml.Unmarshal(doc, &head)).To(Succeed())
			var obj client.Object
			switch head.Kind {
			case "ValidatingAdmissionPolicy":
				obj = &admissionregistrationv1.ValidatingAdmissionPolicy{}
			case "ValidatingAdmissionPolicyBinding":
				obj = &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
			default:
				Fail(fmt.Sprintf("%s: unexpected kind %q", f, head.Kind))
			}
			// Strict: a misspelt field would otherwise be dropped here and never reach the API server.
			Expect(yaml.UnmarshalStrict(doc, obj)).To(Succeed(), f)
			out = append(out, obj)
		}
	}
	return out
}

// executorAccount creates account in ns, bound to the executor's ClusterRole, as the manager does
// for pnsflow-executor and a user does for a chosen serviceAccountName. It also grants update on
// stepruns/status, which the executor's role does not (it only patches): the policy must hold
// whatever RBAC grants, and an update is one of the writes it is tested against.
func executorAccount(ns, account string) {
	Expect(k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: account, Namespace: ns}})).To(Succeed())
	subjects := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: account, Namespace: ns}}
	Expect(k8s.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: account, Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: steprun.ExecutorIdentity},
		Subjects:   subjects,
	})).To(Succeed())
	Expect(k8s.Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: account + "-status-update", Namespace: ns},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"stepruns/status"}, Verbs: []string{"update"}}},
	})).To(Succeed())
	Expect(k8s.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: account + "-status-update", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: account + "-status-update"},
		Subjects:   subjects,
	})).To(Succeed())
	user, groups := ServiceAccountUser(ns, account)
	update := statusPatch(ns)
	update.Verb = "update"
	for _, attrs := range []authorizationv1.ResourceAttributes{statusPatch(ns), update} {
		Eventually(allowed(user, groups, attrs)).Should(BeTrue(), "RBAC lets %s %s", user, attrs.Verb)
	}
}

// stepRunPod creates the Pod the manager would make for sr (only its name and account matter
// here) and fills in sr's UID.
func stepRunPod(sr *v1alpha1.StepRun, account string) *corev1.Pod {
	Expect(k8s.Get(ctx, key(sr.Namespace, sr.Name), sr)).To(Succeed())
	return createPod(sr.Namespace, podspec.PodName(sr.Name), account)
}

func createPod(ns, name, account string) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{ServiceAccountName: account, AutomountServiceAccountToken: new(false),
			Containers: []corev1.Container{{Name: "main", Image: "busybox:1.36", Stdin: true, StdinOnce: true}}},
	}
	Expect(k8s.Create(ctx, pod)).To(Succeed())
	return pod
}

// podToken is the API config of a token of account issued to pod (TokenRequest, as kubelet
// gets the projected token it mounts).
func podToken(ns, account string, pod *corev1.Pod) *rest.Config {
	return accountToken(ns, account, &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID})
}

// accountToken is the API config of a token of account, bound to bound (nil: to no object).
func accountToken(ns, account string, bound *authenticationv1.BoundObjectReference) *rest.Config {
	cs, err := kubernetes.NewForConfig(cfg)
	Expect(err).NotTo(HaveOccurred())
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, account,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{BoundObjectRef: bound}}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	c := rest.AnonymousClientConfig(cfg)
	c.BearerToken = tr.Status.Token
	return c
}

func clientFor(c *rest.Config) client.Client {
	cl, err := client.New(c, client.Options{Scheme: k8s.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	return cl
}

// mergePatch sets status.message, as the executor's reports do (JSON merge patches).
func mergePatch(message string) client.Patch {
	return client.RawPatch(types.MergePatchType, fmt.Appendf(nil, `{"status":{"message":%q}}`, message))
}

// statusWrites are the three ways to write sr's status.message as c: a merge patch, an update
// and a server-side apply (all UPDATE to admission).
func statusWrites(c client.Client, sr *v1alpha1.StepRun) map[string]func(message string) error {
	return map[string]func(string) error{
		"merge patch": func(m string) error { return c.Status().Patch(ctx, sr.DeepCopy(), mergePatch(m)) },
		"update": func(m string) error {
			cur := &v1alpha1.StepRun{}
			if err := k8s.Get(ctx, key(sr.Namespace, sr.Name), cur); err != nil {
				return err
			}
			cur.Status.Message = m
			return c.Status().Update(ctx, cur)
		},
		"server-side apply": func(m string) error {
			body := fmt.Appendf(nil, `{"apiVersion":%q,"kind":"StepRun","metadata":{"name":%q,"namespace":%q},"status":{"message":%q}}`,
				v1alpha1.GroupVersion.String(), sr.Name, sr.Namespace, m)
			return c.Status().Patch(ctx, sr.DeepCopy(), client.RawPatch(types.ApplyPatchType, body),
				client.FieldOwner("policy-test"), client.ForceOwnership)
		},
	}
}

// refusedBy matches a 403 Forbidden whose message names policy.
func refusedBy(policy string) OmegaMatcher {
	return And(Satisfy(apierrors.IsForbidden), MatchError(ContainSubstring("ValidatingAdmissionPolicy '%s'", policy)))
}

// attachRefusedBy matches an attach that policy refuses.
func attachRefusedBy(policy string) OmegaMatcher {
	return MatchError(And(ContainSubstring("ValidatingAdmissionPolicy '%s'", policy), ContainSubstring("forbidden")))
}

// attachPastAdmission matches an attach that admission let through: no kubelet serves the
// stream, which the API server says only after authorization and admission.
func attachPastAdmission() OmegaMatcher {
	return MatchError(ContainSubstring("does not have a host assigned"))
}

// attachTransports attaches to main in ns/pod as c, by each transport an attach can take: the
// executor's own attacher (WebSocket, falling back to SPDY), and each of the two alone (a
// WebSocket handshake is a GET, SPDY a POST; admission sees both as CONNECT).
func attachTransports(c *rest.Config, ns, pod string) map[string]error {
	u := kubernetes.NewForConfigOrDie(c).CoreV1().RESTClient().Post().Namespace(ns).Resource("pods").Name(pod).
		SubResource("attach").Param("container", "main").Param("stdin", "true").URL()
	errs := map[string]error{}
	attacher, err := executor.NewPodAttacher(c, ns, pod)
	Expect(err).NotTo(HaveOccurred())
	errs["executor's attacher"] = attacher.Attach(ctx, strings.NewReader("x"))
	ws, err := remotecommand.NewWebSocketExecutor(c, "GET", u.String())
	Expect(err).NotTo(HaveOccurred())
	errs["WebSocket"] = ws.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: strings.NewReader("x")})
	spdy, err := remotecommand.NewSPDYExecutor(c, "POST", u)
	Expect(err).NotTo(HaveOccurred())
	errs["SPDY"] = spdy.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: strings.NewReader("x")})
	return errs
}
