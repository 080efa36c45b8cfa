package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onsi/ginkgo/v2/types"
)

func TestDigestPrintsOnlyFailedSpecsWithWhyAndWhere(t *testing.T) {
	long := strings.Repeat("dumped line\n", 40)
	reports := []types.Report{{
		SuiteDescription: "E2E",
		SpecReports: types.SpecReports{
			{ContainerHierarchyTexts: []string{"Outputs"}, LeafNodeText: "passes", State: types.SpecStatePassed},
			{
				ContainerHierarchyTexts: []string{"Outputs"}, LeafNodeText: "reads main's root", State: types.SpecStateFailed,
				Failure: types.Failure{
					Message:         "Expected\n    <string>: Error\nto equal\n    <string>: Succeeded\n" + long,
					Location:        types.CodeLocation{FileName: "hook_test.go", LineNumber: 35},
					FailureNodeType: types.NodeTypeIt,
				},
			},
			{ContainerHierarchyTexts: []string{"Fan-out"}, LeafNodeText: "times out", State: types.SpecStateTimedout,
				Failure: types.Failure{Message: "A spec timeout occurred", Location: types.CodeLocation{FileName: "fanout_test.go", LineNumber: 9}}},
		},
	}}
	b, err := json.Marshal(reports)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "report.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	if err := digest(&out, path); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"--- E2E: Outputs reads main's root [failed]",
		"at hook_test.go:35 (in It)",
		"<string>: Error",
		"… 32 more lines in the full log",
		"--- E2E: Fan-out times out [timedout]",
		"at fanout_test.go:9\n",
		"A spec timeout occurred",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("digest lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "passes") {
		t.Errorf("digest lists a passed spec:\n%s", got)
	}
	if n := strings.Count(got, "dumped line"); n != 8 {
		t.Errorf("digest has %d of the message's dumped lines, want the first 12 lines (8 of them dumped):\n%s", n, got)
	}
}

func TestDigestSkipsAMissingReport(t *testing.T) {
	var out bytes.Buffer
	if err := digest(&out, filepath.Join(t.TempDir(), "absent.json")); err != nil || out.Len() != 0 {
		t.Fatalf("digest of a missing report = %q, %v; want nothing, nil", out.String(), err)
	}
}

func TestDigestRefusesAReportItCannotDecode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "report.json")
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := digest(&bytes.Buffer{}, path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("digest of a broken report: %v; want an error naming it", err)
	}
}
