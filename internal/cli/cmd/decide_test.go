package cmd

import (
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/cli/tree"
	. "github.com/pnsflow/pnsflow/internal/testutil"
)

func TestDecideInterruptAsksOnlyAPersonAtATerminal(t *testing.T) {
	cases := []struct {
		name   string
		rm     bool
		sig    os.Signal
		canAsk bool
		want   OnInterrupt
	}{
		{"Ctrl-C at a terminal asks", false, os.Interrupt, true, Ask},
		{"Ctrl-C without a terminal leaves the run", false, os.Interrupt, false, Leave},
		{"SIGTERM leaves the run: no one to ask", false, syscall.SIGTERM, true, Leave},
		{"--rm deletes without asking", true, os.Interrupt, true, Delete},
		{"--rm deletes on SIGTERM too", true, syscall.SIGTERM, false, Delete},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := DecideInterrupt(tc.rm, tc.sig, tc.canAsk); got != tc.want {
				t.Errorf("DecideInterrupt = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestIsYesTakesOnlyYes(t *testing.T) {
	for answer, want := range map[string]bool{"y\n": true, "YES": true, " yes \n": true, "\n": false, "n": false, "yeah": false} {
		if got := IsYes(answer); got != want {
			t.Errorf("IsYes(%q) = %v, want %v", answer, got, want)
		}
	}
}

func TestParseTargetReadsKubectlSpellings(t *testing.T) {
	cases := []struct {
		in, kind, name, err string
	}{
		{"hello", kindAny, "hello", ""},
		{"sr/hello", kindStepRun, "hello", ""},
		{"StepRuns/hello", kindStepRun, "hello", ""},
		{"wfr/dag", kindWorkflowRun, "dag", ""},
		{"workflowruns.workflows.pnsflow.dev/dag", kindWorkflowRun, "dag", ""},
		{"pod/x", "", "", "not a pnsflow kind"},
		{"wfr/", "", "", "a name is required"},
		{"", "", "", "a name is required"},
	}
	for _, tc := range cases {
		kind, name, err := ParseTarget(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseTarget(%q) error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || kind != tc.kind || name != tc.name {
			t.Errorf("ParseTarget(%q) = %q %q %v", tc.in, kind, name, err)
		}
	}
}

func TestDecideControlSendsOnlyWhatChangesSomething(t *testing.T) {
	running := MakeWorkflowRun("r", "ns").Obj()
	running.Status.Phase = v1alpha1.WorkflowRunRunning
	suspended := running.DeepCopy()
	suspended.Spec.Suspend = true
	cancelled := running.DeepCopy()
	cancelled.Spec.Cancel = true
	ended := running.DeepCopy()
	ended.Status.Phase = v1alpha1.WorkflowRunSucceeded
	cases := []struct {
		name string
		c    Control
		wfr  *v1alpha1.WorkflowRun
		send bool
		note string
		err  string
	}{
		{"cancel a running run", cancelRun, running, true, "", ""},
		{"cancel twice", cancelRun, cancelled, false, "already cancelled", ""},
		{"cancel an ended run", cancelRun, ended, false, "", "already ended Succeeded"},
		{"suspend a running run", suspendRun, running, true, "", ""},
		{"suspend twice", suspendRun, suspended, false, "already suspended", ""},
		{"suspend a cancelled run", suspendRun, cancelled, false, "", "is cancelled"},
		{"resume a suspended run", resumeRun, suspended, true, "", ""},
		{"resume a run not suspended", resumeRun, running, false, "not suspended", ""},
		{"resume an ended run", resumeRun, ended, false, "", "already ended"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			send, note, err := DecideControl(tc.c, tc.wfr)
			if send != tc.send || note != tc.note || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("DecideControl = %v %q %v; want %v %q %q", send, note, err, tc.send, tc.note, tc.err)
			}
		})
	}
}

func TestSortEntriesOrdersByStepThenItemThenAttempt(t *testing.T) {
	es := []entry{
		{order: 1, item: 2, attempt: 0, step: "fan"},
		{order: 1, item: 1, attempt: 1, step: "fan"},
		{order: 2, item: -1, attempt: 0, step: "join"},
		{order: 0, item: -1, attempt: 0, step: "prep"},
		{order: 1, item: 1, attempt: 0, step: "fan"},
	}
	SortEntries(es)
	var got []string
	for _, e := range es {
		got = append(got, e.prefix())
	}
	if diff := cmp.Diff([]string{"prep", "fan[1]", "fan[1]/r1", "fan[2]", "join"}, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

func TestOutputsTextIndentsMultiLineValues(t *testing.T) {
	got := OutputsText([]tree.Output{{Name: "a", Value: "one\ntwo\n"}, {Name: "r", Value: "k (1 B)", Artifact: true}})
	if want := "a = one\n    two\nr ⇒ k (1 B)\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
