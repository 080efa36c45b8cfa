package tree

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// golden compares got with testdata/<name>.golden, or rewrites the file under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/cli/tree -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-want +got); if the change is intended, run with -update:\n%s", path, diff)
	}
}

func code(n int32) *int32 { return &n }

func diamond() Model {
	return Model{Kind: "WorkflowRun", Namespace: "default", Name: "diamond", Phase: Succeeded, Reason: "Succeeded",
		Done: 4, Total: 4, Elapsed: 12 * time.Second, HasElapsed: true, Finished: true,
		Steps: []Step{
			{Name: "a", Phase: Succeeded, Duration: 2 * time.Second, HasDuration: true, ExitCode: code(0), Attempts: 1,
				Outputs: []Output{{Name: "x", Value: "from-a"}}},
			{Name: "b", Level: 1, After: []string{"a"}, Phase: Succeeded, Duration: 3 * time.Second, HasDuration: true, ExitCode: code(0), Attempts: 1},
			{Name: "c", Level: 1, After: []string{"a"}, Phase: Succeeded, Duration: 2500 * time.Millisecond, HasDuration: true, ExitCode: code(0), Attempts: 2,
				Outputs: []Output{{Name: "report", Value: "pnsflow/default/diamond-c/report (12 B)", Artifact: true}}},
			{Name: "d", Level: 2, After: []string{"b", "c"}, Phase: Succeeded, Duration: 800 * time.Millisecond, HasDuration: true, ExitCode: code(0), Attempts: 1,
				Outputs: []Output{{Name: "w", Value: "line one\nline two\n"}}},
		}}
}

func fanout5000() Model {
	return Model{Kind: "WorkflowRun", Namespace: "ci", Name: "big", Phase: Running, Reason: "Running",
		Done: 4315, Total: 5002, Elapsed: 72 * time.Second, HasElapsed: true,
		Steps: []Step{
			{Name: "prepare", Phase: Succeeded, Duration: 2 * time.Second, HasDuration: true, ExitCode: code(0), Attempts: 1},
			{Name: "fan", Level: 1, After: []string{"prepare"}, Phase: Running, Duration: 70 * time.Second, HasDuration: true,
				Items: &Counts{Total: 5000, Pending: 2622, Running: 64, Succeeded: 4312, Failed: 1, Error: 1, Retries: 3},
				Failed: []Item{
					{Index: 17, StepRun: "big-fan-17", Phase: Failed, Reason: "NonZeroExitCode", ExitCode: code(1), Duration: 3 * time.Second, HasDuration: true},
					{Index: 4242, StepRun: "big-fan-4242-r2", Phase: Error, Reason: "PodEvicted"},
				}},
			{Name: "join", Level: 2, After: []string{"fan"}, Phase: Pending},
			{Name: "notify", OnExit: true, Phase: Pending},
		}}
}

func failedFanout() Model {
	m := fanout5000()
	m.Phase, m.Reason, m.Message, m.Finished, m.Done = Failed, "StepFailed", "step fan: 40 items failed", true, 4960
	m.Steps[1].Phase = Failed
	m.Steps[1].Items = &Counts{Total: 5000, Succeeded: 4960, Failed: 30, Error: 10}
	m.Steps[1].MoreFailed = 38
	m.Steps[2].Phase, m.Steps[2].Message = Omitted, "dependency fan did not succeed"
	m.Steps[3].Phase, m.Steps[3].ExitCode, m.Steps[3].Attempts = Succeeded, code(0), 1
	return m
}

func longNames() Model {
	long := "transform-the-customer-records-into-parquet-files-for-the-warehouse"
	return Model{Kind: "WorkflowRun", Namespace: "data-platform-nightly", Name: "nightly-etl-run-with-a-rather-long-generated-name-x7k2p",
		Phase: Running, Done: 1, Total: 3, Elapsed: 95 * time.Second, HasElapsed: true,
		Steps: []Step{
			{Name: "extract-everything-from-the-upstream-postgres-replica", Phase: Succeeded, Duration: 61 * time.Second, HasDuration: true, ExitCode: code(0), Attempts: 1},
			{Name: long, Level: 1, After: []string{"extract-everything-from-the-upstream-postgres-replica"}, Phase: Running, Duration: 34 * time.Second, HasDuration: true,
				Items:  &Counts{Total: 12, Succeeded: 3, Running: 8, Failed: 1},
				Failed: []Item{{Index: 7, StepRun: "nightly-etl-run-with-a-rather-long-generated-name-x7k2p-" + long + "-7", Phase: Failed, Reason: "NonZeroExitCode", ExitCode: code(2)}}},
			{Name: "load", Level: 2, After: []string{long}, Phase: Pending},
		}}
}

func TestRenderGolden(t *testing.T) {
	cases := []struct {
		name string
		m    Model
		o    Options
	}{
		{"diamond", diamond(), Options{}},
		{"diamond-color", diamond(), Options{Width: 100, Color: true}},
		{"fanout-5000-running", fanout5000(), Options{Width: 100}},
		{"fanout-5000-failed", failedFanout(), Options{}},
		{"long-names-unlimited", longNames(), Options{}},
		{"long-names-80", longNames(), Options{Width: 80}},
		{"narrow-40", fanout5000(), Options{Width: 40}},
		{"narrow-40-long-names", longNames(), Options{Width: 40}},
		{"short-terminal", failedFanout(), Options{Width: 100, Height: 9}},
		{"steprun", Model{Kind: "StepRun", Namespace: "default", Name: "hello", Phase: Succeeded, Reason: "Succeeded",
			ExitCode: code(0), Elapsed: 1200 * time.Millisecond, HasElapsed: true, Finished: true, PodName: "hello-pod",
			Outputs: []Output{{Name: "greeting", Value: "world"}, {Name: "report", Value: "pnsflow/default/hello/report (2.0 KiB, sha256 4f2a…)", Artifact: true}}}, Options{}},
		{"steprun-stages", stepRunWithStages(), Options{}},
		{"steprun-stages-narrow-40", stepRunWithStages(), Options{Width: 40}},
		{"steprun-error", Model{Kind: "StepRun", Namespace: "default", Name: "broken", Phase: Error, Reason: "ImagePullFailed",
			Message: `pulling "nope:latest": not found`}, Options{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Render(tc.m, tc.o)
			golden(t, tc.name, got)
			if tc.o.Width > 0 && !tc.o.Color {
				for _, l := range strings.Split(strings.TrimSuffix(got, "\n"), "\n") {
					if n := len([]rune(l)); n > tc.o.Width {
						t.Errorf("line is %d columns, wider than the terminal's %d: %q", n, tc.o.Width, l)
					}
				}
			}
			if tc.o.Height > 0 {
				if n := strings.Count(got, "\n"); n > tc.o.Height-1 {
					t.Errorf("frame is %d lines, taller than the terminal's %d less the cursor's line", n, tc.o.Height)
				}
			}
			if !tc.o.Color && strings.Contains(got, "\x1b[") {
				t.Error("colour escapes in output without colour")
			}
		})
	}
}

func TestRenderNeverExceedsTheWidthAtAnySize(t *testing.T) {
	for _, m := range []Model{diamond(), fanout5000(), failedFanout(), longNames()} {
		for w := 20; w <= 140; w++ {
			for _, l := range strings.Split(strings.TrimSuffix(Render(m, Options{Width: w}), "\n"), "\n") {
				if n := len([]rune(l)); n > w {
					t.Fatalf("%s at width %d: line of %d columns: %q", m.Name, w, n, l)
				}
			}
		}
	}
}

func TestMiddleKeepsBothEndsOfALongName(t *testing.T) {
	cases := []struct {
		in   string
		w    int
		want string
	}{
		{"short", 10, "short"},
		{"abcdefghij", 10, "abcdefghij"},
		{"abcdefghijk", 10, "abcde…hijk"},
		{"run-fan-4242", 8, "run-…242"},
		{"abc", 1, "…"},
	}
	for _, tc := range cases {
		if got := middle(tc.in, tc.w); got != tc.want {
			t.Errorf("middle(%q, %d) = %q, want %q", tc.in, tc.w, got, tc.want)
		}
	}
}

func TestCountsShowOnlyWhatIsThere(t *testing.T) {
	cases := []struct {
		c    Counts
		want string
	}{
		{Counts{Total: 5000, Succeeded: 4312, Running: 64, Failed: 1, Error: 1, Pending: 2622}, "✔ 4312  ▶ 64  ✖ 2  / 5000"},
		{Counts{Total: 4, Pending: 4}, "○ 4  / 4"},
		{Counts{Total: 3, Skipped: 3}, "↷ 3  / 3"},
		{Counts{Total: 10, Succeeded: 9, Omitted: 1, Retries: 2}, "✔ 9  – 1  ↻ 2  / 10"},
	}
	for _, tc := range cases {
		if got := counts(tc.c, false).paint(false); got != tc.want {
			t.Errorf("counts(%+v) = %q, want %q", tc.c, got, tc.want)
		}
	}
}

func TestDurationReadsLikeTheAPIs(t *testing.T) {
	cases := map[time.Duration]string{
		350 * time.Millisecond:  "350ms",
		1499 * time.Millisecond: "1s",
		72 * time.Second:        "1m12s",
		-time.Second:            "",
	}
	for d, want := range cases {
		if got := Duration(d); got != want {
			t.Errorf("Duration(%s) = %q, want %q", d, got, want)
		}
	}
}

// stepRunWithStages is a finished StepRun whose time went mostly into starting main.
func stepRunWithStages() Model {
	ms := time.Millisecond
	return Model{Kind: "StepRun", Namespace: "default", Name: "slow-start", Phase: Succeeded, Reason: "Succeeded",
		ExitCode: code(0), Elapsed: 52 * ms, HasElapsed: true, Finished: true, PodName: "slow-start-pod",
		Stages: []Stage{{"create Pod", 8 * ms}, {"schedule", 0}, {"start executor", 812 * ms},
			{"start main", 3140 * ms}, {"main", 52 * ms}, {"report", 61 * ms}}}
}
