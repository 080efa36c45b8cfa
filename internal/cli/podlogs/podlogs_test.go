package podlogs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	. "github.com/pnsflow/pnsflow/internal/testutil"
)

func TestDecideReadsOnlyLogsThatCanExist(t *testing.T) {
	withStatus := func(st v1alpha1.StepRunStatus) *v1alpha1.StepRun {
		sr := MakeStepRun("s", "ns").Obj()
		sr.Status = st
		return sr
	}
	neverStarted := v1alpha1.StepRunStatus{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonPodForbidden, Message: "violates restricted",
		Conditions: []metav1.Condition{{Type: v1alpha1.ConditionMainStarted, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonMainNeverStarted}}}
	cases := []struct {
		name   string
		st     v1alpha1.StepRunStatus
		want   Action
		reason string
	}{
		{"a new StepRun waits", v1alpha1.StepRunStatus{}, Wait, "(Pending)"},
		{"a pending StepRun waits", v1alpha1.StepRunStatus{Phase: v1alpha1.StepRunPending}, Wait, "not started yet"},
		{"a running StepRun is read", v1alpha1.StepRunStatus{Phase: v1alpha1.StepRunRunning, PodName: "s-pod"}, Read, ""},
		{"a finished StepRun is read", v1alpha1.StepRunStatus{Phase: v1alpha1.StepRunFailed}, Read, ""},
		{"an Error whose main ran is read", v1alpha1.StepRunStatus{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonOOMKilled}, Read, ""},
		{"a run whose main never started has no log", neverStarted, None, "main never started: Error/PodForbidden: violates restricted"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, why := Decide(withStatus(tc.st))
			if got != tc.want || !strings.Contains(why, tc.reason) {
				t.Errorf("Decide = %v %q, want %v containing %q", got, why, tc.want, tc.reason)
			}
		})
	}
}

func TestPrefixNamesStepItemAndRetry(t *testing.T) {
	cases := []struct {
		step          string
		item, attempt int
		want          string
	}{
		{"greet", -1, 0, "greet"},
		{"fan", 3, 0, "fan[3]"},
		{"fan", 3, 2, "fan[3]/r2"},
		{"greet", -1, 1, "greet/r1"},
	}
	for _, tc := range cases {
		if got := Prefix(tc.step, tc.item, tc.attempt); got != tc.want {
			t.Errorf("Prefix(%q, %d, %d) = %q, want %q", tc.step, tc.item, tc.attempt, got, tc.want)
		}
	}
}

func TestGoneNoteSaysWhatIsLeft(t *testing.T) {
	sr := MakeStepRun("s", "ns").Obj()
	if got := GoneNote(sr); !strings.Contains(got, "pod s-pod is gone") || !strings.Contains(got, "kept none") {
		t.Errorf("note without a result: %q", got)
	}
	tail := "last words\n"
	sr.Status.Outputs = &v1alpha1.StepRunOutputs{Result: &tail}
	if got := GoneNote(sr); !strings.Contains(got, "last 11 bytes") {
		t.Errorf("note with a result: %q", got)
	}
}

func TestCopyWritesWholeLinesWithAlignedPrefixes(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b, false)
	if err := Copy(strings.NewReader("one\ntwo"), w, "fan[10]", "fan"); err != nil {
		t.Fatal(err)
	}
	if err := Copy(strings.NewReader("three\n"), w, "a", "a"); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 200000)
	if err := Copy(strings.NewReader(long+"\n"), w, "", ""); err != nil {
		t.Fatal(err)
	}
	want := "fan[10] │ one\nfan[10] │ two\na       │ three\n" + long + "\n"
	if got := b.String(); got != want {
		t.Errorf("wrote %q…, want %q…", got[:min(len(got), 60)], want[:60])
	}
}

func TestWidenAlignsLinesBeforeTheWiderPrefixPrints(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b, false)
	w.Widen("fan[0]")
	if err := w.Line("prep", "prep", "prepared"); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "prep   │ prepared\n"; got != want {
		t.Errorf("wrote %q, want %q", got, want)
	}
}

func TestColoredPrefixesKeepAStepsColour(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b, true)
	_ = w.Line("fan[1]", "fan", "x")
	_ = w.Line("fan[2]", "fan", "y")
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	c := "\x1b[" + Color("fan") + "m"
	if !strings.HasPrefix(lines[0], c) || !strings.HasPrefix(lines[1], c) {
		t.Errorf("items of one step should share a colour: %q", lines)
	}
}

func TestOrderedWritesInJobOrderEvenWhenALaterJobEndsFirst(t *testing.T) {
	secondDone := make(chan struct{})
	jobs := []Job{
		func(ctx context.Context, out, notes *Writer) error {
			<-secondDone // the first log takes longer than the second
			return out.Line("a", "a", "first")
		},
		func(ctx context.Context, out, notes *Writer) error {
			defer close(secondDone)
			if err := out.Line("b", "b", "second"); err != nil {
				return err
			}
			return notes.Line("b", "b", "a note")
		},
	}
	var stdout, stderr bytes.Buffer
	if err := Ordered(context.Background(), jobs, 2, &stdout, &stderr, false, 1); err != nil {
		t.Fatal(err)
	}
	if got, want := stdout.String(), "a │ first\nb │ second\n"; got != want {
		t.Errorf("stdout %q, want %q", got, want)
	}
	if got := stderr.String(); got != "b │ a note\n" {
		t.Errorf("stderr %q", got)
	}
}

func TestOrderedReadsAtMostWindowLogsAtOnce(t *testing.T) {
	var inFlight, peak atomic.Int32
	var jobs []Job
	for i := range 20 {
		jobs = append(jobs, func(ctx context.Context, out, notes *Writer) error {
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			return out.Line("", "", fmt.Sprint(i))
		})
	}
	var stdout bytes.Buffer
	if err := Ordered(context.Background(), jobs, 3, &stdout, &bytes.Buffer{}, false, 0); err != nil {
		t.Fatal(err)
	}
	if peak.Load() > 3 {
		t.Errorf("%d logs were read at once, want at most the window of 3", peak.Load())
	}
	if n := strings.Count(stdout.String(), "\n"); n != 20 {
		t.Errorf("wrote %d lines, want 20", n)
	}
}

func TestOrderedStopsAtTheFirstError(t *testing.T) {
	boom := errors.New("boom")
	jobs := []Job{
		func(ctx context.Context, out, notes *Writer) error { return out.Line("", "", "first") },
		func(ctx context.Context, out, notes *Writer) error { return boom },
		func(ctx context.Context, out, notes *Writer) error { return out.Line("", "", "never") },
	}
	var stdout bytes.Buffer
	err := Ordered(context.Background(), jobs, 1, &stdout, &bytes.Buffer{}, false, 0)
	if !errors.Is(err, boom) || stdout.String() != "first\n" {
		t.Errorf("err %v, stdout %q", err, stdout.String())
	}
}

func TestCopyTailKeepsTheLastLinesWhateverTheirCount(t *testing.T) {
	for _, c := range []struct {
		name, in string
		n        int64
		want     string
	}{
		{"fewer lines than asked", "a\nb\n", 5, "a\nb\n"},
		{"exactly as many", "a\nb\nc\n", 3, "a\nb\nc\n"},
		{"more lines: the ring wraps", "1\n2\n3\n4\n5\n6\n7\n", 3, "5\n6\n7\n"},
		{"a last line without newline counts", "1\n2\n3", 2, "2\n3\n"},
		{"zero lines", "1\n2\n", 0, ""},
		{"an empty log", "", 4, ""},
		{"empty lines are lines", "a\n\n\nb\n", 3, "\n\nb\n"},
	} {
		var out bytes.Buffer
		if err := CopyTail(strings.NewReader(c.in), NewWriter(&out, false), "", "", c.n); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if out.String() != c.want {
			t.Errorf("%s: CopyTail(%q, %d) wrote %q, want %q", c.name, c.in, c.n, out.String(), c.want)
		}
	}
}

func TestArchivedLogIsTheMainLogsArtifact(t *testing.T) {
	sr := MakeStepRun("s", "ns").Obj()
	if ArchivedLog(sr) != nil {
		t.Error("a run without outputs has an archived log")
	}
	sr.Status.Outputs = &v1alpha1.StepRunOutputs{Artifacts: []v1alpha1.ArtifactStatus{{Name: "tree", Key: "k/tree"}}}
	if ArchivedLog(sr) != nil {
		t.Error("a user's artifact was taken for main's log")
	}
	sr.Status.Outputs.Artifacts = append(sr.Status.Outputs.Artifacts, v1alpha1.ArtifactStatus{Name: v1alpha1.MainLogsArtifact, Key: "k/main-logs", Size: 12})
	if a := ArchivedLog(sr); a == nil || a.Key != "k/main-logs" {
		t.Errorf("ArchivedLog = %+v, want k/main-logs", a)
	}
	sr.Status.PodName = "s-pod"
	if got, want := ArchivedNote(sr, ArchivedLog(sr)), "pod s-pod is gone; main's log follows from the artifact repository (k/main-logs, 12 bytes)"; got != want {
		t.Errorf("ArchivedNote = %q, want %q", got, want)
	}
	incomplete := *ArchivedLog(sr)
	incomplete.Incomplete = "the grace ran out"
	if got, want := ArchivedNote(sr, &incomplete), "pod s-pod is gone; main's log follows from the artifact repository (k/main-logs, 12 bytes); it is incomplete: the grace ran out"; got != want {
		t.Errorf("ArchivedNote of an incomplete archive = %q, want %q", got, want)
	}
}
