package integration

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executor"
	"github.com/pnsflow/pnsflow/internal/podspec"
	. "github.com/pnsflow/pnsflow/internal/testutil"
)

// The executor's ClusterRole holds no verb without a reason: with all of it every call an
// executor makes is allowed, and without any one of its verbs some call is refused for that verb.

var _ = Describe("The executor's ClusterRole", func() {
	var role *rbacv1.ClusterRole
	BeforeEach(func() {
		var err error
		role, err = ReadClusterRole(filepath.Join("..", "..", "config", "rbac", "executor_role.yaml"))
		Expect(err).NotTo(HaveOccurred())
	})

	It("allows every call the executor makes", func() {
		refusals := &Refusals{}
		sr, c := executorUnder(role.Rules, refusals)
		// A bound, so that a call that cannot finish fails the spec instead of hanging it.
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		errs := executorCalls(cctx, c, sr)
		Expect(refusals.List()).To(BeEmpty())
		for _, call := range []string{"read the StepRun", "report Running", "watch the Pod", "read main's log"} {
			Expect(errs[call]).NotTo(HaveOccurred(), call)
		}
		// No kubelet serves the stream: the API server says so once it has authorized the attach.
		Expect(errs["attach to main's stdin"]).To(MatchError(ContainSubstring("does not have a host assigned")))
		Expect(statusOf(sr)(Default).Phase).To(Equal(v1alpha1.StepRunRunning))
	})

	It("has no verb the executor could do without", func() {
		for _, rule := range role.Rules {
			Expect(rule.APIGroups).To(HaveLen(1), "one API group per rule keeps this test's mapping simple")
			for _, resource := range rule.Resources {
				for _, verb := range rule.Verbs {
					By(fmt.Sprintf("refusing a call when %s on %s is missing", verb, resource))
					refusals := &Refusals{}
					sr, c := executorUnder(without(role.Rules, resource, verb), refusals)
					cctx, cancel := context.WithCancel(ctx)
					done := make(chan struct{})
					go func() {
						defer close(done)
						executorCalls(cctx, c, sr)
					}()
					Eventually(refusals.List).Should(ContainElement(Satisfy(refusedFor(resource, verb))))
					cancel()
					<-done
					Expect(refusals.List()).To(HaveEach(Satisfy(refusedFor(resource, verb))), "only calls that need it are refused")
					if resource == "pods/attach" {
						// The executor attaches by WebSocket first, and its handshake needs both verbs.
						Expect(refusals.List()).To(ContainElement(HaveSuffix("(WebSocket)")))
					}
				}
			}
		}
	})
})

// executorUnder makes a StepRun whose Pod runs main (as far as the Pod's status says), binds a
// ClusterRole of rules to an account of its namespace, and returns the StepRun and that
// account's API config, recorded by refusals, once RBAC's cache has the binding.
func executorUnder(rules []rbacv1.PolicyRule, refusals *Refusals) (*v1alpha1.StepRun, *rest.Config) {
	ns := newNamespace(nil)
	sr := create(MakeStepRun("calls", ns).Stdin("x").Obj())
	pending(sr)
	setPodStatus(sr, corev1.PodRunning, running(), running())

	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "executor-under-test-" + ns}, Rules: rules}
	Expect(k8s.Create(ctx, role)).To(Succeed())
	DeferCleanup(func() { _ = k8s.Delete(context.Background(), role) })
	Expect(k8s.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "executor-under-test", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "executor-under-test", Namespace: ns}},
	})).To(Succeed())
	user, groups := ServiceAccountUser(ns, "executor-under-test")
	first := rules[0]
	res, sub, _ := strings.Cut(first.Resources[0], "/")
	Eventually(allowed(user, groups, authorizationv1.ResourceAttributes{Namespace: ns, Verb: first.Verbs[0],
		Group: first.APIGroups[0], Resource: res, Subresource: sub})).Should(BeTrue(), "RBAC's cache has the binding")

	c := rest.CopyConfig(cfg)
	c.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	return sr, refusals.Record(c)
}

// executorCalls makes, concurrently and as c, every API call an executor makes (internal/executor),
// and returns each one's error once all have returned. The Pod watch retries a refusal until ctx
// ends. The test plays kubelet: main must be running when it starts, and it ends it.
func executorCalls(ctx context.Context, c *rest.Config, sr *v1alpha1.StepRun) map[string]error {
	ns, pod := sr.Namespace, podspec.PodName(sr.Name)
	reporter, err := executor.NewReporter(c, ns, sr.Name)
	Expect(err).NotTo(HaveOccurred())
	watcher, err := executor.NewPodWatcher(c, ns, pod)
	Expect(err).NotTo(HaveOccurred())
	logs, err := executor.NewPodLogs(c, ns, pod)
	Expect(err).NotTo(HaveOccurred())
	attacher, err := executor.NewPodAttacher(c, ns, pod)
	Expect(err).NotTo(HaveOccurred())
	calls := map[string]func() error{
		"read the StepRun": func() error { _, err := reporter.Get(ctx); return err },
		"report Running":   func() error { return reporter.ReportRunning(ctx, time.Now()) },
		"watch the Pod": func() error {
			wctx, stop := context.WithCancel(ctx)
			ran := make(chan struct{})
			go func() {
				defer close(ran)
				_ = watcher.Run(wctx)
			}()
			defer func() {
				stop()
				<-ran
			}()
			if _, err := watcher.MainStarted(wctx); err != nil {
				return err
			}
			// Playing kubelet: main exits, which the watch that followed the GET tells.
			setPodStatus(sr, corev1.PodRunning, running(), exited(0, "Completed"))
			_, err := watcher.MainTerminated(wctx)
			return err
		},
		"read main's log":        func() error { _, err := logs.Result(ctx); return err },
		"attach to main's stdin": func() error { return attacher.Attach(ctx, strings.NewReader("x")) },
	}
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs = map[string]error{}
	)
	for name, call := range calls {
		wg.Go(func() {
			defer GinkgoRecover()
			err := call()
			mu.Lock()
			errs[name] = err
			mu.Unlock()
		})
	}
	wg.Wait()
	return errs
}

// without returns rules less one verb on one resource.
func without(rules []rbacv1.PolicyRule, resource, verb string) []rbacv1.PolicyRule {
	var out []rbacv1.PolicyRule
	for _, r := range rules {
		for _, res := range r.Resources {
			one := *r.DeepCopy()
			one.Resources = []string{res}
			if res == resource {
				one.Verbs = slices.DeleteFunc(one.Verbs, func(v string) bool { return v == verb })
			}
			if len(one.Verbs) > 0 {
				out = append(out, one)
			}
		}
	}
	return out
}

// refusedFor tells whether a refusal recorded by Refusals ("METHOD /path?query[ (WebSocket)]")
// is of a request that needs verb on resource.
func refusedFor(resource, verb string) func(string) bool {
	return func(refusal string) bool {
		res, verbs := requestRule(refusal)
		return res == resource && slices.Contains(verbs, verb)
	}
}

// requestRule maps a namespaced request to its resource (with subresource) and the verbs RBAC
// checks for it.
func requestRule(refusal string) (resource string, verbs []string) {
	method, rest, _ := strings.Cut(refusal, " ")
	uri, how, _ := strings.Cut(rest, " ")
	u, err := url.Parse(uri)
	if err != nil {
		return "", nil
	}
	segs := strings.Split(strings.Trim(u.Path, "/"), "/")
	i := slices.Index(segs, "namespaces")
	if i < 0 || len(segs) < i+3 {
		return "", nil
	}
	parts := segs[i+2:] // resource, name, subresource
	resource = parts[0]
	if len(parts) == 3 {
		resource += "/" + parts[2]
	}
	switch {
	case how != "":
		// A WebSocket handshake is a GET, which the API server also checks as create.
		return resource, []string{"get", "create"}
	case method == "POST":
		return resource, []string{"create"}
	case method == "PATCH":
		return resource, []string{"patch"}
	case method == "PUT":
		return resource, []string{"update"}
	case method == "DELETE":
		return resource, []string{"delete"}
	case u.Query().Get("watch") == "true":
		return resource, []string{"watch"}
	case len(parts) == 1:
		return resource, []string{"list"}
	}
	return resource, []string{"get"}
}
