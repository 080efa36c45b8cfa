package manifest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	. "github.com/pnsflow/pnsflow/internal/testutil"
)

func TestDecodeReadsOneRunStrictly(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		kind    string
		wantErr string
	}{
		{name: "a WorkflowRun", kind: "WorkflowRun", in: `
apiVersion: workflows.pnsflow.dev/v1alpha1
kind: WorkflowRun
metadata: {generateName: hello-}
spec:
  steps: [{name: a, template: {image: busybox}}]`},
		{name: "a StepRun after a leading separator and comments", kind: "StepRun", in: `# a comment
---
apiVersion: workflows.pnsflow.dev/v1alpha1
kind: StepRun
metadata: {name: hi}
spec: {image: busybox}`},
		{name: "JSON", kind: "StepRun", in: `{"apiVersion":"workflows.pnsflow.dev/v1alpha1","kind":"StepRun","metadata":{"name":"hi"},"spec":{"image":"busybox"}}`},
		{name: "a misspelt field is an error", wantErr: "unknown field", in: `
apiVersion: workflows.pnsflow.dev/v1alpha1
kind: StepRun
metadata: {name: hi}
spec: {image: busybox, comand: [sh]}`},
		{name: "two objects are refused", wantErr: "holds 2 objects", in: `
apiVersion: workflows.pnsflow.dev/v1alpha1
kind: StepRun
metadata: {name: a}
spec: {image: busybox}
---
apiVersion: workflows.pnsflow.dev/v1alpha1
kind: StepRun
metadata: {name: b}
spec: {image: busybox}`},
		{name: "an empty file is refused", wantErr: "no object", in: "# nothing\n"},
		{name: "another kind is refused", wantErr: "decoding", in: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj, err := Decode(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			switch obj.(type) {
			case *v1alpha1.WorkflowRun:
				if tc.kind != "WorkflowRun" {
					t.Errorf("got a WorkflowRun, want %s", tc.kind)
				}
			case *v1alpha1.StepRun:
				if tc.kind != "StepRun" {
					t.Errorf("got a StepRun, want %s", tc.kind)
				}
			}
		})
	}
}

func TestDecodeReadsTheShippedSample(t *testing.T) {
	f, err := os.Open(filepath.Join("..", "..", "..", "config", "samples", "workflows_v1alpha1_workflowrun.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	obj, err := Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if wfr, ok := obj.(*v1alpha1.WorkflowRun); !ok || len(wfr.Spec.Steps) == 0 {
		t.Errorf("decoded %T", obj)
	}
}

func TestApplyParamsSetsOnlyDeclaredArguments(t *testing.T) {
	cases := []struct {
		name    string
		in      []string
		want    []v1alpha1.InputParameter
		wantErr string
	}{
		{name: "a declared argument is set", in: []string{"name=pnsflow"}, want: []v1alpha1.InputParameter{{Name: "name", Value: "pnsflow"}, {Name: "n", Value: "3"}}},
		{name: "the value may hold '=' and be empty", in: []string{"name=a=b", "n="}, want: []v1alpha1.InputParameter{{Name: "name", Value: "a=b"}, {Name: "n", Value: ""}}},
		{name: "the last of a repeated name wins", in: []string{"n=1", "n=2"}, want: []v1alpha1.InputParameter{{Name: "name", Value: "world"}, {Name: "n", Value: "2"}}},
		{name: "a misspelt name is an error listing the declared ones", in: []string{"nmae=x"}, wantErr: "declares: name, n"},
		{name: "no '=' is an error", in: []string{"name"}, wantErr: "want NAME=VALUE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wfr := MakeWorkflowRun("wf", "ns").Param("name", "world").Param("n", "3").Obj()
			params, err := ParseParams(tc.in)
			if err == nil {
				err = ApplyParams(wfr, params)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, wfr.Spec.Arguments.Parameters); diff != "" {
				t.Errorf("arguments (-want +got):\n%s", diff)
			}
		})
	}
	if err := ApplyParams(MakeWorkflowRun("wf", "ns").Obj(), []Param{{"x", "1"}}); err == nil || !strings.Contains(err.Error(), "declares no arguments") {
		t.Errorf("a run without arguments: %v", err)
	}
}

func TestSetNamespaceFollowsKubectl(t *testing.T) {
	cases := []struct {
		name, inFile, flag string
		explicit           bool
		want, wantErr      string
	}{
		{"the default namespace fills an empty one", "", "default", false, "default", ""},
		{"the file's namespace wins over the default", "team", "default", false, "team", ""},
		{"an explicit -n that agrees is fine", "team", "team", true, "team", ""},
		{"an explicit -n that disagrees is an error", "team", "other", true, "", "does not match"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sr := MakeStepRun("x", tc.inFile).Obj()
			err := SetNamespace(sr, tc.flag, tc.explicit)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || sr.Namespace != tc.want {
				t.Errorf("namespace %q, err %v; want %q", sr.Namespace, err, tc.want)
			}
		})
	}
}

func TestResubmitCopiesTheDefinitionNotTheState(t *testing.T) {
	old := MakeWorkflowRun("nightly", "ns").Steps(MakeStep("a")).Param("day", "mon").Suspend(true).Cancel().Obj()
	old.Labels = map[string]string{"team": "data"}
	old.Annotations = map[string]string{lastApplied: "{}", "note": "keep"}
	old.UID, old.ResourceVersion = "u1", "42"
	old.Status.Phase = v1alpha1.WorkflowRunCancelled

	got := Resubmit(old)
	want := &v1alpha1.WorkflowRun{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "nightly-", Namespace: "ns", Labels: map[string]string{"team": "data"},
			Annotations: map[string]string{"note": "keep", AnnotationResubmittedFrom: "nightly"}},
		Spec: *MakeWorkflowRun("nightly", "ns").Steps(MakeStep("a")).Param("day", "mon").Obj().Spec.DeepCopy(),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("resubmitted (-want +got):\n%s", diff)
	}

	old.GenerateName = "nightly-"
	old.Name = "nightly-x7k2p"
	if got := Resubmit(old); got.GenerateName != "nightly-" {
		t.Errorf("a generated run resubmits under its own generateName, got %q", got.GenerateName)
	}
}

func TestResubmitStepRunDetachesItFromItsWorkflow(t *testing.T) {
	old := MakeStepRun("wf-fan-3", "ns").Label(v1alpha1.LabelWorkflowRun, "wf").Label(v1alpha1.LabelItem, "3").Label("team", "x").Obj()
	old.OwnerReferences = []metav1.OwnerReference{{Name: "wf", UID: "u"}}
	got := ResubmitStepRun(old)
	if diff := cmp.Diff(map[string]string{"team": "x"}, got.Labels); diff != "" || len(got.OwnerReferences) != 0 || got.GenerateName != "wf-fan-3-" {
		t.Errorf("labels diff %s, owners %v, generateName %q", diff, got.OwnerReferences, got.GenerateName)
	}
}
