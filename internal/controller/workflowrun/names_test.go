package workflowrun

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
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
	long := strings.Repeat("r", 240)
	a, b := StepRunName(long, "step", 1, 0), StepRunName(long, "step", 2, 0)
	for _, n := range []string{a, b} {
		if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
			t.Errorf("%q is not a DNS subdomain: %v", n, errs)
		}
	}
	if a == b {
		t.Error("hashed names of distinct items collide")
	}
	if a != StepRunName(long, "step", 1, 0) {
		t.Error("hashed names are not deterministic")
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
