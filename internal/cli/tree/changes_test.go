package tree

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestChangesPrintsOneLinePerChangeAndNothingForTimePassing(t *testing.T) {
	running := fanout5000()
	later := fanout5000()
	later.Elapsed += 5 * time.Second
	later.Steps[1].Duration += 5 * time.Second

	progressed := fanout5000()
	progressed.Done = 4400
	progressed.Steps[1].Items = &Counts{Total: 5000, Pending: 2537, Running: 64, Succeeded: 4397, Failed: 1, Error: 1, Retries: 3}

	newFailure := fanout5000()
	newFailure.Steps[1].Failed = append(newFailure.Steps[1].Failed, Item{Index: 99, StepRun: "big-fan-99", Phase: Failed, Reason: "NonZeroExitCode", ExitCode: code(7)})

	cases := []struct {
		name       string
		prev, next Model
		want       []string
	}{
		{"nothing but time passing prints nothing", running, later, nil},
		{"progress prints the run and the step", running, progressed, []string{
			"big  ▶ Running  4400/5002 (87%)",
			"  fan  ▶ Running  ✔ 4397  ▶ 64  ✖ 2  ↻ 3  / 5000",
		}},
		{"a new failed item prints one line", running, newFailure, []string{
			"    fan[99]  ✖ Failed  exit 7 · big-fan-99",
		}},
		{"the end prints the outcome with the reason", running, failedFanout(), []string{
			"big  ✖ Failed  4960/5002 (99%)  took 1m12s  StepFailed: step fan: 40 items failed",
			"  fan  ✖ Failed  1m10s  ✔ 4960  ✖ 40  / 5000",
			"  join  – Omitted  ↳ dependency fan did not succeed",
			"  notify  ✔ Succeeded  exit 0",
		}},
		{"a first look prints everything", Model{}, running, []string{
			"big  ▶ Running  4315/5002 (86%)",
			"  prepare  ✔ Succeeded  2s  exit 0",
			"  fan  ▶ Running  ✔ 4312  ▶ 64  ✖ 2  ↻ 3  / 5000",
			"    fan[17]  ✖ Failed  exit 1 · big-fan-17",
			"    fan[4242]  ✖ Error  PodEvicted · big-fan-4242-r2",
			"  join  ○ Pending",
			"  notify  ○ Pending",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Changes(tc.prev, tc.next)); diff != "" {
				t.Errorf("changes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestChangesOfAStepRunFollowItsPhase(t *testing.T) {
	pending := Model{Kind: "StepRun", Name: "hello", Phase: Pending}
	running := Model{Kind: "StepRun", Name: "hello", Phase: Running, PodName: "hello-pod"}
	done := Model{Kind: "StepRun", Name: "hello", Phase: Failed, Reason: "NonZeroExitCode", ExitCode: code(3), Elapsed: time.Second, HasElapsed: true, Finished: true}
	if diff := cmp.Diff([]string{"hello  ▶ Running"}, Changes(pending, running)); diff != "" {
		t.Error(diff)
	}
	if diff := cmp.Diff([]string{"hello  ✖ Failed  exit 3  took 1s  NonZeroExitCode"}, Changes(running, done)); diff != "" {
		t.Error(diff)
	}
}
