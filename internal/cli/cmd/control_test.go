package cmd_test

import (
	"context"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/cli/cmd"
	"github.com/pnsflow/pnsflow/internal/cli/manifest"
	. "github.com/pnsflow/pnsflow/internal/testutil"
)

func get(t *testing.T, ns, name string) *v1alpha1.WorkflowRun {
	t.Helper()
	wfr := &v1alpha1.WorkflowRun{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, wfr); err != nil {
		t.Fatal(err)
	}
	return wfr
}

func TestSuspendResumeAndCancelPatchTheRunsSpec(t *testing.T) {
	ns := newNamespace(t)
	fanRun(t, ns, "ctl", 3)

	steps := []struct {
		args          []string
		wantOut       string
		suspend, canc bool
	}{
		{[]string{"suspend", "ctl"}, "ctl suspended", true, false},
		{[]string{"suspend", "ctl"}, "ctl already suspended", true, false},
		{[]string{"resume", "ctl"}, "ctl resumed", false, false},
		{[]string{"resume", "ctl"}, "ctl not suspended", false, false},
		{[]string{"cancel", "ctl"}, "ctl cancel requested", false, true},
		{[]string{"cancel", "ctl"}, "ctl already cancelled", false, true},
	}
	for _, s := range steps {
		res := pnsflow(t, cmd.Options{}, append([]string{"-n", ns}, s.args...)...)
		if res.code != 0 || !strings.Contains(res.stdout, s.wantOut) {
			t.Errorf("%v: exit %d stdout %q stderr %q; want %q", s.args, res.code, res.stdout, res.stderr, s.wantOut)
		}
		if got := get(t, ns, "ctl").Spec; got.Suspend != s.suspend || got.Cancel != s.canc {
			t.Errorf("after %v: suspend %v cancel %v", s.args, got.Suspend, got.Cancel)
		}
	}
	if res := pnsflow(t, cmd.Options{}, "-n", ns, "suspend", "ctl"); res.code != 1 || !strings.Contains(res.stderr, "is cancelled") {
		t.Errorf("suspending a cancelled run: exit %d %q", res.code, res.stderr)
	}
}

func TestControlRefusesWhatCannotBeDone(t *testing.T) {
	ns := newNamespace(t)
	bigRun(t, ns, "ended")
	if err := k8s.Create(context.Background(), MakeStepRun("single", ns).Obj()); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		args []string
		want string
	}{
		"a finished run":    {[]string{"cancel", "ended"}, "already ended Failed"},
		"a StepRun":         {[]string{"suspend", "single"}, "is a StepRun, which has no suspend"},
		"a run that is not": {[]string{"resume", "nope"}, "named nope in namespace"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			res := pnsflow(t, cmd.Options{}, append([]string{"-n", ns}, tc.args...)...)
			if res.code != 1 || !strings.Contains(res.stderr, tc.want) {
				t.Errorf("exit %d stderr %q; want 1 and %q", res.code, res.stderr, tc.want)
			}
		})
	}
}

func TestResubmitMakesANewRunWithTheSameDefinition(t *testing.T) {
	ns := newNamespace(t)
	old := MakeWorkflowRun("nightly", ns).Steps(MakeStep("a")).Param("day", "mon").Cancel().Obj()
	if err := k8s.Create(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	res := pnsflow(t, cmd.Options{}, "-n", ns, "resubmit", "nightly", "-p", "day=tue")
	if res.code != 0 || !strings.Contains(res.stdout, "(from nightly)") {
		t.Fatalf("exit %d stdout %q stderr %q", res.code, res.stdout, res.stderr)
	}
	list := &v1alpha1.WorkflowRunList{}
	if err := k8s.List(context.Background(), list, client.InNamespace(ns)); err != nil || len(list.Items) != 2 {
		t.Fatalf("%d runs (%v)", len(list.Items), err)
	}
	for _, w := range list.Items {
		if w.Name == "nightly" {
			continue
		}
		if !strings.HasPrefix(w.Name, "nightly-") || w.Spec.Cancel || w.Annotations[manifest.AnnotationResubmittedFrom] != "nightly" ||
			w.Spec.Arguments.Parameters[0].Value != "tue" {
			t.Errorf("resubmitted %s: cancel %v annotations %v arguments %+v", w.Name, w.Spec.Cancel, w.Annotations, w.Spec.Arguments)
		}
	}
}

func TestGetPrintsTheObjectAsKubectlDoes(t *testing.T) {
	ns := newNamespace(t)
	if err := k8s.Create(context.Background(), MakeStepRun("hello", ns).Obj()); err != nil {
		t.Fatal(err)
	}
	report(t, ns, "hello", v1alpha1.StepRunSucceeded, code(0), map[string]string{"greeting": "world"})
	cases := map[string][]string{
		"yaml": {"apiVersion: workflows.pnsflow.dev/v1alpha1", "kind: StepRun", "greeting"},
		"json": {`"apiVersion": "workflows.pnsflow.dev/v1alpha1"`, `"kind": "StepRun"`},
		"name": {"steprun.workflows.pnsflow.dev/hello"},
	}
	for format, wants := range cases {
		res := pnsflow(t, cmd.Options{}, "-n", ns, "get", "hello", "-o", format)
		for _, want := range wants {
			if res.code != 0 || !strings.Contains(res.stdout, want) {
				t.Errorf("-o %s: exit %d, output lacks %q:\n%s%s", format, res.code, want, res.stdout, res.stderr)
			}
		}
		if strings.Contains(res.stdout, "managedFields") {
			t.Errorf("-o %s shows managedFields; kubectl hides them", format)
		}
	}
	tree := pnsflow(t, cmd.Options{}, "-n", ns, "get", "sr/hello")
	golden(t, "steprun-get", tree.stdout)
}

func TestAmbiguousNamesMustSayTheirKind(t *testing.T) {
	ns := newNamespace(t)
	if err := k8s.Create(context.Background(), MakeStepRun("twin", ns).Obj()); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(context.Background(), MakeWorkflowRun("twin", ns).Steps(MakeStep("a")).Obj()); err != nil {
		t.Fatal(err)
	}
	res := pnsflow(t, cmd.Options{}, "-n", ns, "get", "twin")
	if res.code != 1 || !strings.Contains(res.stderr, "write wfr/twin or sr/twin") {
		t.Errorf("exit %d stderr %q", res.code, res.stderr)
	}
	if res := pnsflow(t, cmd.Options{}, "-n", ns, "get", "wfr/twin", "-o", "name"); res.stdout != "workflowrun.workflows.pnsflow.dev/twin\n" {
		t.Errorf("wfr/twin: %q %q", res.stdout, res.stderr)
	}
}
