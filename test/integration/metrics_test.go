package integration

import (
	"maps"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executor"
	. "github.com/pnsflow/pnsflow/internal/testutil"
)

// gathered is the series of family name with the given labels in the manager's registry, nil
// when there is none yet.
func gathered(name string, want map[string]string) *dto.Metric {
	families, err := ctrlmetrics.Registry.Gather()
	ExpectWithOffset(2, err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if maps.Equal(labels, want) {
				return m
			}
		}
	}
	return nil
}

// finishedTotal reads pnsflow_stepruns_finished_total{phase, reason}.
func finishedTotal(phase v1alpha1.StepRunPhase, reason string) float64 {
	return gathered("pnsflow_stepruns_finished_total", map[string]string{"phase": string(phase), "reason": reason}).
		GetCounter().GetValue()
}

// reportsObserved is how many report latencies were observed.
func reportsObserved() uint64 {
	return gathered("pnsflow_executor_report_latency_seconds", map[string]string{}).GetHistogram().GetSampleCount()
}

var _ = Describe("The manager's metrics", func() {
	It("count a StepRun once when its report makes it terminal, and the stages it records", func() {
		ns := newNamespace(nil)
		// A reason no other case reports: runs of other cases that end meanwhile cannot move it.
		const reason = "CountedOnceByTheMetricsCase"
		before, reportsBefore := finishedTotal(v1alpha1.StepRunFailed, reason), reportsObserved()
		sr := create(MakeStepRun("counted", ns).Obj())
		pending(sr)
		setPodStatus(sr, corev1.PodRunning, running(), exited(0, "Completed"))
		rep := reporterFor(sr)
		exited := time.Now().Add(-20 * time.Millisecond)
		rep.Timings = func() v1alpha1.StepRunTimings {
			return v1alpha1.StepRunTimings{MainExited: v1alpha1.MicroTimeOf(exited)}
		}
		failure := &executor.Failure{Phase: v1alpha1.StepRunFailed, Reason: reason, Message: "reported by the test"}
		Expect(rep.ReportTerminal(ctx, executor.Decide(executor.Termination{ExitCode: 0}, executor.Collected{Failure: failure}, nil, 0))).To(Succeed())
		Eventually(func() float64 { return finishedTotal(v1alpha1.StepRunFailed, reason) }).Should(Equal(before + 1))
		Consistently(func() float64 { return finishedTotal(v1alpha1.StepRunFailed, reason) }, "500ms").
			Should(Equal(before+1), "counted once, however often the finished run is seen again")

		// Other cases' runs may end meanwhile and be observed too: at least this one was.
		Expect(reportsObserved()).To(BeNumerically(">=", reportsBefore+1), "the report stage (main exit → report) was observed")
	})
})
