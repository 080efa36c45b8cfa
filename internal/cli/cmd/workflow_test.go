package cmd_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/cli/cmd"
	"github.com/pnsflow/pnsflow/internal/cli/term"
	"github.com/pnsflow/pnsflow/internal/podspec"
	. "github.com/pnsflow/pnsflow/internal/testutil"
)

const diamondYAML = `apiVersion: workflows.pnsflow.dev/v1alpha1
kind: WorkflowRun
metadata:
  generateName: diamond-
spec:
  arguments:
    parameters: [{name: who, value: world}]
  steps:
  - name: a
    template:
      image: busybox
      command: [sh, -c, 'echo -n "hello {{workflow.parameters.who}}" > /pnsflow/outputs/x']
      outputs: {parameters: [{name: x, valueFrom: {path: /pnsflow/outputs/x}}]}
  - name: b
    dependsOn: [a]
    template: {image: busybox, command: [echo, '{{steps.a.outputs.parameters.x}} from b']}
  - name: c
    dependsOn: [a]
    template: {image: busybox, command: [echo, c]}
  - name: d
    dependsOn: [b, c]
    template: {image: busybox, command: [echo, d]}
`

// onlyRun returns the one WorkflowRun of ns, once it exists.
func onlyRun(t *testing.T, ns string) *v1alpha1.WorkflowRun {
	t.Helper()
	list := &v1alpha1.WorkflowRunList{}
	eventually(t).Eventually(func(g Gomega) {
		g.Expect(k8s.List(context.Background(), list, client.InNamespace(ns))).To(Succeed())
		g.Expect(list.Items).To(HaveLen(1))
	}).Should(Succeed())
	return &list.Items[0]
}

// playExecutors ends every StepRun of ns Succeeded as its executor would, serving each one's
// log, until the run has ended.
func playExecutors(t *testing.T, ns string, logs *fakeLogs, outputs map[string]map[string]string) *v1alpha1.WorkflowRun {
	t.Helper()
	wfr := &v1alpha1.WorkflowRun{}
	eventually(t).Eventually(func(g Gomega) {
		list := &v1alpha1.StepRunList{}
		g.Expect(k8s.List(context.Background(), list, client.InNamespace(ns))).To(Succeed())
		for _, sr := range list.Items {
			if sr.Status.Phase.IsTerminal() {
				continue
			}
			step := sr.Labels[v1alpha1.LabelStep]
			logs.text(sr.Name+"-pod", fmt.Sprintf("%s says hello\n%s is done\n", step, step))
			report(t, ns, sr.Name, v1alpha1.StepRunSucceeded, code(0), outputs[step])
		}
		g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: onlyRun(t, ns).Name}, wfr)).To(Succeed())
		g.Expect(wfr.Status.Phase).To(Equal(v1alpha1.WorkflowRunSucceeded))
	}).WithTimeout(60 * time.Second).Should(Succeed())
	return wfr
}

// lastTree is the final tree a watch printed: from the last header on.
func lastTree(out string) string {
	i := strings.LastIndex(out, "WorkflowRun ")
	if i < 0 {
		return out
	}
	return out[strings.LastIndex(out[:i], "\n")+1:]
}

func TestSubmitWatchFollowsADiamondToItsEndAndExitsZero(t *testing.T) {
	startManager(t)
	ns := newNamespace(t)
	file := filepath.Join(t.TempDir(), "diamond.yaml")
	if err := os.WriteFile(file, []byte(diamondYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := newFakeLogs()
	r := start(cmd.Options{Logs: logs}, "-n", ns, "submit", "-f", file, "-p", "who=pnsflow", "--watch")
	wfr := playExecutors(t, ns, logs, map[string]map[string]string{"a": {"x": "hello pnsflow"}})
	res := r.wait(t)
	if res.code != 0 {
		t.Fatalf("exit %d, stderr %q", res.code, res.stderr)
	}
	if !strings.HasPrefix(wfr.Name, "diamond-") || wfr.Spec.Arguments.Parameters[0].Value != "pnsflow" {
		t.Errorf("created %s with arguments %+v", wfr.Name, wfr.Spec.Arguments)
	}
	if first := strings.SplitN(res.stdout, "\n", 2)[0]; first != "workflowrun.workflows.pnsflow.dev/"+wfr.Name+" created" {
		t.Errorf("first line %q", first)
	}
	golden(t, "diamond-watch-final", normalize(lastTree(res.stdout)))

	got := pnsflow(t, cmd.Options{}, "-n", ns, "get", wfr.Name)
	golden(t, "diamond-get", normalize(got.stdout))

	got = pnsflow(t, cmd.Options{Logs: logs}, "-n", ns, "logs", wfr.Name)
	golden(t, "diamond-logs", normalize(got.stdout))

	b := &v1alpha1.StepRun{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: wfr.Name + "-b"}, b); err != nil || !strings.Contains(strings.Join(b.Spec.Command, " "), "hello pnsflow from b") {
		t.Errorf("b ran %v (%v): the argument and a's output should have reached it", b.Spec.Command, err)
	}
}

// bigRun is a 5000-item fan-out as its controller reports it after 40 items failed: the test
// writes the status and only the StepRuns the tree needs, as no manager runs here.
func bigRun(t *testing.T, ns, name string, steps ...string) *v1alpha1.WorkflowRun {
	t.Helper()
	prep, fan, join := "prepare", "fan", "join"
	if len(steps) == 3 {
		prep, fan, join = steps[0], steps[1], steps[2]
	}
	wfr := MakeWorkflowRun(name, ns).Steps(MakeStep(prep), MakeStep(fan).Sequence(5000).DependsOn(prep), MakeStep(join).DependsOn(fan)).
		OnExit(MakeStep("notify")).Obj()
	ctx := context.Background()
	if err := k8s.Create(ctx, wfr); err != nil {
		t.Fatal(err)
	}
	wfr.Status = v1alpha1.WorkflowRunStatus{StartedAt: &metav1.Time{Time: t0}, FinishedAt: &metav1.Time{Time: t0.Add(72 * time.Second)},
		Duration: "1m12s", Progress: "4961/5003",
		Counts: v1alpha1.StepCounts{Total: 5003, Succeeded: 4962, Failed: 30, Error: 10, Omitted: 1},
		Steps: []v1alpha1.StepSummary{
			{Name: prep, Phase: v1alpha1.StepSucceeded, StepRun: name + "-" + prep, Attempts: 1, ExitCode: code(0)},
			{Name: fan, Phase: v1alpha1.StepFailed, StepRun: name + "-" + fan + "-17", Message: "40 of 5000 items failed",
				Items: &v1alpha1.StepCounts{Total: 5000, Succeeded: 4960, Failed: 30, Error: 10, Retries: 2}},
			{Name: join, Phase: v1alpha1.StepOmitted, Message: "dependency " + fan + " did not succeed"},
			{Name: "notify", Phase: v1alpha1.StepSucceeded, StepRun: name + "-notify", Attempts: 1, ExitCode: code(0)},
		}}
	wfr.Status.SetPhase(v1alpha1.WorkflowRunFailed, v1alpha1.ReasonStepFailed, "step "+fan+" failed", wfr.Generation)
	if err := k8s.Status().Update(ctx, wfr); err != nil {
		t.Fatal(err)
	}
	child := func(step string, item, attempt int, phase v1alpha1.StepRunPhase, reason string, exit *int32, start, end int) {
		sr := MakeStepRun(name+"-"+step, ns).Obj()
		if item >= 0 {
			sr.Name += "-" + strconv.Itoa(item)
			sr.Labels = map[string]string{v1alpha1.LabelItem: strconv.Itoa(item)}
		}
		if attempt > 0 {
			sr.Name += fmt.Sprintf("-r%d", attempt)
		}
		if len(sr.Name) > podspec.MaxStepRunNameLength {
			sr.Name = sr.Name[:podspec.MaxStepRunNameLength]
		}
		if sr.Labels == nil {
			sr.Labels = map[string]string{}
		}
		sr.Labels[v1alpha1.LabelWorkflowRun] = podspec.LabelValue(name)
		sr.Labels[v1alpha1.LabelStep] = step
		sr.Labels[v1alpha1.LabelAttempt] = strconv.Itoa(attempt)
		sr.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(wfr, v1alpha1.GroupVersion.WithKind("WorkflowRun"))}
		if err := k8s.Create(ctx, sr); err != nil {
			t.Fatal(err)
		}
		report(t, ns, sr.Name, phase, exit, nil, func(st *v1alpha1.StepRunStatus) {
			st.StartedAt, st.FinishedAt = &metav1.Time{Time: t0.Add(time.Duration(start) * time.Second)}, &metav1.Time{Time: t0.Add(time.Duration(end) * time.Second)}
			st.Duration = v1alpha1.FormatDuration(time.Duration(end-start) * time.Second)
			st.SetPhase(phase, reason, "", 1, t0)
		})
	}
	child(prep, -1, 0, v1alpha1.StepRunSucceeded, v1alpha1.ReasonSucceeded, code(0), 0, 2)
	child(fan, 0, 0, v1alpha1.StepRunSucceeded, v1alpha1.ReasonSucceeded, code(0), 2, 9)
	child(fan, 17, 0, v1alpha1.StepRunFailed, v1alpha1.ReasonExitCode, code(1), 5, 8)
	child(fan, 4242, 0, v1alpha1.StepRunError, v1alpha1.ReasonPodEvicted, nil, 30, 31)
	child(fan, 4242, 1, v1alpha1.StepRunError, v1alpha1.ReasonPodEvicted, nil, 40, 41)
	child(fan, 4242, 2, v1alpha1.StepRunError, v1alpha1.ReasonPodEvicted, nil, 50, 51)
	child(fan, 4999, 0, v1alpha1.StepRunSucceeded, v1alpha1.ReasonSucceeded, code(0), 60, 70)
	child(fan, 99, 0, v1alpha1.StepRunFailed, v1alpha1.ReasonExitCode, code(2), 10, 12)
	child(fan, 99, 1, v1alpha1.StepRunSucceeded, v1alpha1.ReasonSucceeded, code(0), 13, 14) // a retry that succeeded
	child("notify", -1, 0, v1alpha1.StepRunSucceeded, v1alpha1.ReasonSucceeded, code(0), 71, 72)
	return wfr
}

func TestGetAndWatchShowA5000ItemFanOutAsCountsAndItsFailedItems(t *testing.T) {
	ns := newNamespace(t)
	bigRun(t, ns, "big")

	got := pnsflow(t, cmd.Options{}, "-n", ns, "get", "big")
	if got.code != 0 {
		t.Fatalf("get: exit %d %s", got.code, got.stderr)
	}
	golden(t, "fanout-5000-get", got.stdout)

	watched := pnsflow(t, cmd.Options{}, "-n", ns, "watch", "wfr/big")
	if watched.code != 2 {
		t.Errorf("watch of a Failed run exited %d, want 2", watched.code)
	}
	golden(t, "fanout-5000-watch", watched.stdout)

	narrow := pnsflow(t, cmd.Options{OutMode: &term.Mode{Redraw: true}, Size: func() (int, int) { return 40, 24 }}, "-n", ns, "get", "big")
	golden(t, "fanout-5000-get-narrow-40", narrow.stdout)
}

func TestGetKeepsLongNamesReadableOnAnyTerminal(t *testing.T) {
	ns := newNamespace(t)
	name := "nightly-etl-run-with-a-rather-long-generated-name-for-the-warehouse-x7k2p"
	bigRun(t, ns, name, "extract-everything-from-the-upstream-postgres-replica",
		"transform-the-customer-records-into-parquet-files-for-warehouse", "load-into-the-warehouse")
	for _, w := range []int{0, 80} {
		got := pnsflow(t, cmd.Options{OutMode: &term.Mode{Redraw: w > 0}, Size: func() (int, int) { return w, 24 }}, "-n", ns, "get", name)
		golden(t, fmt.Sprintf("long-names-get-%d", w), got.stdout)
		for _, l := range strings.Split(strings.TrimSpace(got.stdout), "\n") {
			if n := len([]rune(l)); w > 0 && n > w {
				t.Errorf("width %d: a line of %d columns: %q", w, n, l)
			}
		}
	}
}

// setStatus writes a WorkflowRun's status as its controller would.
func setStatus(t *testing.T, wfr *v1alpha1.WorkflowRun, phase v1alpha1.WorkflowRunPhase, steps ...v1alpha1.StepSummary) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		cur := &v1alpha1.WorkflowRun{}
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(wfr), cur); err != nil {
			return err
		}
		cur.Status.Steps = steps
		cur.Status.Counts = v1alpha1.StepCounts{Total: int32(len(steps))}
		for _, s := range steps {
			if s.Phase == v1alpha1.StepSucceeded {
				cur.Status.Counts.Succeeded++
			}
		}
		if cur.Status.StartedAt == nil {
			cur.Status.StartedAt = &metav1.Time{Time: t0}
		}
		if phase.IsTerminal() {
			cur.Status.FinishedAt = &metav1.Time{Time: t0.Add(5 * time.Second)}
		}
		cur.Status.SetPhase(phase, string(phase), "", cur.Generation)
		return k8s.Status().Update(context.Background(), cur)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestWatchPipedPrintsALinePerChange(t *testing.T) {
	ns := newNamespace(t)
	wfr := MakeWorkflowRun("live", ns).Steps(MakeStep("a"), MakeStep("b").DependsOn("a")).Obj()
	if err := k8s.Create(context.Background(), wfr); err != nil {
		t.Fatal(err)
	}
	setStatus(t, wfr, v1alpha1.WorkflowRunPending)
	r := start(cmd.Options{}, "-n", ns, "watch", "live")
	g := eventually(t)
	g.Eventually(r.stdout.String).Should(ContainSubstring("○ WorkflowRun " + ns + "/live  Pending"))

	setStatus(t, wfr, v1alpha1.WorkflowRunRunning, v1alpha1.StepSummary{Name: "a", Phase: v1alpha1.StepRunning, Attempts: 1})
	g.Eventually(r.stdout.String).Should(ContainSubstring("\n  a  ▶ Running\n"))
	setStatus(t, wfr, v1alpha1.WorkflowRunRunning, v1alpha1.StepSummary{Name: "a", Phase: v1alpha1.StepSucceeded, Attempts: 1, ExitCode: code(0)},
		v1alpha1.StepSummary{Name: "b", Phase: v1alpha1.StepRunning, Attempts: 1})
	g.Eventually(r.stdout.String).Should(ContainSubstring("\n  b  ▶ Running\n"))
	setStatus(t, wfr, v1alpha1.WorkflowRunSucceeded, v1alpha1.StepSummary{Name: "a", Phase: v1alpha1.StepSucceeded, Attempts: 1, ExitCode: code(0)},
		v1alpha1.StepSummary{Name: "b", Phase: v1alpha1.StepSucceeded, Attempts: 1, ExitCode: code(0)})
	res := r.wait(t)
	if res.code != 0 {
		t.Errorf("exit %d: %s", res.code, res.stderr)
	}
	if strings.Contains(res.stdout, "\x1b[") {
		t.Error("escape sequences in piped output")
	}
	for _, want := range []string{"live  ▶ Running  0/1 (0%)", "  a  ✔ Succeeded  exit 0", "live  ✔ Succeeded  2/2 (100%)  took 5s"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("output lacks the line %q:\n%s", want, res.stdout)
		}
	}
}

func TestWatchOnATerminalRedrawsInPlace(t *testing.T) {
	ns := newNamespace(t)
	wfr := MakeWorkflowRun("tty", ns).Steps(MakeStep("a")).Obj()
	if err := k8s.Create(context.Background(), wfr); err != nil {
		t.Fatal(err)
	}
	setStatus(t, wfr, v1alpha1.WorkflowRunRunning, v1alpha1.StepSummary{Name: "a", Phase: v1alpha1.StepRunning})
	r := start(cmd.Options{OutMode: &term.Mode{Redraw: true, Color: true}, Size: func() (int, int) { return 60, 20 }}, "-n", ns, "watch", "tty")
	eventually(t).Eventually(r.stdout.String).Should(ContainSubstring("Running"))
	setStatus(t, wfr, v1alpha1.WorkflowRunSucceeded, v1alpha1.StepSummary{Name: "a", Phase: v1alpha1.StepSucceeded, ExitCode: code(0)})
	res := r.wait(t)
	if res.code != 0 || !strings.Contains(res.stdout, "\r\x1b[J") || !strings.Contains(res.stdout, "\x1b[32m✔") {
		t.Errorf("exit %d; want a redraw (cursor up, clear) and colours:\n%q", res.code, res.stdout)
	}
}
