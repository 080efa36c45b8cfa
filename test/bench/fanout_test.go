//go:build bench

// The fan-out benchmark. `make bench` runs it; by hand:
//
//	KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh) go test -tags bench -run TestFanOut -v -timeout 60m ./test/bench
//
// Settings (environment):
//
//	BENCH_N          sizes to run, comma-separated (default 100,1000,5000)
//	BENCH_MANAGER    binary (default): ./cmd/manager built and run as its own process, so its
//	                 peak RSS is the manager's alone; inprocess: manager.New in this process
//	BENCH_MANAGER_ARGS  extra manager flags (binary only), to try other settings than the
//	                 shipped ones, e.g. "--kube-api-qps=1000 --steprun-workers=32"
//	BENCH_EXECUTORS  concurrent executor reports (default 64)
//	BENCH_TIMEOUT    limit for one N (default 10m)
//	BENCH_HEAPPROFILE  a directory: with BENCH_MANAGER=inprocess, a heap profile of the
//	                 process when the executors are done (the manager's caches are full)
//	BENCH_CPUPROFILE   a directory: with BENCH_MANAGER=inprocess, a CPU profile of the process
//	                 during the fan-out (create → all Pods)
//	BENCH_APISERVER_PROFILE  sizes whose fan-out gets a kube-apiserver CPU profile, bucketed
//	                 in the report (default 5000; "none")
//	BENCH_CONTENT_TYPE  with BENCH_MANAGER=inprocess, the manager's wire format: json, or
//	                 protobuf (rest.Config.ContentType for everything); default controller-runtime's
//	BENCH_OUT        directory for the audit log, manager logs and results.md
//	                 (default bin/bench/<time>)
//
// For each N, in a fresh namespace with a freshly started manager (so peak RSS and the writes
// belong to that N alone): a one-item warm-up run in a namespace of its own proves the manager
// has synced its caches and started its controllers; then one WorkflowRun with a withSequence
// step of N items (parallelism unlimited) is created and timed from that create.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
	"github.com/pnsflow/pnsflow/internal/manager"
	"github.com/pnsflow/pnsflow/internal/podspec"
	"github.com/pnsflow/pnsflow/internal/testutil"
)

// The manager runs as the ServiceAccount `make deploy` gives it, bound to the generated
// ClusterRole: the benchmark exercises the shipped RBAC, and the audit log tells its writes
// apart by user.
const (
	managerNamespace = "pnsflow-system"
	managerAccount   = testutil.ManagerAccount
	runName          = "fanout"
	auditMarker      = "bench-audit-marker"
)

var managerUser = "system:serviceaccount:" + managerNamespace + ":" + managerAccount

type bench struct {
	t          *testing.T
	s          settings
	env        *envtest.Environment
	admin      *rest.Config
	k8s        client.WithWatch
	http       *http.Client
	mgrUser    *envtest.AuthenticatedUser
	kubeconfig string
	managerBin string
	auditLog   string
	// privilege is what the Pod builder decides for the benchmark's template; the executor
	// finds it in its config and records it in its first report.
	privilege executorconfig.Privilege
}

func TestFanOut(t *testing.T) {
	s := loadSettings(t)
	ctrl.SetLogger(zap.New(zap.WriteTo(mustCreate(t, filepath.Join(s.out, "bench.log")))))
	b := &bench{t: t, s: s}
	b.start()
	defer func() {
		if err := b.env.Stop(); err != nil {
			t.Errorf("stopping envtest: %v", err)
		}
	}()

	say("manager: %s; shipped defaults: --kube-api-qps %d --kube-api-burst %d --steprun-workers %d --workflowrun-workers %d",
		s.mode, manager.DefaultQPS, manager.DefaultBurst, manager.DefaultStepRunWorkers, manager.DefaultWorkflowRunWorkers)
	var results []*result
	for _, n := range s.sizes {
		r := b.runN(n)
		results = append(results, r)
		say("N=%d done: %s", n, r.row())
	}
	largest := 0
	for _, r := range results {
		if r.profileChunks != nil {
			largest = max(largest, r.n)
		}
	}
	for _, r := range results {
		if r.profileChunks != nil {
			r.profile = analyseProfile(s, r.n, r.profileChunks, r.n == largest)
		}
	}
	report := renderReport(s, results)
	fmt.Print("\n" + report)
	if err := os.WriteFile(filepath.Join(s.out, "results.md"), []byte(report), 0o644); err != nil {
		t.Error(err)
	}
	say("artifacts (audit log, manager logs, results.md): %s", s.out)
}

// start brings up kube-apiserver (with the audit log) and etcd, installs the CRDs and the
// shipped RBAC, and provisions the manager's identity.
func (b *bench) start() {
	t := b.t
	policy := filepath.Join(b.s.out, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	b.auditLog = filepath.Join(b.s.out, "audit.log")
	b.env = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(b.s.root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: envtestAssets(t, b.s.root),
	}
	b.env.ControlPlane.GetAPIServer().Configure().
		Append("audit-policy-file", policy).
		Append("audit-log-path", b.auditLog)
	var err error
	if b.admin, err = b.env.Start(); err != nil {
		t.Fatalf("starting envtest: %v", err)
	}
	scheme, err := manager.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	if b.k8s, err = client.NewWithWatch(b.admin, client.Options{Scheme: scheme}); err != nil {
		t.Fatal(err)
	}
	if b.http, err = rest.HTTPClientFor(b.admin); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := testutil.InstallShippedRBAC(ctx, b.k8s, filepath.Join(b.s.root, "config", "rbac"), managerNamespace); err != nil {
		t.Fatal(err)
	}
	user, groups := testutil.ServiceAccountUser(managerNamespace, managerAccount)
	b.mgrUser, err = b.env.ControlPlane.AddUser(envtest.User{Name: user, Groups: groups}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := b.mgrUser.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	b.kubeconfig = filepath.Join(b.s.out, "manager.kubeconfig")
	if err := os.WriteFile(b.kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	if b.s.mode == "binary" {
		if b.managerBin, err = buildManager(b.s.root, b.s.out); err != nil {
			t.Fatal(err)
		}
	}
	b.privilege = podspec.ExecutorPrivileged(&v1alpha1.StepRun{Spec: template()})
}

// template is what every item runs; no kubelet runs it.
func template() v1alpha1.StepRunSpec {
	return testutil.MakeStep("fan").Obj().Template
}

func fanOut(name, ns string, n int) *v1alpha1.WorkflowRun {
	return testutil.MakeWorkflowRun(name, ns).Steps(testutil.MakeStep("fan").Sequence(int32(n))).Obj()
}

// result is one N's row.
type result struct {
	n                               int
	stepRuns, pods, succeeded       time.Duration
	executorsTook                   time.Duration
	manager, executor, others       int
	writes                          *writeCounts
	rss                             int64
	wfrBytes, wfrStatusBytes        int
	progressAge, fanOutAge, doneAge time.Duration
	progressGap                     time.Duration
	statusUpdates                   int
	cpu                             map[string]time.Duration
	loadBefore, loadAfter           string
	reconciles                      map[string]int
	cpuFanOut                       map[string]time.Duration
	podLag50, podLagMax             time.Duration
	// phases is the CPU of each process in the fan-out, the reports and the whole life.
	phases        phaseCPU
	profileChunks []string
	profile       *fanOutProfile
}

func (b *bench) newNamespace(ctx context.Context, prefix string) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix}}
	if err := b.k8s.Create(ctx, ns); err != nil {
		b.t.Fatal(err)
	}
	return ns.Name
}

// executorConfig is a client certificate for the namespace's pnsflow-executor ServiceAccount:
// to RBAC and the audit log the benchmark's reports come from the executors' own identity.
func (b *bench) executorConfig(ns string) *rest.Config {
	u, err := b.env.ControlPlane.AddUser(envtest.User{
		Name:   "system:serviceaccount:" + ns + ":pnsflow-executor",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns},
	}, &rest.Config{QPS: 5000, Burst: 10000})
	if err != nil {
		b.t.Fatal(err)
	}
	return u.Config()
}

func (b *bench) startManager() (runningManager, string) {
	switch b.s.mode {
	case "inprocess":
		cfg, err := contentTypes(b.mgrUser.Config(), b.s.contentType)
		if err != nil {
			b.t.Fatal(err)
		}
		m, err := startInProcessManager(cfg)
		if err != nil {
			b.t.Fatal(err)
		}
		return m, ""
	default:
		log := filepath.Join(b.s.out, fmt.Sprintf("manager-%d.log", time.Now().UnixNano()))
		m, err := startBinaryManager(b.managerBin, b.kubeconfig, log, b.s.managerArgs)
		if err != nil {
			b.t.Fatal(err)
		}
		return m, log
	}
}

func (b *bench) runN(n int) *result {
	t := b.t
	ctx, cancel := context.WithTimeout(context.Background(), b.s.timeout)
	defer cancel()
	r := &result{n: n, loadBefore: loadAvg()}

	warmNS := b.newNamespace(ctx, fmt.Sprintf("bench-warmup-%d-", n))
	ns := b.newNamespace(ctx, fmt.Sprintf("bench-%d-", n))
	mgr, logPath := b.startManager()
	stopped := false
	defer func() {
		if !stopped {
			_ = mgr.Stop()
		}
	}()
	say("N=%d: manager pid %d %s; warming up in %s", n, mgr.PID(), logPath, warmNS)
	if _, err := b.run(ctx, mgr, warmNS, 1, nil); err != nil {
		t.Fatalf("warm-up: %v (manager log: %s)", err, logPath)
	}
	if err := b.settle(ctx, mgr, warmNS); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	recBefore, err := reconciles(ctx, mgr.MetricsURL())
	if err != nil {
		t.Fatal(err)
	}

	procs := childrenNamed("kube-apiserver", "etcd")
	if b.s.mode == "binary" {
		procs["manager"], procs["benchmark"] = mgr.PID(), os.Getpid()
	} else {
		procs["manager+benchmark"] = os.Getpid()
	}
	cpuBefore := cpuOf(procs)

	say("N=%d: creating WorkflowRun %s/%s", n, ns, runName)
	obs, err := b.run(ctx, mgr, ns, n, procs)
	if err != nil {
		t.Fatalf("N=%d: %v (manager log: %s)", n, err, logPath)
	}
	if err := b.settle(ctx, mgr, ns); err != nil {
		t.Fatalf("N=%d: %v", n, err)
	}
	recAfter, err := reconciles(ctx, mgr.MetricsURL())
	if err != nil {
		t.Fatal(err)
	}
	r.reconciles = map[string]int{}
	for k, v := range recAfter {
		r.reconciles[k] = v - recBefore[k]
	}
	r.stepRuns, r.pods, r.succeeded = obs.allStepRuns.Sub(obs.t0), obs.allPods.Sub(obs.t0), obs.terminal.Sub(obs.t0)
	r.executorsTook = obs.executorsDone.Sub(obs.executorsStart)
	r.fanOutAge, r.doneAge, r.progressGap, r.statusUpdates = obs.statusAges()
	r.progressAge = max(r.fanOutAge, r.doneAge)

	// The run as served, managedFields included.
	raw, err := b.getRaw(ctx, fmt.Sprintf("/apis/%s/namespaces/%s/workflowruns/%s", v1alpha1.GroupVersion, ns, runName))
	if err != nil {
		t.Fatal(err)
	}
	r.wfrBytes = len(raw)
	var served struct {
		Status json.RawMessage `json:"status"`
	}
	if err := json.Unmarshal(raw, &served); err == nil {
		r.wfrStatusBytes = len(served.Status)
	}

	if r.rss, err = peakRSS(mgr.PID()); err != nil {
		t.Fatal(err)
	}
	cpuAfter := cpuOf(procs)
	r.cpu, r.cpuFanOut = map[string]time.Duration{}, map[string]time.Duration{}
	for k := range procs {
		r.cpu[k] = cpuAfter[k] - cpuBefore[k]
		r.cpuFanOut[k] = obs.cpuAtPods[k] - cpuBefore[k]
	}
	r.phases = newPhaseCPU(cpuBefore, obs.cpuAtPods, obs.cpuAtSucceeded)
	r.profileChunks = obs.profileChunks
	if len(obs.podLag) > 0 {
		r.podLag50, r.podLagMax = obs.podLag[len(obs.podLag)/2], obs.podLag[len(obs.podLag)-1]
	}
	r.loadAfter = loadAvg()

	// Every write of the manager's is in the audit log once it has stopped and the marker,
	// written after that, is there.
	if err := mgr.Stop(); err != nil {
		t.Errorf("stopping the manager: %v", err)
	}
	stopped = true
	if err := b.k8s.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: auditMarker, Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		c, seen, err := countWrites(b.auditLog, ns, auditMarker)
		r.writes = c
		return seen, err
	})
	if err != nil {
		t.Fatalf("reading the audit log: %v", err)
	}
	for u, c := range r.writes.byUser {
		switch {
		case u == managerUser:
			r.manager += c
		case u == "system:serviceaccount:"+ns+":pnsflow-executor":
			r.executor += c
		default:
			r.others += c // the benchmark's own setup: the run's create
		}
	}

	// Without kube-controller-manager nothing garbage-collects: delete what this N made so
	// the next manager does not cache it.
	for _, space := range []string{ns, warmNS} {
		for _, obj := range []client.Object{&corev1.Pod{}, &v1alpha1.StepRun{}, &v1alpha1.WorkflowRun{}} {
			if err := b.k8s.DeleteAllOf(ctx, obj, client.InNamespace(space)); err != nil {
				t.Errorf("cleaning up %s: %v", space, err)
			}
		}
	}
	return r
}

// settle waits for the end of the run's life as far as the manager is concerned: its Finish
// event is written and both controllers are idle (nothing queued, no reconcile running). A
// requeue-after still waiting is not seen, but it would find the run terminal and write nothing.
func (b *bench) settle(ctx context.Context, mgr runningManager, ns string) error {
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		events := &eventsv1.EventList{}
		if err := b.k8s.List(ctx, events, client.InNamespace(ns)); err != nil {
			return false, err
		}
		finished := slices.ContainsFunc(events.Items, func(e eventsv1.Event) bool {
			return e.Regarding.Kind == "WorkflowRun" && e.Regarding.Name == runName && e.Action == "Finish"
		})
		if !finished {
			return false, nil
		}
		return idle(ctx, mgr.MetricsURL())
	})
	if err != nil {
		return fmt.Errorf("waiting for the manager to settle: %w", err)
	}
	return nil
}

func (b *bench) getRaw(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(b.admin.Host, "/")+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := b.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	return body, err
}

// run creates one WorkflowRun of n items in ns and drives it to its end: it waits for every
// StepRun and every Pod (metadata-only informers), then plays the executors, then waits for
// the run to end.
func (b *bench) run(ctx context.Context, mgr runningManager, ns string, n int, procs map[string]int) (*observation, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	obs := &observation{n: n}

	// Watchers first, synced, so nothing is missed.
	mc, err := metadata.NewForConfig(b.admin)
	if err != nil {
		return nil, err
	}
	selector := v1alpha1.LabelWorkflowRun + "=" + podspec.LabelValue(runName)
	factory := metadatainformer.NewFilteredSharedInformerFactory(mc, 0, ns, func(o *metav1.ListOptions) { o.LabelSelector = selector })
	stepRuns, pods := newSeenSet(n), newSeenSet(n)
	for _, w := range []struct {
		gvr schema.GroupVersionResource
		set *seenSet
	}{{v1alpha1.GroupVersion.WithResource("stepruns"), stepRuns}, {corev1.SchemeGroupVersion.WithResource("pods"), pods}} {
		inf := factory.ForResource(w.gvr).Informer()
		set := w.set
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: set.add}); err != nil {
			return nil, err
		}
	}
	factory.Start(ctx.Done())
	// Shutdown waits for the informers, which stop when ctx is cancelled: cancel first.
	defer func() {
		cancel()
		factory.Shutdown()
	}()
	for _, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return nil, fmt.Errorf("informers did not sync")
		}
	}
	w, err := b.k8s.Watch(ctx, &v1alpha1.WorkflowRunList{}, client.InNamespace(ns), client.MatchingFields{"metadata.name": runName})
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	terminal := make(chan struct{})
	var watchErr error
	go func() {
		defer close(terminal)
		watchErr = obs.follow(ctx, b.k8s, ns, w)
	}()

	waitFor := func(what string, ch <-chan struct{}) error {
		select {
		case <-ch:
			return nil
		case <-mgr.Exited():
			return fmt.Errorf("the manager exited while waiting for %s", what)
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		}
	}

	stopProfile := func() {}
	if dir := os.Getenv("BENCH_CPUPROFILE"); dir != "" && n > 1 {
		stopProfile = startCPUProfile(filepath.Join(dir, fmt.Sprintf("fanout-cpu-%d.pprof", n)))
	}
	var profiler *apiServerProfiler
	if b.s.profile[n] {
		profiler = startAPIServerProfile(b.http, b.admin, b.s.out, n)
		defer profiler.stop()
	}
	obs.t0 = time.Now()
	if err := b.k8s.Create(ctx, fanOut(runName, ns, n)); err != nil {
		return nil, fmt.Errorf("creating the WorkflowRun: %w", err)
	}
	if err := waitFor(fmt.Sprintf("%d StepRuns", n), stepRuns.all); err != nil {
		return nil, err
	}
	obs.allStepRuns = stepRuns.at
	if err := waitFor(fmt.Sprintf("%d Pods", n), pods.all); err != nil {
		return nil, err
	}
	obs.allPods = pods.at
	obs.cpuAtPods = cpuOf(procs)
	stopProfile()
	if profiler != nil {
		if obs.profileChunks, err = profiler.stop(); err != nil {
			return nil, fmt.Errorf("profiling kube-apiserver: %w", err)
		}
	}
	srSeen, podSeen := stepRuns.snapshot(), pods.snapshot()
	for name, at := range srSeen {
		if p, ok := podSeen[podspec.PodName(name)]; ok {
			obs.podLag = append(obs.podLag, p.Sub(at))
		}
	}
	slices.Sort(obs.podLag)
	for _, at := range srSeen {
		obs.stepRunSeen = append(obs.stepRunSeen, at)
	}
	slices.SortFunc(obs.stepRunSeen, time.Time.Compare)

	names := make([]string, 0, n)
	for name := range srSeen {
		names = append(names, name)
	}
	slices.Sort(names)
	obs.executorsStart = time.Now()
	if err := b.playExecutors(ctx, ns, names, obs); err != nil {
		return nil, err
	}
	obs.executorsDone = time.Now()
	if dir := os.Getenv("BENCH_HEAPPROFILE"); dir != "" && n > 1 {
		writeHeapProfile(filepath.Join(dir, fmt.Sprintf("heap-%d.pprof", n)))
	}
	if err := waitFor("the run to end", terminal); err != nil {
		return nil, err
	}
	obs.cpuAtSucceeded = cpuOf(procs)
	if watchErr != nil {
		return nil, watchErr
	}
	if obs.final.Status.Phase != v1alpha1.WorkflowRunSucceeded {
		return nil, fmt.Errorf("the run ended %s: %s", obs.final.Status.Phase, obs.final.Status.Message)
	}
	if got := obs.final.Status.Counts.Succeeded; int(got) != n {
		return nil, fmt.Errorf("the run succeeded with %d of %d items", got, n)
	}
	return obs, nil
}
