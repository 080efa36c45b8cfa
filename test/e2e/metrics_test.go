//go:build e2e

package e2e

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

// metricsScrape reads the manager's metrics endpoint as Prometheus would: over HTTPS, with a
// token the API server says may GET /metrics.
type metricsScrape struct {
	url   string
	token string
	http  *http.Client
}

func (m metricsScrape) get(token string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.url, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return m.http.Do(req)
}

func (m metricsScrape) families() map[string]*dto.MetricFamily {
	resp, err := m.get(m.token)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	Expect(resp.StatusCode).To(Equal(http.StatusOK))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	Expect(err).NotTo(HaveOccurred())
	return fams
}

// series finds the series of name whose labels include want; nil when there is none.
func series(fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.GetMetric() {
		for k, v := range want {
			found := false
			for _, l := range m.GetLabel() {
				found = found || (l.GetName() == k && l.GetValue() == v)
			}
			if !found {
				continue next
			}
		}
		return m
	}
	return nil
}

// counts are the figures the spec expects to move, read from one scrape.
type counts struct {
	succeeded, failed         float64
	mainStages, reportLatency uint64
}

func countsOf(fams map[string]*dto.MetricFamily) counts {
	return counts{
		succeeded:     series(fams, "pnsflow_stepruns_finished_total", map[string]string{"phase": "Succeeded", "reason": v1alpha1.ReasonSucceeded}).GetCounter().GetValue(),
		failed:        series(fams, "pnsflow_stepruns_finished_total", map[string]string{"phase": "Failed", "reason": v1alpha1.ReasonExitCode}).GetCounter().GetValue(),
		mainStages:    series(fams, "pnsflow_steprun_stage_duration_seconds", map[string]string{"stage": v1alpha1.StageMain}).GetHistogram().GetSampleCount(),
		reportLatency: series(fams, "pnsflow_executor_report_latency_seconds", nil).GetHistogram().GetSampleCount(),
	}
}

// scraper sets up a service account bound to pnsflow-metrics-reader and a port-forward to the
// manager's metrics Service.
func scraper(ns string) metricsScrape {
	Expect(k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "scraper", Namespace: ns}})).To(Succeed())
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "pnsflow-e2e-scraper-" + ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "pnsflow-metrics-reader"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "scraper", Namespace: ns}},
	}
	Expect(k8s.Create(ctx, binding)).To(Succeed())
	DeferCleanup(func() { _ = k8s.Delete(ctx, binding) })
	token, err := kubectl("-n", ns, "create", "token", "scraper")
	Expect(err).NotTo(HaveOccurred(), token)
	// The leader counts what finishes; the Service may pick the standby, whose counters never
	// move (Prometheus scrapes each replica).
	leader, err := managerLeader()
	Expect(err).NotTo(HaveOccurred())
	Expect(leader).NotTo(BeEmpty(), "no manager holds the lease")
	port := portForward(managerNamespace, "pod/"+leader, 8443)
	return metricsScrape{
		url:   "https://127.0.0.1:" + port + "/metrics",
		token: strings.TrimSpace(token),
		// The manager's certificate is self-signed (no --metrics-cert-dir in config/default).
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}},
	}
}

var _ = Describe("The manager's metrics endpoint", func() {
	It("answers only an authorized scraper, and counts each finished StepRun and its stages exactly once", func() {
		ns := newNamespace("metrics", nil)
		m := scraper(ns)

		By("refusing a caller without a token, and one whose token may not read metrics")
		resp, err := m.get("")
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusUnauthorized))
		Expect(k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "stranger", Namespace: ns}})).To(Succeed())
		stranger, err := kubectl("-n", ns, "create", "token", "stranger")
		Expect(err).NotTo(HaveOccurred(), stranger)
		resp, err = m.get(strings.TrimSpace(stranger))
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusForbidden))

		By("waiting until no StepRun of an earlier case can still finish and move the counters")
		Eventually(func(g Gomega) {
			var all v1alpha1.StepRunList
			g.Expect(k8s.List(ctx, &all)).To(Succeed())
			for _, sr := range all.Items {
				g.Expect(sr.Status.Phase.IsTerminal()).To(BeTrue(), "%s/%s is %s", sr.Namespace, sr.Name, sr.Status.Phase)
			}
		}, "3m", "1s").Should(Succeed())
		before := countsOf(m.families())

		By("running three StepRuns that succeed and one that exits 3")
		var runs []*v1alpha1.StepRun
		for i := range 3 {
			runs = append(runs, create(shell(step(fmt.Sprintf("ok-%d", i), ns), "true").Obj()))
		}
		runs = append(runs, create(shell(step("exit3", ns), "exit 3").Obj()))
		for _, sr := range runs {
			got := terminal(sr, runTimeout)
			Expect(got.Status.Phase).To(BeElementOf(v1alpha1.StepRunSucceeded, v1alpha1.StepRunFailed), describeStatus(got))
			stages := got.Status.Timings.Stages(got.CreationTimestamp.Time)
			Expect(stages).To(HaveLen(6), "every stage recorded: %+v", got.Status.Timings)
			GinkgoWriter.Printf("%s stages: %v\n", got.Name, stages)
		}

		Eventually(func() counts { return countsOf(m.families()) }, "30s", "500ms").Should(Equal(counts{
			succeeded: before.succeeded + 3, failed: before.failed + 1,
			mainStages: before.mainStages + 4, reportLatency: before.reportLatency + 4,
		}))
		Consistently(func() counts { return countsOf(m.families()) }, "3s", "1s").Should(Equal(counts{
			succeeded: before.succeeded + 3, failed: before.failed + 1,
			mainStages: before.mainStages + 4, reportLatency: before.reportLatency + 4,
		}), "each run counted once")

		fams := m.families()
		Expect(series(fams, "pnsflow_stepruns", map[string]string{"phase": "Succeeded"}).GetGauge().GetValue()).
			To(BeNumerically(">=", 3), "the phase gauge counts the runs that exist")
	})
})
