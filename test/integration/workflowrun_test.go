package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executor"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
	"github.com/pnsflow/pnsflow/internal/podspec"
	. "github.com/pnsflow/pnsflow/internal/testutil"
)

// The test plays the executor: it writes StepRuns' terminal status (phase, exit code, outputs)
// through the status subresource, as pns-executor would.

// executorBackoff rides out conflicts with the StepRun controller's own status writes.
var executorBackoff = wait.Backoff{Steps: 30, Duration: 10 * time.Millisecond, Factor: 1.5, Cap: 500 * time.Millisecond}

func createRun(wfr *v1alpha1.WorkflowRun) *v1alpha1.WorkflowRun {
	ExpectWithOffset(1, k8s.Create(ctx, wfr)).To(Succeed())
	return wfr
}

// runStatus fetches a WorkflowRun's status for Eventually.
func runStatus(wfr *v1alpha1.WorkflowRun) func(Gomega) v1alpha1.WorkflowRunStatus {
	return func(g Gomega) v1alpha1.WorkflowRunStatus {
		got := &v1alpha1.WorkflowRun{}
		g.Expect(k8s.Get(ctx, key(wfr.Namespace, wfr.Name), got)).To(Succeed())
		return got.Status
	}
}

// stepRunsOf lists a run's StepRuns, by name.
func stepRunsOf(wfr *v1alpha1.WorkflowRun) []v1alpha1.StepRun {
	list := &v1alpha1.StepRunList{}
	ExpectWithOffset(1, k8s.List(ctx, list, inNamespace(wfr.Namespace),
		matchingLabels(map[string]string{v1alpha1.LabelWorkflowRun: wfr.Name}))).To(Succeed())
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	return list.Items
}

func names(srs []v1alpha1.StepRun) []string {
	out := make([]string, len(srs))
	for i := range srs {
		out[i] = srs[i].Name
	}
	return out
}

// stepRun waits for the named StepRun to exist.
func stepRun(namespace, name string) *v1alpha1.StepRun {
	sr := &v1alpha1.StepRun{}
	EventuallyWithOffset(1, func() error { return k8s.Get(ctx, key(namespace, name), sr) }).Should(Succeed())
	return sr
}

// report ends a StepRun as its executor would: phase, exit code, times and outputs.
func report(namespace, name string, phase v1alpha1.StepRunPhase, exitCode int32, outputs map[string]string) {
	ExpectWithOffset(1, retry.RetryOnConflict(executorBackoff, func() error {
		sr := &v1alpha1.StepRun{}
		if err := k8s.Get(ctx, key(namespace, name), sr); err != nil {
			return err
		}
		now := time.Now()
		sr.Status.ExitCode = &exitCode
		sr.Status.SetTimes(&now, &now)
		reason := v1alpha1.ReasonSucceeded
		if phase == v1alpha1.StepRunFailed {
			reason = v1alpha1.ReasonExitCode
		}
		sr.Status.SetPhase(phase, reason, "", sr.Generation, time.Now())
		if len(outputs) > 0 {
			sr.Status.Outputs = &v1alpha1.StepRunOutputs{}
			for _, k := range slices.Sorted(mapsKeys(outputs)) {
				sr.Status.Outputs.Parameters = append(sr.Status.Outputs.Parameters, v1alpha1.OutputParameterValue{Name: k, Value: outputs[k]})
			}
		}
		return k8s.Status().Update(ctx, sr)
	})).To(Succeed())
}

// execute ends a StepRun through the executor's own code: main has written files (path →
// content) in its root filesystem and logged log; the executor's Collector, configured from the
// Pod as pns-executor is, reads them through that root as through main's held root, and its
// Reporter reports the outcome as the pnsflow-executor account.
func execute(sr *v1alpha1.StepRun, files map[string]string, log *string) {
	pod := pending(sr)
	conf, err := executorconfig.Decode(envOf(pod.Spec.InitContainers[0], executorconfig.ConfigEnv))
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	dir := GinkgoT().TempDir()
	for p, content := range files {
		f := filepath.Join(dir, filepath.FromSlash(p))
		ExpectWithOffset(1, os.MkdirAll(filepath.Dir(f), 0o755)).To(Succeed())
		ExpectWithOffset(1, os.WriteFile(f, []byte(content), 0o644)).To(Succeed())
	}
	root, err := os.Open(dir)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	defer root.Close()
	// The executor's mounts of main's volumes (the /tmp emptyDir among them) are, here, the same
	// directories of the stand-in root.
	for i, m := range conf.Mounts {
		conf.Mounts[i].ExecutorPath = filepath.Join(dir, filepath.FromSlash(m.MainPath))
		ExpectWithOffset(1, os.MkdirAll(conf.Mounts[i].ExecutorPath, 0o755)).To(Succeed())
	}
	collected := executor.Collector{Outputs: conf.Outputs, Mounts: conf.Mounts}.Collect(root)
	ExpectWithOffset(1, collected.Failure).To(BeNil())
	outcome := executor.Decide(executor.Termination{ExitCode: 0}, collected, log, time.Second)
	ExpectWithOffset(1, reporterFor(sr).ReportTerminal(ctx, outcome)).To(Succeed())
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func succeed(namespace, name string) { report(namespace, name, v1alpha1.StepRunSucceeded, 0, nil) }

func fail(namespace, name string) { report(namespace, name, v1alpha1.StepRunFailed, 1, nil) }

// finishAll plays every executor of the run once: each unfinished StepRun succeeds. Called
// from Eventually, it drives a fan-out to its end one round per poll.
func finishAll(wfr *v1alpha1.WorkflowRun) func(Gomega) v1alpha1.WorkflowRunPhase {
	return func(g Gomega) v1alpha1.WorkflowRunPhase {
		for _, sr := range stepRunsOf(wfr) {
			if !sr.Status.Phase.IsTerminal() {
				succeed(sr.Namespace, sr.Name)
			}
		}
		return runStatus(wfr)(g).Phase
	}
}

func setSpec(wfr *v1alpha1.WorkflowRun, mutate func(*v1alpha1.WorkflowRunSpec)) {
	ExpectWithOffset(1, updateSpec(wfr, mutate)).To(Succeed())
}

// updateSpec changes a run's spec as a user would, riding out conflicts with status writes.
func updateSpec(wfr *v1alpha1.WorkflowRun, mutate func(*v1alpha1.WorkflowRunSpec)) error {
	return retry.RetryOnConflict(executorBackoff, func() error {
		cur := &v1alpha1.WorkflowRun{}
		if err := k8s.Get(ctx, key(wfr.Namespace, wfr.Name), cur); err != nil {
			return err
		}
		mutate(&cur.Spec)
		return k8s.Update(ctx, cur)
	})
}

// activeWatch watches a namespace's StepRuns and records the most ever unfinished at once,
// checked at every event the API server sends, in its order.
type activeWatch struct {
	mu      sync.Mutex
	state   map[string]bool // name → finished
	max     int
	created int
	stop    func()
}

func watchActive(namespace string) *activeWatch {
	wc, err := client.NewWithWatch(cfg, client.Options{Scheme: k8s.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	wctx, cancel := context.WithCancel(ctx)
	w, err := wc.Watch(wctx, &v1alpha1.StepRunList{}, client.InNamespace(namespace))
	Expect(err).NotTo(HaveOccurred())
	aw := &activeWatch{state: map[string]bool{}}
	done := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(done)
		for ev := range w.ResultChan() {
			sr, ok := ev.Object.(*v1alpha1.StepRun)
			if !ok {
				continue
			}
			aw.mu.Lock()
			if _, seen := aw.state[sr.Name]; !seen && ev.Type == watch.Added {
				aw.created++
			}
			aw.state[sr.Name] = sr.Status.Phase.IsTerminal() || ev.Type == watch.Deleted
			active := 0
			for _, finished := range aw.state {
				if !finished {
					active++
				}
			}
			aw.max = max(aw.max, active)
			aw.mu.Unlock()
		}
	}()
	aw.stop = func() { w.Stop(); cancel(); <-done }
	DeferCleanup(aw.stop)
	return aw
}

func (aw *activeWatch) peak() (maxActive, created int) {
	aw.mu.Lock()
	defer aw.mu.Unlock()
	return aw.max, aw.created
}

var _ = Describe("WorkflowRun controller", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace(nil) })

	It("runs a diamond DAG, passing a parameter from A through B and C to D", func() {
		wfr := createRun(MakeWorkflowRun("diamond", ns).Param("greeting", "hello").Steps(
			MakeStep("a").Output("word", "/tmp/word").Args("{{workflow.parameters.greeting}}"),
			MakeStep("b").DependsOn("a").Output("word", "/tmp/word").Args("b got {{steps.a.outputs.parameters.word}}"),
			MakeStep("c").DependsOn("a").Output("word", "/tmp/word").Args("c got {{steps.a.outputs.parameters.word}}"),
			MakeStep("d").DependsOn("b", "c").Env("FROM_B", "{{steps.b.outputs.parameters.word}}").
				Args("{{steps.b.outputs.parameters.word}}/{{steps.c.outputs.parameters.word}}", "{{steps.c.exitCode}}"),
		).Obj())

		a := stepRun(ns, "diamond-a")
		Expect(a.Spec.Args).To(Equal([]string{"hello"}))
		Expect(a.Labels).To(HaveKeyWithValue(v1alpha1.LabelWorkflowRun, "diamond"))
		Expect(a.Labels).To(HaveKeyWithValue(v1alpha1.LabelStep, "a"))
		ref := metav1.GetControllerOf(a)
		Expect(ref).NotTo(BeNil())
		Expect(ref.Kind).To(Equal("WorkflowRun"))
		Expect(ref.BlockOwnerDeletion).To(HaveValue(BeTrue()))
		Eventually(runStatus(wfr)).Should(And(HaveField("Phase", v1alpha1.WorkflowRunRunning), HaveField("StartedAt", Not(BeNil()))))
		Consistently(func() []string { return names(stepRunsOf(wfr)) }, "500ms").Should(Equal([]string{"diamond-a"}))

		report(ns, "diamond-a", v1alpha1.StepRunSucceeded, 0, map[string]string{"word": "from-a"})
		Expect(stepRun(ns, "diamond-b").Spec.Args).To(Equal([]string{"b got from-a"}))
		Expect(stepRun(ns, "diamond-c").Spec.Args).To(Equal([]string{"c got from-a"}))
		report(ns, "diamond-b", v1alpha1.StepRunSucceeded, 0, map[string]string{"word": "B"})
		Consistently(func() []string { return names(stepRunsOf(wfr)) }, "500ms").Should(HaveLen(3), "D waits for C")
		report(ns, "diamond-c", v1alpha1.StepRunSucceeded, 0, map[string]string{"word": "C"})

		d := stepRun(ns, "diamond-d")
		Expect(d.Spec.Args).To(Equal([]string{"B/C", "0"}))
		Expect(d.Spec.Env).To(ContainElement(corev1.EnvVar{Name: "FROM_B", Value: "B"}))
		succeed(ns, "diamond-d")

		Eventually(runStatus(wfr)).Should(And(HaveField("Phase", v1alpha1.WorkflowRunSucceeded), HaveField("Progress", "4/4")))
		st := runStatus(wfr)(Default)
		Expect(st.FinishedAt).NotTo(BeNil())
		Expect(st.Duration).NotTo(BeEmpty())
		Expect(st.Counts).To(Equal(v1alpha1.StepCounts{Total: 4, Succeeded: 4}))
		Expect(st.Steps).To(HaveLen(4))
		Expect(st.Steps[3]).To(And(HaveField("Name", "d"), HaveField("Phase", v1alpha1.StepSucceeded),
			HaveField("StepRun", "diamond-d"), HaveField("Attempts", int32(1))))
		Expect(meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionSucceeded)).To(HaveField("Status", metav1.ConditionTrue))
	})

	It("fans 50 items out with never more than 5 unfinished StepRuns at once", func() {
		aw := watchActive(ns)
		items := make([]string, 50)
		for i := range items {
			items[i] = fmt.Sprintf("item-%02d", i)
		}
		wfr := createRun(MakeWorkflowRun("fan", ns).Parallelism(5).Steps(MakeStep("each").Items(items...).Args("{{item}}")).Obj())
		Eventually(finishAll(wfr), "60s").Should(Equal(v1alpha1.WorkflowRunSucceeded))

		Expect(stepRunsOf(wfr)).To(HaveLen(50))
		seventh := stepRun(ns, "fan-each-7")
		Expect(seventh.Labels).To(HaveKeyWithValue(v1alpha1.LabelItem, "7"))
		Expect(seventh.Spec.Args).To(Equal([]string{"item-07"}))
		maxActive, created := aw.peak()
		Expect(created).To(Equal(50))
		Expect(maxActive).To(Equal(5), "the budget is used, and never exceeded")
		st := runStatus(wfr)(Default)
		Expect(st.Progress).To(Equal("50/50"))
		Expect(st.Steps[0].Items).To(HaveValue(HaveField("Succeeded", int32(50))))
	})

	It("fans out over an earlier step's output with withParam", func() {
		wfr := createRun(MakeWorkflowRun("param", ns).Steps(
			MakeStep("list").Output("files", "/tmp/files"),
			MakeStep("each").DependsOn("list").Param("{{steps.list.outputs.parameters.files}}").Args("{{item.name}}"),
		).Obj())
		report(ns, stepRun(ns, "param-list").Name, v1alpha1.StepRunSucceeded, 0,
			map[string]string{"files": `[{"name":"x.txt"},{"name":"y.txt"},{"name":"z.txt"}]`})
		Eventually(func() []string { return names(stepRunsOf(wfr)) }).Should(Equal(
			[]string{"param-each-0", "param-each-1", "param-each-2", "param-list"}))
		Expect(stepRun(ns, "param-each-2").Spec.Args).To(Equal([]string{"z.txt"}))
		Eventually(finishAll(wfr)).Should(Equal(v1alpha1.WorkflowRunSucceeded))
		Expect(runStatus(wfr)(Default).Progress).To(Equal("4/4"))
	})

	It("stops starting anything after a failure with failFast", func() {
		wfr := createRun(MakeWorkflowRun("ff", ns).FailFast().Parallelism(2).Steps(MakeStep("fan").Sequence(6)).Obj())
		stepRun(ns, "ff-fan-0")
		stepRun(ns, "ff-fan-1")
		fail(ns, "ff-fan-0")
		Consistently(func() []string { return names(stepRunsOf(wfr)) }, "1s").Should(HaveLen(2))
		Expect(runStatus(wfr)(Default).Phase).To(Equal(v1alpha1.WorkflowRunRunning), "running StepRuns finish first")
		succeed(ns, "ff-fan-1")
		Eventually(runStatus(wfr)).Should(And(HaveField("Phase", v1alpha1.WorkflowRunFailed),
			HaveField("Reason", v1alpha1.ReasonStepFailed), HaveField("Message", ContainSubstring(`step "fan" failed: StepRun ff-fan-0 ended Failed`))))
		st := runStatus(wfr)(Default)
		Expect(st.Counts).To(And(HaveField("Failed", int32(1)), HaveField("Succeeded", int32(1)), HaveField("Omitted", int32(4))))
		Expect(st.Progress).To(Equal("2/6"))
		Expect(st.Steps[0]).To(And(HaveField("Phase", v1alpha1.StepFailed), HaveField("StepRun", "ff-fan-0"), HaveField("ExitCode", HaveValue(Equal(int32(1))))))
		Expect(stepRunsOf(wfr)).To(HaveLen(2))
	})

	It("retries a failed step and succeeds on the third attempt", func() {
		wfr := createRun(MakeWorkflowRun("flaky", ns).Steps(MakeStep("try").Retries(3, 200*time.Millisecond)).Obj())
		fail(ns, stepRun(ns, "flaky-try").Name)
		r1 := stepRun(ns, "flaky-try-r1")
		Expect(r1.Labels).To(HaveKeyWithValue(v1alpha1.LabelAttempt, "1"))
		fail(ns, r1.Name)
		succeed(ns, stepRun(ns, "flaky-try-r2").Name)
		Eventually(runStatus(wfr)).Should(HaveField("Phase", v1alpha1.WorkflowRunSucceeded))
		st := runStatus(wfr)(Default)
		Expect(st.Steps[0]).To(And(HaveField("Attempts", int32(3)), HaveField("StepRun", "flaky-try-r2")))
		Expect(st.Counts).To(And(HaveField("Retries", int32(2)), HaveField("Succeeded", int32(1))))
		Expect(names(stepRunsOf(wfr))).To(Equal([]string{"flaky-try", "flaky-try-r1", "flaky-try-r2"}))
	})

	It("fails a step whose retries are exhausted", func() {
		wfr := createRun(MakeWorkflowRun("doomed", ns).Steps(MakeStep("try").Retries(1, 0)).Obj())
		fail(ns, stepRun(ns, "doomed-try").Name)
		fail(ns, stepRun(ns, "doomed-try-r1").Name)
		Eventually(runStatus(wfr)).Should(And(HaveField("Phase", v1alpha1.WorkflowRunFailed),
			HaveField("Message", ContainSubstring("retry limit 1 reached"))))
		Consistently(func() []v1alpha1.StepRun { return stepRunsOf(wfr) }, "500ms").Should(HaveLen(2))
	})

	It("does not retry an exit code retryOn does not list", func() {
		wfr := createRun(MakeWorkflowRun("picky", ns).Steps(MakeStep("try").Retries(3, 0).RetryOnExitCodes(75)).Obj())
		fail(ns, stepRun(ns, "picky-try").Name)
		Eventually(runStatus(wfr)).Should(And(HaveField("Phase", v1alpha1.WorkflowRunFailed),
			HaveField("Message", ContainSubstring("Failed with exit code 1 is not retried by retryOn"))))
	})

	It("skips a step whose `when` is false and runs its dependents", func() {
		wfr := createRun(MakeWorkflowRun("cond", ns).Param("env", "dev").Steps(
			MakeStep("build"),
			MakeStep("deploy").DependsOn("build").When(`workflow.parameters.env == "prod" && steps.build.exitCode == 0`),
			MakeStep("report").DependsOn("deploy").Args("{{steps.deploy.phase}}"),
		).Obj())
		succeed(ns, stepRun(ns, "cond-build").Name)
		Expect(stepRun(ns, "cond-report").Spec.Args).To(Equal([]string{"Skipped"}))
		succeed(ns, "cond-report")
		Eventually(runStatus(wfr)).Should(HaveField("Phase", v1alpha1.WorkflowRunSucceeded))
		st := runStatus(wfr)(Default)
		Expect(st.Steps[1]).To(And(HaveField("Phase", v1alpha1.StepSkipped), HaveField("Message", ContainSubstring("is false"))))
		Expect(names(stepRunsOf(wfr))).To(Equal([]string{"cond-build", "cond-report"}))
	})

	It("runs onExit after a failure, with the run's phase", func() {
		wfr := createRun(MakeWorkflowRun("exit", ns).Steps(MakeStep("a"), MakeStep("b").DependsOn("a")).
			OnExit(MakeStep("notify").Args("run ended {{workflow.phase}}").When(`workflow.phase != "Succeeded"`)).Obj())
		fail(ns, stepRun(ns, "exit-a").Name)
		notify := stepRun(ns, "exit-notify")
		Expect(notify.Spec.Args).To(Equal([]string{"run ended Failed"}))
		Expect(runStatus(wfr)(Default).Phase).To(Equal(v1alpha1.WorkflowRunRunning), "the run ends after onExit")
		succeed(ns, notify.Name)
		Eventually(runStatus(wfr)).Should(And(HaveField("Phase", v1alpha1.WorkflowRunFailed), HaveField("Reason", v1alpha1.ReasonStepFailed)))
		st := runStatus(wfr)(Default)
		Expect(st.Steps).To(ContainElements(
			And(HaveField("Name", "b"), HaveField("Phase", v1alpha1.StepOmitted)),
			And(HaveField("Name", "notify"), HaveField("Phase", v1alpha1.StepSucceeded))))
		Expect(names(stepRunsOf(wfr))).To(Equal([]string{"exit-a", "exit-notify"}))
	})

	It("starts nothing while suspended, and goes on when resumed", func() {
		wfr := createRun(MakeWorkflowRun("susp", ns).Suspend(true).Steps(MakeStep("a"), MakeStep("b").DependsOn("a")).Obj())
		Eventually(runStatus(wfr)).Should(HaveField("Conditions", ContainElement(And(
			HaveField("Type", v1alpha1.ConditionSuspended), HaveField("Status", metav1.ConditionTrue)))))
		Consistently(func() []v1alpha1.StepRun { return stepRunsOf(wfr) }, "1s").Should(BeEmpty())
		Expect(runStatus(wfr)(Default).Phase).To(Equal(v1alpha1.WorkflowRunPending))

		setSpec(wfr, func(s *v1alpha1.WorkflowRunSpec) { s.Suspend = false })
		succeed(ns, stepRun(ns, "susp-a").Name)
		stepRun(ns, "susp-b")

		By("suspending mid-run: what runs finishes, nothing new starts")
		setSpec(wfr, func(s *v1alpha1.WorkflowRunSpec) { s.Suspend = true })
		Eventually(runStatus(wfr)).Should(HaveField("Conditions", ContainElement(And(
			HaveField("Type", v1alpha1.ConditionSuspended), HaveField("Status", metav1.ConditionTrue)))))
		succeed(ns, "susp-b")
		Eventually(runStatus(wfr)).Should(HaveField("Phase", v1alpha1.WorkflowRunSucceeded), "nothing was left to start")
	})

	It("cancels mid-run: Pods of unfinished StepRuns are deleted, every StepRun ends, nothing else starts", func() {
		wfr := createRun(MakeWorkflowRun("stop", ns).Parallelism(2).Steps(MakeStep("fan").Sequence(5)).OnExit(MakeStep("exit")).Obj())
		for _, name := range []string{"stop-fan-0", "stop-fan-1"} {
			sr := stepRun(ns, name)
			Eventually(statusOf(sr)).Should(HaveField("Phase", v1alpha1.StepRunPending), "its Pod exists")
		}
		succeed(ns, "stop-fan-0")
		stepRun(ns, "stop-fan-2")
		setSpec(wfr, func(s *v1alpha1.WorkflowRunSpec) { s.Cancel = true })

		Eventually(runStatus(wfr)).Should(And(HaveField("Phase", v1alpha1.WorkflowRunCancelled), HaveField("Reason", v1alpha1.ReasonCancelled)))
		srs := stepRunsOf(wfr)
		Expect(names(srs)).To(Equal([]string{"stop-fan-0", "stop-fan-1", "stop-fan-2"}), "onExit does not run after a cancel")
		for _, sr := range srs[1:] {
			Expect(sr.Status).To(And(HaveField("Phase", v1alpha1.StepRunError), HaveField("Reason", v1alpha1.ReasonPodDeleted)), sr.Name)
			Expect(k8s.Get(ctx, key(ns, podspec.PodName(sr.Name)), &corev1.Pod{})).To(Satisfy(apierrors.IsNotFound))
		}
		st := runStatus(wfr)(Default)
		Expect(st.Steps[0].Items).To(HaveValue(And(HaveField("Succeeded", int32(1)), HaveField("Error", int32(2)), HaveField("Omitted", int32(2)))))
		Expect(st.Steps[1]).To(And(HaveField("Name", "exit"), HaveField("Phase", v1alpha1.StepOmitted)))
		Expect(st.Progress).To(Equal("3/6"), "five items and onExit, three of them ended")

		By("refusing to undo the cancel")
		err := updateSpec(wfr, func(s *v1alpha1.WorkflowRunSpec) { s.Cancel = false })
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), describeErr(err))
		Expect(err.Error()).To(ContainSubstring("cancel cannot be undone"))
	})

	It("deletes a finished run after ttlSecondsAfterFinished", func() {
		wfr := createRun(MakeWorkflowRun("ttl", ns).TTL(1).Steps(MakeStep("a")).Obj())
		succeed(ns, stepRun(ns, "ttl-a").Name)
		Eventually(runStatus(wfr)).Should(HaveField("Phase", v1alpha1.WorkflowRunSucceeded))
		Eventually(func() error { return k8s.Get(ctx, key(ns, wfr.Name), &v1alpha1.WorkflowRun{}) }, "10s").Should(Satisfy(apierrors.IsNotFound))
	})

	It("never duplicates a StepRun when the manager restarts mid fan-out", func() {
		const n = 300
		wfr := createRun(MakeWorkflowRun("restart", ns).Steps(MakeStep("fan").Sequence(n)).Obj())
		Eventually(func() int { return len(stepRunsOf(wfr)) }).Should(BeNumerically(">", 0))
		stopManager()
		before := len(stepRunsOf(wfr))
		GinkgoWriter.Printf("StepRuns when the manager stopped: %d of %d\n", before, n)
		for _, sr := range stepRunsOf(wfr)[:min(before, 10)] {
			succeed(ns, sr.Name)
		}
		stopManager = startManager()

		Eventually(func() int { return len(stepRunsOf(wfr)) }, "30s").Should(Equal(n))
		Consistently(func() int { return len(stepRunsOf(wfr)) }, "1s").Should(Equal(n))
		seen := map[string]int{}
		for _, sr := range stepRunsOf(wfr) {
			seen[sr.Labels[v1alpha1.LabelItem]]++
			Expect(sr.Labels).To(HaveKeyWithValue(v1alpha1.LabelAttempt, "0"))
		}
		Expect(seen).To(HaveLen(n))
		Eventually(finishAll(wfr), "60s").Should(Equal(v1alpha1.WorkflowRunSucceeded))
		Expect(stepRunsOf(wfr)).To(HaveLen(n))
	})

	It("passes echo- and expr-written values through a diamond with one trailing newline trimmed", func() {
		wfr := createRun(MakeWorkflowRun("newline", ns).Steps(
			MakeStep("a").Command("sh", "-c").Args(`printf 3 > /tmp/n`).Output("num", "/tmp/n"),
			MakeStep("b").DependsOn("a").Command("sh", "-c").
				Args(`expr {{steps.a.outputs.parameters.num}} + 1 > /tmp/v`).Output("v", "/tmp/v"),
			MakeStep("c").DependsOn("a").Command("sh", "-c").
				Args(`expr {{steps.a.outputs.parameters.num}} \* 10 > /tmp/v`).Output("v", "/tmp/v"),
			MakeStep("d").DependsOn("b", "c").Command("sh", "-c").
				Args(`echo {{steps.b.outputs.parameters.v}}-{{steps.c.outputs.parameters.v}} > /tmp/v`).
				Env("B_LOG", "{{steps.b.outputs.result}}").Output("v", "/tmp/v"),
		).Obj())

		// Each main's files hold what its command writes: printf no newline, expr and echo one.
		execute(stepRun(ns, "newline-a"), map[string]string{"/tmp/n": "3"}, nil)
		b := stepRun(ns, "newline-b")
		Expect(b.Spec.Args).To(Equal([]string{"expr 3 + 1 > /tmp/v"}))
		execute(b, map[string]string{"/tmp/v": "4\n"}, new("b says 4\n"))
		c := stepRun(ns, "newline-c")
		Expect(c.Spec.Args).To(Equal([]string{`expr 3 \* 10 > /tmp/v`}))
		execute(c, map[string]string{"/tmp/v": "30\n"}, nil)

		Expect(statusOf(b)(Default).Outputs).To(And(
			HaveField("Parameters", Equal([]v1alpha1.OutputParameterValue{{Name: "v", Value: "4"}})),
			HaveField("Result", HaveValue(Equal("b says 4\n")))), "status keeps the log tail verbatim")
		d := stepRun(ns, "newline-d")
		Expect(d.Spec.Args).To(Equal([]string{"echo 4-30 > /tmp/v"}))
		Expect(d.Spec.Env).To(ContainElement(corev1.EnvVar{Name: "B_LOG", Value: "b says 4"}),
			"a templated result loses one trailing newline, like a parameter")
		execute(d, map[string]string{"/tmp/v": "4-30\n"}, nil)

		Eventually(runStatus(wfr)).Should(And(HaveField("Phase", v1alpha1.WorkflowRunSucceeded), HaveField("Progress", "4/4")))
		Expect(statusOf(d)(Default).Outputs.Parameters).To(Equal([]v1alpha1.OutputParameterValue{{Name: "v", Value: "4-30"}}))
	})

	DescribeTable("fails a run it cannot carry out at once, before starting anything",
		func(wfr *v1alpha1.WorkflowRun, message string) {
			wfr.Namespace = ns
			createRun(wfr)
			Eventually(runStatus(wfr)).Should(And(HaveField("Phase", v1alpha1.WorkflowRunError),
				HaveField("Reason", v1alpha1.ReasonInvalidSpec), HaveField("Message", ContainSubstring(message))))
			Consistently(func() []v1alpha1.StepRun { return stepRunsOf(wfr) }, "500ms").Should(BeEmpty())
		},
		Entry("a dependency cycle", MakeWorkflowRun("cycle", "").Steps(MakeStep("a").DependsOn("b"), MakeStep("b").DependsOn("a"), MakeStep("ok")).Obj(),
			"dependency cycle: a → b → a"),
		Entry("an unknown reference", MakeWorkflowRun("unknown", "").Steps(MakeStep("a").Args("{{steps.nope.outputs.result}}")).Obj(),
			`step "a": {{steps.nope.outputs.result}}: there is no step "nope"`),
		Entry("an output of a step that is not a dependency", MakeWorkflowRun("notdep", "").Steps(MakeStep("a"), MakeStep("b").Args("{{steps.a.exitCode}}")).Obj(),
			`step "a" is not a dependency of this step`),
		Entry("invalid CEL", MakeWorkflowRun("badcel", "").Steps(MakeStep("a").When("workflow.parameters.x ==")).Obj(),
			`step "a": invalid when "workflow.parameters.x ==": ERROR: <input>:1:25: Syntax error`),
		Entry("withItems with withSequence", MakeWorkflowRun("twofan", "").Steps(MakeStep("a").Items("x").Sequence(2)).Obj(),
			"mutually exclusive"),
	)
})

var _ = Describe("WorkflowRun validation by the API server", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace(nil) })

	DescribeTable("rejects invalid runs with a clear message",
		func(wfr *v1alpha1.WorkflowRun, message string) {
			wfr.Namespace = ns
			err := k8s.Create(ctx, wfr)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), describeErr(err))
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("no steps", MakeWorkflowRun("x", "").Obj(), "spec.steps"),
		Entry("duplicate step names", MakeWorkflowRun("x", "").Steps(MakeStep("a"), MakeStep("a")).Obj(), "Duplicate value"),
		Entry("dependsOn naming a missing step", MakeWorkflowRun("x", "").Steps(MakeStep("a").DependsOn("zz")).Obj(), "dependsOn must name steps of this WorkflowRun"),
		Entry("a step depending on itself", MakeWorkflowRun("x", "").Steps(MakeStep("a").DependsOn("a")).Obj(), "a step cannot depend on itself"),
		Entry("step name not a DNS label", MakeWorkflowRun("x", "").Steps(MakeStep("Not_OK")).Obj(), "spec.steps[0].name"),
		Entry("withParam with withSequence", MakeWorkflowRun("x", "").Param("l", "[]").Steps(MakeStep("a").Param("{{workflow.parameters.l}}").Sequence(2)).Obj(),
			"withItems, withParam and withSequence are mutually exclusive"),
		Entry("onExit with dependsOn", MakeWorkflowRun("x", "").Steps(MakeStep("a")).OnExit(MakeStep("e").DependsOn("a")).Obj(),
			"onExit runs after every step and takes no dependsOn"),
		Entry("onExit named like a step", MakeWorkflowRun("x", "").Steps(MakeStep("a")).OnExit(MakeStep("a")).Obj(),
			"onExit's name must differ from every step's name"),
		Entry("a bad backoff duration", func() *v1alpha1.WorkflowRun {
			w := MakeWorkflowRun("x", "").Steps(MakeStep("a").Retries(1, time.Second)).Obj()
			w.Spec.Steps[0].Retries.Backoff.Factor = new(int32(0))
			return w
		}(), "spec.steps[0].retries.backoff.factor"),
		Entry("retryOn a phase that is not a failure", func() *v1alpha1.WorkflowRun {
			w := MakeWorkflowRun("x", "").Steps(MakeStep("a").Retries(1, 0)).Obj()
			w.Spec.Steps[0].Retries.RetryOn = &v1alpha1.RetryOn{Phases: []v1alpha1.StepRunPhase{v1alpha1.StepRunSucceeded}}
			return w
		}(), "retryOn.phases may hold Failed and Error"),
		Entry("parallelism zero", MakeWorkflowRun("x", "").Parallelism(0).Steps(MakeStep("a")).Obj(), "spec.parallelism"),
		Entry("too many steps", func() *v1alpha1.WorkflowRun {
			w := MakeWorkflowRun("x", "")
			for i := range v1alpha1.MaxWorkflowSteps + 1 {
				w.Steps(MakeStep(fmt.Sprintf("s%d", i)))
			}
			return w.Obj()
		}(), "must have at most 100 items"),
		Entry("an invalid template", MakeWorkflowRun("x", "").Steps(MakeStep("a").Image("")).Obj(), "spec.steps[0].template.image"),
	)

	It("keeps steps immutable but lets suspend, parallelism and ttl change", func() {
		wfr := MakeWorkflowRun("frozen", ns).Suspend(true).Steps(MakeStep("a")).Obj()
		Expect(k8s.Create(ctx, wfr)).To(Succeed())
		err := updateSpec(wfr, func(s *v1alpha1.WorkflowRunSpec) { s.Steps[0].Template.Args = []string{"changed"} })
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), describeErr(err))
		Expect(err.Error()).To(ContainSubstring("steps, arguments and onExit are immutable"))

		setSpec(wfr, func(s *v1alpha1.WorkflowRunSpec) {
			s.Parallelism, s.TTLSecondsAfterFinished, s.Suspend = new(int32(3)), new(int32(60)), false
		})
	})

	It("accepts the sample", func() {
		wfr := &v1alpha1.WorkflowRun{}
		Expect(readSample("workflows_v1alpha1_workflowrun.yaml", wfr)).To(Succeed())
		wfr.Namespace = ns
		wfr.Spec.Suspend = true
		Expect(k8s.Create(ctx, wfr)).To(Succeed())
		Eventually(runStatus(wfr)).Should(HaveField("Phase", v1alpha1.WorkflowRunPending))
	})
})

// readSample decodes a file of config/samples, as kubectl would.
func readSample(name string, into any) error {
	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "samples", name))
	if err != nil {
		return err
	}
	return yaml.Unmarshal(raw, into)
}
