package workflowrun

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/pnsflow/pnsflow/internal/podspec"
)

func TestStepRunName(t *testing.T) {
	cases := []struct {
		run, step     string
		item, attempt int
		want          string
	}{
		{"wf", "build", -1, 0, "wf-build"},
		{"wf", "build", 7, 0, "wf-build-7"},
		{"wf", "build", -1, 2, "wf-build-r2"},
		{"wf", "build", 0, 1, "wf-build-0-r1"},
	}
	for _, tc := range cases {
		if got := StepRunName(tc.run, tc.step, tc.item, tc.attempt); got != tc.want {
			t.Errorf("StepRunName(%q, %q, %d, %d) = %q, want %q", tc.run, tc.step, tc.item, tc.attempt, got, tc.want)
		}
	}
	// Children of a long run stay within a StepRun name's cap (249), which keeps their Pods'
	// names (plus "-pod") DNS subdomains.
	for _, run := range []string{strings.Repeat("r", 240), strings.Repeat("r", 244), strings.Repeat("r.", 125) + "r"} {
		a, b := StepRunName(run, "step", 1, 0), StepRunName(run, "step", 2, 0)
		for _, n := range []string{a, b} {
			if len(n) > podspec.MaxStepRunNameLength {
				t.Errorf("%q has %d characters, more than a StepRun name may have", n, len(n))
			}
			if errs := validation.IsDNS1123Subdomain(podspec.PodName(n)); len(errs) > 0 {
				t.Errorf("the Pod name of %q is not a DNS subdomain: %v", n, errs)
			}
		}
		if a == b {
			t.Error("hashed names of distinct items collide")
		}
		if a != StepRunName(run, "step", 1, 0) {
			t.Error("hashed names are not deterministic")
		}
	}
	// A name that fits is kept whole, up to the cap exactly.
	run := strings.Repeat("r", 244)
	if got := StepRunName(run, "step", -1, 0); got != run+"-step" || len(got) != podspec.MaxStepRunNameLength {
		t.Errorf("StepRunName of a 249-character name = %q, want it unchanged", got)
	}
	if got := StepRunName(run, "step", 1, 0); got == run+"-step-1" {
		t.Errorf("a 251-character name was kept: %q", got)
	}
}

func TestNameClash(t *testing.T) {
	cases := []struct {
		names []string
		clash bool
	}{
		{[]string{"a", "b", "a-b"}, false},
		{[]string{"a", "a-1"}, true},
		{[]string{"a", "a-r2"}, true},
		{[]string{"a", "a-3-r1"}, true},
		{[]string{"a", "a-x1"}, false},
		{[]string{"build", "build-test"}, false},
	}
	for _, tc := range cases {
		if err := nameClash(tc.names); (err != nil) != tc.clash {
			t.Errorf("%v: got %v, want clash=%v", tc.names, err, tc.clash)
		}
	}
}
