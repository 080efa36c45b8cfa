//go:build e2e

package e2e

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	. "github.com/pnsflow/pnsflow/internal/testutil"
)

var _ = Describe("A wide fan-out on a loaded node", Serial, func() {
	It("starts 50 items at once and ends Succeeded with every output", func() {
		ns := newNamespace("fan50", nil)
		const items = 50
		wf := MakeWorkflowRun("fan50", ns).Steps(
			wstep("work", `printf "{{item}}" > /pnsflow/outputs/item`).
				Output("item", "/pnsflow/outputs/item").Sequence(items),
		).Obj()
		Expect(k8s.Create(ctx, wf)).To(Succeed())

		got := workflowTerminal(wf, 6*time.Minute)
		Expect(got.Status.Phase).To(Equal(v1alpha1.WorkflowRunSucceeded), "%+v", got.Status)

		list := &v1alpha1.StepRunList{}
		Expect(k8s.List(ctx, list, client.InNamespace(ns))).To(Succeed())
		values, restarts, retried := map[string]bool{}, int32(0), 0
		for i := range list.Items {
			sr := &list.Items[i]
			if sr.Status.Phase != v1alpha1.StepRunSucceeded {
				// Only a never-started infrastructure failure may have been retried.
				Expect(sr.Status.NeverStartedInfrastructureFailure()).To(BeTrue(), describeStatus(sr))
				retried++
				continue
			}
			v, ok := output(sr, "item")
			Expect(ok).To(BeTrue(), describeStatus(sr))
			values[v] = true
			restarts += sr.Status.ExecutorRestarts
		}
		Expect(values).To(HaveLen(items), "one value per item")
		for i := range items {
			Expect(values).To(HaveKey(fmt.Sprint(i)))
		}
		took := got.Status.FinishedAt.Sub(got.CreationTimestamp.Time)
		AddReportEntry("50-item fan-out", fmt.Sprintf("Succeeded in %s; executor restarts %d; items retried after a never-started failure %d", took, restarts, retried))
	})
})
