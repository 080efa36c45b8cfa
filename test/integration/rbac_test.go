package integration

import (
	"context"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executor"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
	"github.com/pnsflow/pnsflow/internal/manager"
	. "github.com/pnsflow/pnsflow/internal/testutil"
)

// The manager as `make deploy` runs it: authenticated as its ServiceAccount, bound to exactly
// config/rbac (the generated ClusterRole and the leader-election Role), electing a leader. Its
// API server also enforces owner-reference permissions (OwnerReferencesPermissionEnforcement,
// on in OpenShift and other hardened clusters), so the finalizers rules are exercised too.
// Every request of the manager and of the executors goes through a recorder of 403 answers.

// managerNamespace is where config/default installs the manager.
const managerNamespace = "pnsflow-system"

var _ = Describe("The manager under the RBAC it ships", Ordered, func() {
	var (
		env              *envtest.Environment
		managerRefusals  = &Refusals{}
		executorRefusals = &Refusals{}
		stopRBACManager  func()
	)

	// executorAs is the API config of an executor running as account in ns, once RBAC lets that
	// account report (the manager or the test has just bound it; the authorizer's cache follows).
	executorAs := func(ns, account string) *rest.Config {
		user, groups := ServiceAccountUser(ns, account)
		Eventually(allowed(user, groups, statusPatch(ns))).Should(BeTrue(), "RBAC lets %s report", user)
		c := rest.CopyConfig(cfg)
		c.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
		return executorRefusals.Record(c)
	}

	BeforeAll(func() {
		env = useHardenedControlPlane()
		Expect(InstallShippedRBAC(ctx, k8s, filepath.Join("..", "..", "config", "rbac"), managerNamespace)).To(Succeed())
		user, groups := ServiceAccountUser(managerNamespace, ManagerAccount)
		// The manager starts once RBAC's cache holds both of its roles: a request it made
		// before would be refused for a reason that is not the roles' content.
		Eventually(allowed(user, groups, authorizationv1.ResourceAttributes{Verb: "list", Group: v1alpha1.GroupVersion.Group, Resource: "workflowruns"})).Should(BeTrue())
		Eventually(allowed(user, groups, authorizationv1.ResourceAttributes{Namespace: managerNamespace, Verb: "create", Group: coordinationv1.GroupName, Resource: "leases"})).Should(BeTrue())
		u, err := env.ControlPlane.AddUser(envtest.User{Name: user, Groups: groups}, nil)
		Expect(err).NotTo(HaveOccurred())
		stopRBACManager = startManagerAs(managerRefusals.Record(u.Config()))
		DeferCleanup(func() { stopRBACManager() })
	})

	AfterEach(func() {
		Expect(managerRefusals.List()).To(BeEmpty(), "requests of the manager the API server refused")
		Expect(executorRefusals.List()).To(BeEmpty(), "requests of an executor the API server refused")
	})

	It("runs on an API server that refuses blockOwnerDeletion without update on the owner's finalizers", func() {
		ns := newNamespace(nil)
		Expect(k8s.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "pod-maker", Namespace: ns},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"create"}}}})).To(Succeed())
		Expect(k8s.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "pod-maker", Namespace: ns},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pod-maker"},
			Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "pod-maker"}}})).To(Succeed())
		c := rest.CopyConfig(cfg)
		c.Impersonate = rest.ImpersonationConfig{UserName: "pod-maker"}
		maker, err := client.New(c, client.Options{Scheme: k8s.Scheme()})
		Expect(err).NotTo(HaveOccurred())
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "owned", Namespace: ns, OwnerReferences: []metav1.OwnerReference{{
				APIVersion: v1alpha1.GroupVersion.String(), Kind: "StepRun", Name: "owner", UID: "0",
				Controller: new(true), BlockOwnerDeletion: new(true)}}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "busybox:1.36"}}},
		}
		// Refused first for want of create (until RBAC's cache has the Role), then for the owner.
		Eventually(func() error { return maker.Create(ctx, pod.DeepCopy()) }).Should(MatchError(ContainSubstring("cannot set blockOwnerDeletion")))
	})

	It("sets a namespace up for its first StepRun, which its executor reports to the end", func() {
		ns := newNamespace(nil)
		sr := create(MakeStepRun("first", ns).Obj())
		pod := pending(sr)
		Expect(k8s.Get(ctx, key(ns, "pnsflow-executor"), &corev1.ServiceAccount{})).To(Succeed())
		rb := &rbacv1.RoleBinding{}
		Expect(k8s.Get(ctx, key(ns, "pnsflow-executor"), rb)).To(Succeed())
		Expect(rb.RoleRef).To(Equal(rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "pnsflow-executor"}))

		ex := playExecutor(executorAs(ns, "pnsflow-executor"), sr, pod)
		ex.reportRunning()
		ex.reportExit(0)
		Eventually(statusOf(sr)).Should(ended(v1alpha1.StepRunSucceeded, v1alpha1.ReasonSucceeded))

		By("flagging kubelet's disagreement on the exit code, with an event")
		setPodStatus(sr, corev1.PodFailed, exited(0, "Completed"), exited(2, "Error"))
		Eventually(statusOf(sr)).Should(HaveField("Conditions", ContainElement(HaveField("Type", v1alpha1.ConditionExitCodeMismatch))))
		Eventually(eventReasons(ns)).Should(ContainElement(v1alpha1.ReasonExitCodeMismatch))
	})

	It("ends a run its executor cannot end, and deletes the Pod left pulling", func() {
		ns := newNamespace(nil)
		sr := create(MakeStepRun("stuck", ns).Obj())
		pending(sr)
		setPodStatus(sr, corev1.PodPending, running(), waiting("ImagePullBackOff", "back-off"))
		Eventually(statusOf(sr)).Should(ended(v1alpha1.StepRunError, v1alpha1.ReasonImagePullFailed))
		Eventually(func() []corev1.Pod { return podsOf(sr) }).Should(BeEmpty())
		Eventually(eventReasons(ns)).Should(ContainElement(v1alpha1.ReasonImagePullFailed))
	})

	It("checks a chosen serviceAccountName, whose executor then reports as that account", func() {
		ns := newNamespace(nil)
		createMuteAndBoundAccounts(ns)
		boundCfg := executorAs(ns, "bound")

		mute := create(MakeStepRun("mute", ns).ServiceAccount("mute").Obj())
		Eventually(statusOf(mute)).Should(ended(v1alpha1.StepRunError, v1alpha1.ReasonServiceAccountForbidden))

		bound := create(MakeStepRun("bound", ns).ServiceAccount("bound").Obj())
		pod := pending(bound)
		Expect(pod.Spec.ServiceAccountName).To(Equal("bound"))
		ex := playExecutor(boundCfg, bound, pod)
		ex.reportRunning()
		ex.reportExit(3)
		Eventually(statusOf(bound)).Should(ended(v1alpha1.StepRunFailed, v1alpha1.ReasonExitCode))
	})

	It("runs a StepRun with stdin, which its executor writes through the attach API", func() {
		ns := newNamespace(nil)
		sr := create(MakeStepRun("stdin", ns).Stdin("hello\n").Obj())
		pod := pending(sr)
		Expect(pod.Spec.Containers[0].Stdin).To(BeTrue())
		ex := playExecutor(executorAs(ns, "pnsflow-executor"), sr, pod)
		ex.reportRunning()
		attacher, err := executor.NewPodAttacher(ex.cfg, ns, pod.Name)
		Expect(err).NotTo(HaveOccurred())
		feeder := &executor.StdinFeeder{StepRun: ex.reporter, Pod: ex.watcher, Attacher: attacher, Attempts: 1}
		// No kubelet serves the stream: the API server says so once it has authorized the attach.
		Expect(feeder.Feed(ex.ctx)).To(MatchError(ContainSubstring("does not have a host assigned")))
		ex.reportExit(0)
		Eventually(statusOf(sr)).Should(ended(v1alpha1.StepRunSucceeded, v1alpha1.ReasonSucceeded))
	})

	It("runs a WorkflowRun to the end and deletes it after its TTL", func() {
		ns := newNamespace(nil)
		wfr := createRun(MakeWorkflowRun("dag", ns).TTL(1).Steps(MakeStep("a"), MakeStep("each").DependsOn("a").Items("x", "y")).Obj())
		a := stepRun(ns, "dag-a")
		Expect(metav1.GetControllerOf(a).BlockOwnerDeletion).To(HaveValue(BeTrue()))
		pending(a)
		succeed(ns, a.Name)
		for _, name := range []string{"dag-each-0", "dag-each-1"} {
			pending(stepRun(ns, name))
		}
		Eventually(finishAll(wfr)).Should(Equal(v1alpha1.WorkflowRunSucceeded))
		Eventually(eventReasons(ns)).Should(ContainElement("Started"))
		Eventually(func() error { return k8s.Get(ctx, key(ns, wfr.Name), &v1alpha1.WorkflowRun{}) }, "10s").Should(Satisfy(apierrors.IsNotFound))
	})

	It("cancels a WorkflowRun by deleting the Pods of its unfinished StepRuns", func() {
		ns := newNamespace(nil)
		wfr := createRun(MakeWorkflowRun("stop", ns).Steps(MakeStep("fan").Sequence(2)).Obj())
		for _, name := range []string{"stop-fan-0", "stop-fan-1"} {
			pending(stepRun(ns, name))
		}
		setSpec(wfr, func(s *v1alpha1.WorkflowRunSpec) { s.Cancel = true })
		Eventually(runStatus(wfr)).Should(HaveField("Phase", v1alpha1.WorkflowRunCancelled))
		for _, sr := range stepRunsOf(wfr) {
			Expect(sr.Status).To(ended(v1alpha1.StepRunError, v1alpha1.ReasonPodDeleted), sr.Name)
			Expect(podsOf(&sr)).To(BeEmpty(), sr.Name)
		}
	})

	It("reads a StepRun past its cache to tell a stranger's from its own", func() {
		ns := newNamespace(nil)
		create(MakeStepRun("taken-a", ns).Obj())
		wfr := createRun(MakeWorkflowRun("taken", ns).Steps(MakeStep("a")).Obj())
		Eventually(runStatus(wfr)).Should(And(
			HaveField("Phase", Satisfy(v1alpha1.WorkflowRunPhase.IsTerminal)),
			HaveField("Message", ContainSubstring("StepRun name taken-a is taken by an object this run does not own"))))
	})

	It("was refused nothing, down to releasing its leader lease on shutdown", func() {
		stopRBACManager()
		Expect(eventReasonsIn(&corev1.EventList{}, managerNamespace)()).To(ContainElement("LeaderElection"))
		lease := &coordinationv1.Lease{}
		Expect(k8s.Get(ctx, key(managerNamespace, "pnsflow-manager.pnsflow.dev"), lease)).To(Succeed())
		Expect(lease.Spec.HolderIdentity).To(Or(BeNil(), HaveValue(BeEmpty())), "released")
	})
})

// useHardenedControlPlane starts a kube-apiserver and etcd of their own for the calling
// container, with OwnerReferencesPermissionEnforcement on, and points the suite's helpers (cfg,
// k8s) at it until the container is done.
func useHardenedControlPlane() *envtest.Environment {
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: envtestAssets(),
	}
	env.ControlPlane.GetAPIServer().Configure().Set("enable-admission-plugins", "OwnerReferencesPermissionEnforcement")
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
	return env
}

// startManagerAs runs the manager with c, electing a leader as deployed, and returns once it
// leads. The returned func stops it and waits until it has; calling it again does nothing.
func startManagerAs(c *rest.Config) func() {
	mgr, stop := runManager(c, manager.Options{
		MetricsAddr: "0", ProbeAddr: "0", StepRunWorkers: 4,
		LeaderElect: true, LeaderElectionNamespace: managerNamespace,
		Pod: podConfig, Policy: testPolicy, SkipNameValidation: true,
	})
	Eventually(mgr.Elected()).Should(BeClosed())
	return stop
}

// allowed asks the API server whether user may do what attrs say.
func allowed(user string, groups []string, attrs authorizationv1.ResourceAttributes) func(Gomega) bool {
	return func(g Gomega) bool {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, Groups: groups, ResourceAttributes: &attrs}}
		g.Expect(k8s.Create(ctx, sar)).To(Succeed())
		return sar.Status.Allowed
	}
}

// statusPatch is what an executor must be allowed to report in ns.
func statusPatch(ns string) authorizationv1.ResourceAttributes {
	return authorizationv1.ResourceAttributes{Namespace: ns, Verb: "patch", Group: v1alpha1.GroupVersion.Group,
		Resource: "stepruns", Subresource: "status"}
}

// eventReasons lists the reasons of the events.k8s.io events in ns, for Eventually.
func eventReasons(ns string) func() []string {
	return eventReasonsIn(&eventsv1.EventList{}, ns)
}

// eventReasonsIn lists the reasons of the events in ns, of either API (list's type says which).
func eventReasonsIn(list client.ObjectList, ns string) func() []string {
	return func() []string {
		ExpectWithOffset(1, k8s.List(ctx, list, client.InNamespace(ns))).To(Succeed())
		var out []string
		switch l := list.(type) {
		case *eventsv1.EventList:
			for _, e := range l.Items {
				out = append(out, e.Reason)
			}
		case *corev1.EventList:
			for _, e := range l.Items {
				out = append(out, e.Reason)
			}
		}
		return out
	}
}

// playedExecutor makes the API calls of one executor, as cfg says, while the test plays kubelet.
type playedExecutor struct {
	cfg      *rest.Config
	ctx      context.Context
	sr       *v1alpha1.StepRun
	watcher  *executor.PodWatcher
	reporter *executor.Reporter
	logs     *executor.PodLogs
}

// playExecutor starts the executor's Pod watch; it stops when the spec ends.
func playExecutor(c *rest.Config, sr *v1alpha1.StepRun, pod *corev1.Pod) *playedExecutor {
	conf, err := executorconfig.Decode(envOf(pod.Spec.InitContainers[0], executorconfig.ConfigEnv))
	Expect(err).NotTo(HaveOccurred())
	ex := &playedExecutor{cfg: c, sr: sr}
	// A bound, so that a watch that cannot start fails the spec instead of hanging it.
	var cancel context.CancelFunc
	ex.ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
	ex.watcher, err = executor.NewPodWatcher(c, sr.Namespace, pod.Name)
	Expect(err).NotTo(HaveOccurred())
	ex.reporter, err = executor.NewReporter(c, sr.Namespace, sr.Name)
	Expect(err).NotTo(HaveOccurred())
	ex.reporter.UID, ex.reporter.Info = string(sr.UID), executor.RunInfoOf(conf)
	ex.logs, err = executor.NewPodLogs(c, sr.Namespace, pod.Name)
	Expect(err).NotTo(HaveOccurred())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = ex.watcher.Run(ex.ctx)
	}()
	DeferCleanup(func() {
		cancel()
		<-done
	})
	return ex
}

// reportRunning has kubelet start main, and the executor see it and report Running.
func (ex *playedExecutor) reportRunning() {
	setPodStatus(ex.sr, corev1.PodRunning, running(), running())
	started, err := ex.watcher.MainStarted(ex.ctx)
	Expect(err).NotTo(HaveOccurred())
	Expect(started.Running).NotTo(BeNil())
	Expect(ex.reporter.ReportRunning(ex.ctx, started.Running.StartedAt)).To(Succeed())
	Eventually(statusOf(ex.sr)).Should(HaveField("Phase", v1alpha1.StepRunRunning))
}

// reportExit has main exit with code, and the executor read main's log and report the end.
func (ex *playedExecutor) reportExit(code int32) {
	reason := "Completed"
	if code != 0 {
		reason = "Error"
	}
	setPodStatus(ex.sr, corev1.PodRunning, running(), exited(code, reason))
	term, err := ex.watcher.MainTerminated(ex.ctx)
	Expect(err).NotTo(HaveOccurred())
	// No kubelet keeps a log: the API server answers an empty one.
	result, err := ex.logs.Result(ex.ctx)
	Expect(err).NotTo(HaveOccurred())
	Expect(strings.TrimSpace(result)).To(BeEmpty())
	Expect(ex.reporter.ReportTerminal(ex.ctx, executor.Decide(term, executor.Collected{}, &result, 0))).To(Succeed())
}
