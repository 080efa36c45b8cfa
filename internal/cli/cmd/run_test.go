package cmd_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/cli/cmd"
)

// stepRun waits until the named StepRun exists and returns it.
func stepRun(t *testing.T, ns, name string) *v1alpha1.StepRun {
	t.Helper()
	sr := &v1alpha1.StepRun{}
	eventually(t).Eventually(func() error {
		return k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, sr)
	}).Should(Succeed())
	return sr
}

func TestRunPrintsMainsLogAsItIsWrittenAndExitsWithMainsCode(t *testing.T) {
	ns := newNamespace(t)
	logs := newFakeLogs()
	w, opened := logs.stream("hi-pod")
	r := start(cmd.Options{Logs: logs}, "-n", ns, "run", "hi", "--image", "busybox", "--output", "greeting=/tmp/g",
		"--env", "A=1", "--", "sh", "-c", "echo hi; exit 3")

	sr := stepRun(t, ns, "hi")
	if got := sr.Spec; got.Image != "busybox" || strings.Join(got.Command, " ") != "sh" || strings.Join(got.Args, "|") != "-c|echo hi; exit 3" ||
		got.Env[0].Name != "A" || got.Outputs.Parameters[0].Name != "greeting" {
		t.Fatalf("spec %+v", got)
	}
	report(t, ns, "hi", v1alpha1.StepRunRunning, nil, nil)
	<-opened // the log is followed once main runs, before the run ends
	if _, err := fmt.Fprint(w, "hi\n"); err != nil {
		t.Fatal(err)
	}
	eventually(t).Eventually(r.stdout.String).Should(Equal("hi\n"), "a line appears while main still runs")
	_ = w.Close()
	report(t, ns, "hi", v1alpha1.StepRunFailed, code(3), map[string]string{"greeting": "world"})

	res := r.wait(t)
	if res.code != 3 || res.stdout != "hi\n" {
		t.Errorf("exit %d stdout %q; want 3 and main's log alone", res.code, res.stdout)
	}
	if !strings.Contains(res.stderr, "greeting = world") {
		t.Errorf("stderr %q lacks the output parameter", res.stderr)
	}
	if strings.Contains(res.stderr, "error") {
		t.Errorf("main's own non-zero exit needs no error message: %q", res.stderr)
	}
}

func TestRunExitCodeFollowsHowTheRunEnded(t *testing.T) {
	cases := []struct {
		name   string
		phase  v1alpha1.StepRunPhase
		exit   *int32
		reason string
		want   int
		stderr string
	}{
		{"succeeded exits 0", v1alpha1.StepRunSucceeded, code(0), v1alpha1.ReasonSucceeded, 0, ""},
		{"main's exit 42 exits 42", v1alpha1.StepRunFailed, code(42), v1alpha1.ReasonExitCode, 42, ""},
		{"a deadline exits 124", v1alpha1.StepRunFailed, code(137), v1alpha1.ReasonDeadlineExceeded, 124, "Failed/DeadlineExceeded"},
		{"an Error exits 125 with its reason", v1alpha1.StepRunError, nil, v1alpha1.ReasonPodEvicted, 125, "Error/PodEvicted: the node ran out of memory"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNamespace(t)
			name := fmt.Sprintf("r%d", i)
			logs := newFakeLogs()
			logs.text(name+"-pod", "done\n")
			r := start(cmd.Options{Logs: logs}, "-n", ns, "run", name, "--image", "busybox", "--", "true")
			stepRun(t, ns, name)
			// Straight to the end, as for a main too quick to be seen running.
			report(t, ns, name, tc.phase, tc.exit, nil, func(st *v1alpha1.StepRunStatus) {
				st.SetPhase(tc.phase, tc.reason, map[bool]string{true: "the node ran out of memory"}[tc.phase == v1alpha1.StepRunError], 1, t0)
			})
			res := r.wait(t)
			if res.code != tc.want {
				t.Errorf("exit %d, want %d (stderr %q)", res.code, tc.want, res.stderr)
			}
			if res.stdout != "done\n" {
				t.Errorf("stdout %q: a run that ended before it was seen running still prints its log", res.stdout)
			}
			if tc.stderr != "" && !strings.Contains(res.stderr, tc.stderr) {
				t.Errorf("stderr %q lacks %q", res.stderr, tc.stderr)
			}
		})
	}
}

func TestRunRefusesStdinOverTheCapBeforeCreatingAnything(t *testing.T) {
	ns := newNamespace(t)
	big := strings.Repeat("x", v1alpha1.MaxStdinBytes+1)
	res := pnsflow(t, cmd.Options{In: strings.NewReader(big)}, "-n", ns, "run", "big", "-i", "--image", "busybox", "--", "cat")
	if res.code != 125 || !strings.Contains(res.stderr, "at most 65536") {
		t.Errorf("exit %d stderr %q; want 125 and the cap", res.code, res.stderr)
	}
	list := &v1alpha1.StepRunList{}
	if err := k8s.List(context.Background(), list, client.InNamespace(ns)); err != nil || len(list.Items) != 0 {
		t.Errorf("a StepRun was created (%d, %v)", len(list.Items), err)
	}
}

func TestRunSendsStandardInputAsSpecStdin(t *testing.T) {
	ns := newNamespace(t)
	r := start(cmd.Options{In: strings.NewReader("line 1\nline 2\n"), Logs: newFakeLogs()}, "-n", ns, "run", "cat", "-i", "--rm", "--image", "busybox", "--", "cat")
	sr := stepRun(t, ns, "cat")
	if sr.Spec.Stdin == nil || *sr.Spec.Stdin != "line 1\nline 2\n" {
		t.Fatalf("spec.stdin = %v", sr.Spec.Stdin)
	}
	report(t, ns, "cat", v1alpha1.StepRunSucceeded, code(0), nil)
	res := r.wait(t)
	if res.code != 0 {
		t.Errorf("exit %d: %s", res.code, res.stderr)
	}
	if !strings.Contains(res.stderr, "pod cat-pod is gone") {
		t.Errorf("a log that cannot be read should say why: %q", res.stderr)
	}
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(sr), &v1alpha1.StepRun{}); !isNotFound(err) {
		t.Errorf("--rm left the StepRun: %v", err)
	}
}

func TestRunWithAPodGoneShowsTheLogTailTheExecutorKept(t *testing.T) {
	ns := newNamespace(t)
	r := start(cmd.Options{Logs: newFakeLogs()}, "-n", ns, "run", "gone", "--image", "busybox", "--", "true")
	stepRun(t, ns, "gone")
	tail := "last words\n"
	report(t, ns, "gone", v1alpha1.StepRunSucceeded, code(0), nil, func(st *v1alpha1.StepRunStatus) {
		st.Outputs = &v1alpha1.StepRunOutputs{Result: &tail}
	})
	res := r.wait(t)
	if res.stdout != "last words\n" || !strings.Contains(res.stderr, "pod gone-pod is gone") || !strings.Contains(res.stderr, "status.outputs.result") {
		t.Errorf("stdout %q stderr %q", res.stdout, res.stderr)
	}
}

func TestRunInterruptedAsksAndDeletesTheRunWhenTold(t *testing.T) {
	cases := []struct {
		name        string
		answer      bool
		rm          bool
		wantDeleted bool
		stderr      string
	}{
		{"yes deletes it", true, false, true, "deleted"},
		{"no leaves it and says how to delete it", false, false, false, "kubectl delete steprun"},
		{"--rm deletes it without asking", false, true, true, "deleted"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNamespace(t)
			name := fmt.Sprintf("ctrlc%d", i)
			sigs := make(chan os.Signal, 1)
			asked := false
			args := []string{"-n", ns, "run", name, "--image", "busybox"}
			if tc.rm {
				args = append(args, "--rm")
			}
			args = append(args, "--", "sleep", "1000")
			r := start(cmd.Options{Logs: newFakeLogs(), Interrupts: sigs, Confirm: func(q string) (bool, error) {
				asked = true
				return tc.answer, nil
			}}, args...)
			sr := stepRun(t, ns, name)
			sigs <- os.Interrupt
			res := r.wait(t)
			if res.code != 130 || !strings.Contains(res.stderr, tc.stderr) {
				t.Errorf("exit %d stderr %q; want 130 and %q", res.code, res.stderr, tc.stderr)
			}
			if asked == tc.rm {
				t.Errorf("asked = %v with --rm = %v", asked, tc.rm)
			}
			err := k8s.Get(context.Background(), client.ObjectKeyFromObject(sr), &v1alpha1.StepRun{})
			if isNotFound(err) != tc.wantDeleted {
				t.Errorf("deleted = %v, want %v", isNotFound(err), tc.wantDeleted)
			}
		})
	}
}

func TestRunRefusesANameThatIsTaken(t *testing.T) {
	ns := newNamespace(t)
	taken := &v1alpha1.StepRun{ObjectMeta: metav1.ObjectMeta{Name: "taken", Namespace: ns}, Spec: v1alpha1.StepRunSpec{Image: "busybox"}}
	if err := k8s.Create(context.Background(), taken); err != nil {
		t.Fatal(err)
	}
	res := pnsflow(t, cmd.Options{}, "-n", ns, "run", "taken", "--image", "busybox", "--", "true")
	if res.code != 125 || !strings.Contains(res.stderr, "already exists") {
		t.Errorf("exit %d stderr %q", res.code, res.stderr)
	}
}

func TestRunFlagMistakesExit125(t *testing.T) {
	cases := map[string][]string{
		"no image":          {"run", "x", "--", "true"},
		"an unknown flag":   {"run", "x", "--image", "busybox", "--nope"},
		"two names":         {"run", "x", "y", "--image", "busybox"},
		"a relative output": {"run", "x", "--image", "busybox", "--output", "a=b", "--", "true"},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			if res := pnsflow(t, cmd.Options{}, args...); res.code != 125 || !strings.Contains(res.stderr, "error:") {
				t.Errorf("exit %d stderr %q; want 125 and an error", res.code, res.stderr)
			}
		})
	}
}

func TestRunReadsTheWholeLogAtTheEndWhenItCouldNotFollowIt(t *testing.T) {
	ns := newNamespace(t)
	logs := newFakeLogs() // nothing to serve while main runs: opening the stream fails
	r := start(cmd.Options{Logs: logs}, "-n", ns, "run", "late", "--image", "busybox", "--", "true")
	stepRun(t, ns, "late")
	report(t, ns, "late", v1alpha1.StepRunRunning, nil, nil)
	eventually(t).Eventually(func() bool { return logs.opens() > 0 }).Should(BeTrue())
	logs.text("late-pod", "all of it\n")
	report(t, ns, "late", v1alpha1.StepRunSucceeded, code(0), nil)
	res := r.wait(t)
	if res.code != 0 || res.stdout != "all of it\n" {
		t.Errorf("exit %d stdout %q stderr %q", res.code, res.stdout, res.stderr)
	}
}
