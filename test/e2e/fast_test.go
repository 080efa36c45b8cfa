//go:build e2e

package e2e

import (
	"fmt"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

const (
	// fastRuns is how many runs of each fast main case 3 makes.
	fastRuns = 20
	// fastInFlight bounds the runs alive at once: creating 20 Pods together on a 2-core node
	// would measure the node's overload, not the executor.
	fastInFlight = 4
	// fastTmpRuns is how many runs the /tmp case makes: every one must keep its value.
	fastTmpRuns = 60
)

// runAll creates the StepRuns with at most inFlight unfinished at a time and returns each one in
// its terminal state, in the order given.
func runAll(runs []*v1alpha1.StepRun, inFlight int, timeout time.Duration) []*v1alpha1.StepRun {
	done := make([]*v1alpha1.StepRun, len(runs))
	errs := make([]error, len(runs))
	slots := make(chan struct{}, inFlight)
	var wg sync.WaitGroup
	for i, sr := range runs {
		slots <- struct{}{}
		if err := k8s.Create(ctx, sr); err != nil {
			<-slots
			errs[i] = fmt.Errorf("creating %s: %w", sr.Name, err)
			continue
		}
		wg.Go(func() {
			defer func() { <-slots }()
			done[i], _, errs[i] = awaitStepRun(ctx, key(sr), timeout, isTerminal)
		})
	}
	wg.Wait()
	for _, err := range errs {
		ExpectWithOffset(1, err).NotTo(HaveOccurred())
	}
	return done
}

var _ = Describe("fast mains", func() {
	many := func(ns, prefix string, build func(name string) *v1alpha1.StepRun) []*v1alpha1.StepRun {
		runs := make([]*v1alpha1.StepRun, fastRuns)
		for i := range runs {
			runs[i] = build(fmt.Sprintf("%s-%02d", prefix, i))
		}
		return runAll(runs, fastInFlight, 3*time.Minute)
	}

	It("`true` with no outputs: 20/20 Succeeded, exit 0", func() {
		ns := newNamespace("fast-true", nil)
		for _, sr := range many(ns, "true", func(name string) *v1alpha1.StepRun {
			return step(name, ns).Command("true").Obj()
		}) {
			Expect(sr.Status.Phase).To(Equal(v1alpha1.StepRunSucceeded), describeStatus(sr))
			Expect(sr.Status.ExitCode).To(HaveValue(BeZero()), describeStatus(sr))
		}
	})

	It("an output under /pnsflow/outputs, exiting at once: 20/20 Succeeded with the value", func() {
		ns := newNamespace("fast-outputs", nil)
		for _, sr := range many(ns, "outputs", func(name string) *v1alpha1.StepRun {
			return shell(step(name, ns), `printf fast > /pnsflow/outputs/v`).Output("v", "/pnsflow/outputs/v", nil).Obj()
		}) {
			Expect(sr.Status.Phase).To(Equal(v1alpha1.StepRunSucceeded), describeStatus(sr))
			Expect(outputs(sr)).To(Equal(map[string]string{"v": "fast"}), describeStatus(sr))
		}
	})

	It("an output in /tmp, exiting at once: 60/60 Succeeded with the value (main's /tmp is an emptyDir the executor mirrors)", func() {
		ns := newNamespace("fast-tmp", nil)
		runs := make([]*v1alpha1.StepRun, fastTmpRuns)
		for i := range runs {
			runs[i] = shell(step(fmt.Sprintf("tmp-%02d", i), ns), `printf fast > /tmp/v`).Output("v", "/tmp/v", nil).Obj()
		}
		caught := 0
		var wrong []string
		for _, sr := range runAll(runs, fastInFlight, 5*time.Minute) {
			if v, ok := output(sr, "v"); sr.Status.Phase == v1alpha1.StepRunSucceeded && ok && v == "fast" {
				caught++
			} else {
				wrong = append(wrong, describeStatus(sr))
			}
		}
		rate := fmt.Sprintf("%d/%d Succeeded with the value", caught, fastTmpRuns)
		AddReportEntry("/tmp output, main exits at once", rate)
		Expect(wrong).To(BeEmpty(), rate)
	})
})
