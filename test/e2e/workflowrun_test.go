//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	. "github.com/pnsflow/pnsflow/internal/testutil"
)

// wstep is a WorkflowRun step running the busybox test image's sh.
func wstep(name, script string) *StepWrapper {
	return MakeStep(name).Image(busyboxImage).PullPolicy(corev1.PullIfNotPresent).Command("sh", "-c", script)
}

func workflowTerminal(wf *v1alpha1.WorkflowRun, timeout time.Duration) *v1alpha1.WorkflowRun {
	got := &v1alpha1.WorkflowRun{}
	EventuallyWithOffset(1, func(g Gomega) {
		g.Expect(k8s.Get(ctx, key(wf), got)).To(Succeed())
		g.Expect(got.Status.Phase.IsTerminal()).To(BeTrue(), "phase %q progress %q", got.Status.Phase, got.Status.Progress)
	}).WithTimeout(timeout).Should(Succeed())
	return got
}

func stepRun(ns, name string) *v1alpha1.StepRun {
	sr := &v1alpha1.StepRun{}
	ExpectWithOffset(1, k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, sr)).To(Succeed())
	return sr
}

var _ = Describe("A WorkflowRun with real executors", func() {
	It("passes real outputs through a diamond DAG", func() {
		ns := newNamespace("diamond", nil)
		wf := MakeWorkflowRun("diamond", ns).Steps(
			wstep("a", `printf from-a > /pnsflow/outputs/x`).Output("x", "/pnsflow/outputs/x"),
			wstep("b", `printf "{{steps.a.outputs.parameters.x}}+b" > /pnsflow/outputs/y`).
				Output("y", "/pnsflow/outputs/y").DependsOn("a"),
			wstep("c", `printf "{{steps.a.outputs.parameters.x}}+c" > /pnsflow/outputs/z`).
				Output("z", "/pnsflow/outputs/z").DependsOn("a"),
			wstep("d", `printf "{{steps.b.outputs.parameters.y}},{{steps.c.outputs.parameters.z}}" > /pnsflow/outputs/w`).
				Output("w", "/pnsflow/outputs/w").DependsOn("b", "c"),
		).Obj()
		Expect(k8s.Create(ctx, wf)).To(Succeed())

		got := workflowTerminal(wf, 3*time.Minute)
		Expect(got.Status.Phase).To(Equal(v1alpha1.WorkflowRunSucceeded), "%+v", got.Status)
		Expect(got.Status.Progress).To(Equal("4/4"))

		a, b, c, d := stepRun(ns, "diamond-a"), stepRun(ns, "diamond-b"), stepRun(ns, "diamond-c"), stepRun(ns, "diamond-d")
		Expect(outputs(a)).To(Equal(map[string]string{"x": "from-a"}))
		Expect(outputs(b)).To(Equal(map[string]string{"y": "from-a+b"}))
		Expect(outputs(c)).To(Equal(map[string]string{"z": "from-a+c"}))
		Expect(outputs(d)).To(Equal(map[string]string{"w": "from-a+b,from-a+c"}))
		// The values came through the StepRuns' specs: each dependant was created with the
		// earlier step's real output substituted, after that step had ended.
		Expect(d.Spec.Command).To(ContainElement(ContainSubstring(`"from-a+b,from-a+c"`)))
		Expect(b.CreationTimestamp.Time).NotTo(BeTemporally("<", a.Status.FinishedAt.Time))
		Expect(d.CreationTimestamp.Time).NotTo(BeTemporally("<", b.Status.FinishedAt.Time))
		Expect(d.CreationTimestamp.Time).NotTo(BeTemporally("<", c.Status.FinishedAt.Time))
	})

	It("passes echo- and expr-written values through a diamond as Argo users write it: 4-30", func() {
		ns := newNamespace("newline", nil)
		// /tmp is an emptyDir so the outputs are always collected: these mains exit within
		// milliseconds, and a /tmp in the image filesystem may then be lost (Error/OutputsLost).
		tmp := func(s *StepWrapper) *StepWrapper {
			s.Template.Volumes = []corev1.Volume{{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			s.Template.VolumeMounts = []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}}
			return s
		}
		wf := MakeWorkflowRun("newline", ns).Steps(
			tmp(wstep("a", `printf 3 > /tmp/n`).Output("num", "/tmp/n")),
			tmp(wstep("b", `expr {{steps.a.outputs.parameters.num}} + 1 > /tmp/v`).Output("v", "/tmp/v").DependsOn("a")),
			tmp(wstep("c", `expr {{steps.a.outputs.parameters.num}} \* 10 > /tmp/v`).Output("v", "/tmp/v").DependsOn("a")),
			tmp(wstep("d", `echo {{steps.b.outputs.parameters.v}}-{{steps.c.outputs.parameters.v}} > /tmp/v`).
				Output("v", "/tmp/v").DependsOn("b", "c")),
			// result is the log tail: kept verbatim in status, one newline trimmed when templated.
			wstep("log", `echo 4`),
			wstep("e", `echo "[{{steps.log.outputs.result}}]"`).DependsOn("log"),
		).Obj()
		Expect(k8s.Create(ctx, wf)).To(Succeed())

		got := workflowTerminal(wf, 3*time.Minute)
		Expect(got.Status.Phase).To(Equal(v1alpha1.WorkflowRunSucceeded), "%+v", got.Status)

		b, c, d := stepRun(ns, "newline-b"), stepRun(ns, "newline-c"), stepRun(ns, "newline-d")
		Expect(b.Spec.Command).To(Equal([]string{"sh", "-c", "expr 3 + 1 > /tmp/v"}))
		Expect(outputs(b)).To(Equal(map[string]string{"v": "4"}), describeStatus(b))
		Expect(outputs(c)).To(Equal(map[string]string{"v": "30"}), describeStatus(c))
		Expect(d.Spec.Command).To(Equal([]string{"sh", "-c", "echo 4-30 > /tmp/v"}))
		Expect(outputs(d)).To(Equal(map[string]string{"v": "4-30"}), describeStatus(d))
		log, e := stepRun(ns, "newline-log"), stepRun(ns, "newline-e")
		Expect(result(log)).To(Equal("4\n"), "status.outputs.result is the log tail verbatim")
		Expect(e.Spec.Command).To(Equal([]string{"sh", "-c", `echo "[4]"`}))
		Expect(result(e)).To(Equal("[4]\n"))
	})

	It("fans out 20 items with parallelism 5: all Succeeded, never more than 5 unfinished at once", func() {
		ns := newNamespace("fanout", nil)
		const items, parallelism = 20, 5
		values := make([]string, items)
		for i := range values {
			values[i] = fmt.Sprintf("item-%02d", i)
		}
		wf := MakeWorkflowRun("fan", ns).Parallelism(parallelism).Steps(
			wstep("work", `sleep 1; printf "{{item}}" > /pnsflow/outputs/item`).
				Output("item", "/pnsflow/outputs/item").Items(values...),
		).Obj()

		// Watch every StepRun of the namespace from before the WorkflowRun exists. The watch
		// stream is ordered by resourceVersion, so a StepRun's terminal status (written before
		// the controller could start the next one) is always seen before that next create.
		list := &v1alpha1.StepRunList{}
		Expect(k8s.List(ctx, list, client.InNamespace(ns))).To(Succeed())
		wctx, stop := context.WithTimeout(ctx, 5*time.Minute)
		defer stop()
		w, err := k8s.Watch(wctx, &v1alpha1.StepRunList{}, client.InNamespace(ns),
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
		Expect(err).NotTo(HaveOccurred())
		defer w.Stop()

		Expect(k8s.Create(ctx, wf)).To(Succeed())

		unfinished, finished := map[string]bool{}, map[string]*v1alpha1.StepRun{}
		maxUnfinished := 0
		for len(finished) < items {
			var ev watch.Event
			Eventually(w.ResultChan()).WithTimeout(3*time.Minute).Should(Receive(&ev),
				"%d StepRuns finished, %d unfinished", len(finished), len(unfinished))
			Expect(ev.Type).NotTo(Equal(watch.Error), "%v", ev.Object)
			sr, ok := ev.Object.(*v1alpha1.StepRun)
			if !ok || ev.Type == watch.Bookmark {
				continue
			}
			if sr.Status.Phase.IsTerminal() || ev.Type == watch.Deleted {
				delete(unfinished, sr.Name)
				finished[sr.Name] = sr
			} else if finished[sr.Name] == nil {
				unfinished[sr.Name] = true
			}
			maxUnfinished = max(maxUnfinished, len(unfinished))
			Expect(len(unfinished)).To(BeNumerically("<=", parallelism), "unfinished now: %v", unfinished)
		}
		GinkgoWriter.Printf("most StepRuns unfinished at once: %d (parallelism %d)\n", maxUnfinished, parallelism)
		AddReportEntry("fan-out: most unfinished StepRuns at once", fmt.Sprintf("%d of parallelism %d", maxUnfinished, parallelism))
		Expect(maxUnfinished).To(BeNumerically(">=", 2), "the fan-out ran items in parallel")

		got := workflowTerminal(wf, 2*time.Minute)
		Expect(got.Status.Phase).To(Equal(v1alpha1.WorkflowRunSucceeded), "%+v", got.Status)
		Expect(got.Status.Progress).To(Equal(fmt.Sprintf("%d/%d", items, items)))
		Expect(finished).To(HaveLen(items))
		seen := map[string]bool{}
		for name, sr := range finished {
			Expect(sr.Status.Phase).To(Equal(v1alpha1.StepRunSucceeded), describeStatus(sr))
			v, ok := output(sr, "item")
			Expect(ok).To(BeTrue(), name)
			seen[v] = true
		}
		Expect(seen).To(HaveLen(items), "every item ran once")
		for _, v := range values {
			Expect(seen).To(HaveKey(v))
		}
	})
})
