package cmd_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/cli/cmd"
	"github.com/pnsflow/pnsflow/internal/podspec"
	. "github.com/pnsflow/pnsflow/internal/testutil"
)

// fanRun is a running fan-out of n items with no StepRun yet: the test adds them.
func fanRun(t *testing.T, ns, name string, n int32) *v1alpha1.WorkflowRun {
	t.Helper()
	wfr := MakeWorkflowRun(name, ns).Steps(MakeStep("prep"), MakeStep("fan").Sequence(n).DependsOn("prep")).Obj()
	if err := k8s.Create(context.Background(), wfr); err != nil {
		t.Fatal(err)
	}
	setStatus(t, wfr, v1alpha1.WorkflowRunRunning)
	return wfr
}

// addChild creates one StepRun of wfr as its controller would.
func addChild(t *testing.T, wfr *v1alpha1.WorkflowRun, step string, item, attempt int) string {
	t.Helper()
	name := wfr.Name + "-" + step
	labels := map[string]string{v1alpha1.LabelWorkflowRun: podspec.LabelValue(wfr.Name), v1alpha1.LabelStep: step, v1alpha1.LabelAttempt: fmt.Sprint(attempt)}
	if item >= 0 {
		name += fmt.Sprintf("-%d", item)
		labels[v1alpha1.LabelItem] = fmt.Sprint(item)
	}
	if attempt > 0 {
		name += fmt.Sprintf("-r%d", attempt)
	}
	sr := MakeStepRun(name, wfr.Namespace).Obj()
	sr.Labels = labels
	sr.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(wfr, v1alpha1.GroupVersion.WithKind("WorkflowRun"))}
	if err := k8s.Create(context.Background(), sr); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestLogsOfAWorkflowRunPrefixEveryLineInDAGThenItemOrder(t *testing.T) {
	ns := newNamespace(t)
	wfr := fanRun(t, ns, "wf", 3)
	logs := newFakeLogs()
	// Created out of order: the output is still prep, fan[0], fan[1], fan[1]/r1, fan[2].
	for _, c := range []struct {
		step          string
		item, attempt int
		phase         v1alpha1.StepRunPhase
		log           string
	}{
		{"fan", 2, 0, v1alpha1.StepRunSucceeded, "item 2\n"},
		{"fan", 1, 1, v1alpha1.StepRunSucceeded, "item 1 again\n"},
		{"fan", 1, 0, v1alpha1.StepRunFailed, "item 1\noops\n"},
		{"prep", -1, 0, v1alpha1.StepRunSucceeded, "prepared\n"},
		{"fan", 0, 0, v1alpha1.StepRunSucceeded, ""}, // its Pod is gone: no log, the kept tail instead
	} {
		name := addChild(t, wfr, c.step, c.item, c.attempt)
		if c.log != "" {
			logs.text(name+"-pod", c.log)
		}
		tail := "kept tail\n"
		report(t, ns, name, c.phase, code(0), nil, func(st *v1alpha1.StepRunStatus) {
			st.Outputs = &v1alpha1.StepRunOutputs{Result: &tail}
		})
	}
	addChild(t, wfr, "fan", 3, 0) // not started: not printed, counted

	res := pnsflow(t, cmd.Options{Logs: logs}, "-n", ns, "logs", "wf")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	golden(t, "logs-fanout", res.stdout)
	for _, want := range []string{"fan[0]    │ pod wf-fan-0-pod is gone", "1 StepRuns of wf have not started yet"} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, res.stderr)
		}
	}

	one := pnsflow(t, cmd.Options{Logs: logs}, "-n", ns, "logs", "wf", "--step", "prep", "--tail", "1")
	if one.stdout != "prep │ prepared\n" {
		t.Errorf("--step prep --tail 1 printed %q", one.stdout)
	}
	bad := pnsflow(t, cmd.Options{Logs: logs}, "-n", ns, "logs", "wf", "--step", "nope")
	if bad.code != 1 || !strings.Contains(bad.stderr, "its steps: prep, fan") {
		t.Errorf("--step nope: exit %d %q", bad.code, bad.stderr)
	}
}

func TestLogsFollowPicksUpStepRunsAsTheyStartUntilTheRunEnds(t *testing.T) {
	ns := newNamespace(t)
	wfr := fanRun(t, ns, "live", 2)
	logs := newFakeLogs()
	r := start(cmd.Options{Logs: logs}, "-n", ns, "logs", "live", "-f")
	g := eventually(t)

	prep := addChild(t, wfr, "prep", -1, 0)
	w, opened := logs.stream(prep + "-pod")
	report(t, ns, prep, v1alpha1.StepRunRunning, nil, nil)
	<-opened
	fmt.Fprintln(w, "preparing")
	g.Eventually(r.stdout.String).Should(ContainSubstring("prep │ preparing\n"))

	// A second StepRun starting while the first still writes is followed at the same time.
	item := addChild(t, wfr, "fan", 0, 0)
	w2, opened2 := logs.stream(item + "-pod")
	report(t, ns, item, v1alpha1.StepRunRunning, nil, nil)
	<-opened2
	fmt.Fprintln(w2, "item zero")
	fmt.Fprintln(w, "prepared")
	g.Eventually(r.stdout.String).Should(And(ContainSubstring("fan[0] │ item zero\n"), ContainSubstring("prep   │ prepared\n")))
	_ = w.Close()
	_ = w2.Close()
	report(t, ns, prep, v1alpha1.StepRunSucceeded, code(0), nil)
	report(t, ns, item, v1alpha1.StepRunSucceeded, code(0), nil)

	// A StepRun that ends with the run, never seen running by the watch, is still read.
	last := addChild(t, wfr, "fan", 1, 0)
	logs.text(last+"-pod", "item one\n")
	report(t, ns, last, v1alpha1.StepRunSucceeded, code(0), nil)
	setStatus(t, wfr, v1alpha1.WorkflowRunSucceeded)

	res := r.wait(t)
	if res.code != 0 || !strings.Contains(res.stdout, "fan[1] │ item one\n") {
		t.Errorf("exit %d stdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
}

func TestLogsOfAStepRunWaitsForMainWithFollowAndRefusesWithout(t *testing.T) {
	ns := newNamespace(t)
	sr := MakeStepRun("solo", ns).Obj()
	if err := k8s.Create(context.Background(), sr); err != nil {
		t.Fatal(err)
	}
	logs := newFakeLogs()
	early := pnsflow(t, cmd.Options{Logs: logs}, "-n", ns, "logs", "solo")
	if early.code != 1 || !strings.Contains(early.stderr, "not started yet (Pending); -f waits for it") {
		t.Errorf("exit %d stderr %q", early.code, early.stderr)
	}

	w, opened := logs.stream("solo-pod")
	r := start(cmd.Options{Logs: logs}, "-n", ns, "logs", "sr/solo", "-f")
	report(t, ns, "solo", v1alpha1.StepRunRunning, nil, nil)
	<-opened
	fmt.Fprintln(w, "hello")
	_ = w.Close()
	res := r.wait(t)
	if res.code != 0 || res.stdout != "hello\n" {
		t.Errorf("exit %d stdout %q stderr %q", res.code, res.stdout, res.stderr)
	}
}

func TestLogsSaysWhenMainNeverStarted(t *testing.T) {
	ns := newNamespace(t)
	if err := k8s.Create(context.Background(), MakeStepRun("refused", ns).Obj()); err != nil {
		t.Fatal(err)
	}
	report(t, ns, "refused", v1alpha1.StepRunError, nil, nil, func(st *v1alpha1.StepRunStatus) {
		st.SetPhase(v1alpha1.StepRunError, v1alpha1.ReasonPodForbidden, "violates PodSecurity restricted", 1, t0)
		st.Conditions = append(st.Conditions, metav1.Condition{Type: v1alpha1.ConditionMainStarted, Status: metav1.ConditionFalse,
			Reason: v1alpha1.ReasonMainNeverStarted, LastTransitionTime: metav1.Now()})
	})
	res := pnsflow(t, cmd.Options{Logs: newFakeLogs()}, "-n", ns, "logs", "refused")
	if res.code != 1 || !strings.Contains(res.stderr, "main never started: Error/PodForbidden: violates PodSecurity restricted") {
		t.Errorf("exit %d stderr %q", res.code, res.stderr)
	}
}
