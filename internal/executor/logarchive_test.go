package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

// scriptedFollower plays the Pod log API: each Follow returns the next stream, which yields its
// text and then ends with err (nil: a clean end).
type scriptedFollower struct {
	streams []followStream
	since   []*metav1.Time
}

type followStream struct {
	text string
	err  error
}

func (f *scriptedFollower) Follow(_ context.Context, since *metav1.Time) (io.ReadCloser, error) {
	f.since = append(f.since, since)
	if len(f.streams) == 0 {
		return nil, errors.New("no more streams")
	}
	s := f.streams[0]
	f.streams = f.streams[1:]
	return io.NopCloser(io.MultiReader(strings.NewReader(s.text), errReader{s.err})), nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) {
	if e.err == nil {
		return 0, io.EOF
	}
	return 0, e.err
}

var logT0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// line is a kubelet log line at logT0 + ms milliseconds.
func line(ms int, text string) string {
	return logT0.Add(time.Duration(ms)*time.Millisecond).Format(time.RFC3339Nano) + " " + text + "\n"
}

func archiver(f LogFollower, up Uploader, mainDone bool) *LogArchiver {
	return &LogArchiver{
		Logs: f, Uploader: up, Key: "ns/run/main-logs", Backoff: time.Millisecond,
		MainStarted: func(context.Context) error { return nil },
		MainTerminated: func(ctx context.Context) error {
			if mainDone {
				return nil
			}
			<-ctx.Done()
			return ctx.Err()
		},
	}
}

func TestArchivedLogIsTheLogWithoutTimestamps(t *testing.T) {
	text := line(0, "one") + line(1, "two words") + line(2, "")
	// Once main has ended, the log is read once more from its last line's second: all of it here.
	f := &scriptedFollower{streams: []followStream{{text: text}, {text: text}}}
	up := &recordingUploader{}
	got := archiver(f, up, true).Archive(context.Background(), context.Background())
	if got.Failure != nil {
		t.Fatalf("failure: %+v", got.Failure)
	}
	if stored := string(up.objects["ns/run/main-logs"]); stored != "one\ntwo words\n\n" {
		t.Errorf("stored %q", stored)
	}
	if len(f.since) != 2 || !f.since[1].Time.Equal(logT0.Add(2*time.Millisecond)) {
		t.Errorf("follows since %v, want from the start, then from the last line's time", f.since)
	}
	if got.Result != "one\ntwo words\n\n" {
		t.Errorf("result %q", got.Result)
	}
	a := got.Artifact
	if a == nil || a.Name != v1alpha1.MainLogsArtifact || a.Key != "ns/run/main-logs" || a.Size != 15 || a.Archive != "none" || len(a.SHA256) != 64 {
		t.Errorf("artifact %+v", a)
	}
	if up.archives["ns/run/main-logs"] != "none" {
		t.Errorf("stored as %q", up.archives["ns/run/main-logs"])
	}
}

func TestABrokenFollowResumesWithoutLosingOrRepeatingLines(t *testing.T) {
	f := &scriptedFollower{streams: []followStream{
		{text: line(100, "a") + line(1200, "b"), err: errors.New("connection reset by peer")},
		// Resumed from the second of "b": the API sends "b" again, then what came after.
		{text: line(1200, "b") + line(1900, "c") + line(2500, "d")},
		{text: line(2500, "d")},
	}}
	up := &recordingUploader{}
	got := archiver(f, up, true).Archive(context.Background(), context.Background())
	if got.Failure != nil {
		t.Fatalf("failure: %+v", got.Failure)
	}
	if stored := string(up.objects["ns/run/main-logs"]); stored != "a\nb\nc\nd\n" {
		t.Errorf("stored %q, want every line once", stored)
	}
	if len(f.since) != 3 || f.since[0] != nil || !f.since[1].Time.Equal(logT0.Add(1200*time.Millisecond)) {
		t.Errorf("follows since %v, want from the start, then from b's time", f.since)
	}
}

func TestLinesWrittenAfterTheKubeletEndedTheFollowAreArchived(t *testing.T) {
	// The kubelet saw main exited before the runtime wrote "c" and "d" to the file.
	f := &scriptedFollower{streams: []followStream{
		{text: line(100, "a") + line(1200, "b")},
		{text: line(1200, "b") + line(1300, "c") + line(2100, "d")},
	}}
	up := &recordingUploader{}
	if got := archiver(f, up, true).Archive(context.Background(), context.Background()); got.Failure != nil || got.Result != "a\nb\nc\nd\n" {
		t.Fatalf("got %+v", got)
	}
	if stored := string(up.objects["ns/run/main-logs"]); stored != "a\nb\nc\nd\n" {
		t.Errorf("stored %q, want every line once", stored)
	}
}

func TestAResumedFollowKeepsLinesThatShareTheLastStoredLinesTime(t *testing.T) {
	f := &scriptedFollower{streams: []followStream{
		{text: line(5, "a") + line(7, "b") + line(7, "c"), err: errors.New("unexpected EOF")},
		{text: line(5, "a") + line(7, "b") + line(7, "c") + line(7, "d") + line(7, "e") + line(9, "f")},
		{text: line(9, "f")},
	}}
	up := &recordingUploader{}
	if got := archiver(f, up, true).Archive(context.Background(), context.Background()); got.Failure != nil {
		t.Fatalf("failure: %+v", got.Failure)
	}
	if stored := string(up.objects["ns/run/main-logs"]); stored != "a\nb\nc\nd\ne\nf\n" {
		t.Errorf("stored %q, want every line once", stored)
	}
}

func TestAFollowEndingWhileMainRunsIsResumed(t *testing.T) {
	both := line(0, "first") + line(5, "second")
	f := &scriptedFollower{streams: []followStream{{text: line(0, "first")}, {text: both}, {text: both}}}
	up := &recordingUploader{}
	a := archiver(f, up, false)
	calls := 0
	a.MainTerminated = func(ctx context.Context) error {
		if calls++; calls == 1 {
			return errors.New("still running")
		}
		return nil
	}
	if got := a.Archive(context.Background(), context.Background()); got.Failure != nil {
		t.Fatalf("failure: %+v", got.Failure)
	}
	if stored := string(up.objects["ns/run/main-logs"]); stored != "first\nsecond\n" {
		t.Errorf("stored %q", stored)
	}
}

func TestLongLinesAndLargeLogsStayWholeAndTheResultIsTheTail(t *testing.T) {
	long := strings.Repeat("x", 200*1024)
	var b strings.Builder
	b.WriteString(line(0, long))
	for i := range 100000 {
		b.WriteString(line(1+i/1000, fmt.Sprintf("line %d", i)))
	}
	f := &scriptedFollower{streams: []followStream{{text: b.String()}, {text: b.String()}}}
	up := &recordingUploader{}
	got := archiver(f, up, true).Archive(context.Background(), context.Background())
	if got.Failure != nil {
		t.Fatalf("failure: %+v", got.Failure)
	}
	stored := string(up.objects["ns/run/main-logs"])
	if !strings.HasPrefix(stored, long+"\nline 0\n") || !strings.HasSuffix(stored, "line 99999\n") || strings.Count(stored, "\n") != 100001 {
		t.Errorf("stored %d bytes, %d lines; want the long line whole and every line", len(stored), strings.Count(stored, "\n"))
	}
	if len(got.Result) > v1alpha1.MaxResultBytes || !strings.HasSuffix(got.Result, "line 99998\nline 99999\n") {
		t.Errorf("result is %d bytes ending %q", len(got.Result), got.Result[max(0, len(got.Result)-30):])
	}
}

func TestALogThatCannotBeFollowedFailsTheRunAsAnUnstoredArtifact(t *testing.T) {
	f := &scriptedFollower{streams: []followStream{{err: errors.New("boom")}, {err: errors.New("boom")}, {err: errors.New("boom")}}}
	a := archiver(f, &recordingUploader{}, true)
	a.Retries = 2
	got := a.Archive(context.Background(), context.Background())
	if got.Failure == nil || got.Failure.Phase != v1alpha1.StepRunError || got.Failure.Reason != v1alpha1.ReasonArtifactUploadFailed ||
		!strings.Contains(got.Failure.Message, "boom") || got.Artifact != nil {
		t.Errorf("got %+v, want Error/ArtifactUploadFailed with the cause", got)
	}
	up := &recordingUploader{err: errors.New("repository down")}
	got = archiver(&scriptedFollower{streams: []followStream{{text: line(0, "x")}, {text: line(0, "x")}}}, up, true).Archive(context.Background(), context.Background())
	if got.Failure == nil || !strings.Contains(got.Failure.Message, "repository down") {
		t.Errorf("a failed upload: got %+v", got)
	}
}

// servingFollower serves its text, then holds the stream open as the kubelet does for a log it
// is still reading, until the follow's context ends; blocked closes once the text is read.
type servingFollower struct {
	text    string
	blocked chan struct{}
}

func (f *servingFollower) Follow(ctx context.Context, _ *metav1.Time) (io.ReadCloser, error) {
	return io.NopCloser(io.MultiReader(strings.NewReader(f.text), &heldOpen{ctx: ctx, blocked: f.blocked})), nil
}

type heldOpen struct {
	ctx     context.Context
	blocked chan struct{}
}

func (h *heldOpen) Read([]byte) (int, error) {
	close(h.blocked)
	<-h.ctx.Done()
	return 0, h.ctx.Err()
}

func TestALogStillServedWhenReadingEndsIsStoredAsReadAndMarkedIncomplete(t *testing.T) {
	f := &servingFollower{text: line(0, "one") + line(1, "two"), blocked: make(chan struct{})}
	up := &recordingUploader{}
	read, stopReading := context.WithCancel(context.Background())
	go func() {
		<-f.blocked
		stopReading()
	}()
	got := archiver(f, up, false).Archive(context.Background(), read)
	if got.Failure != nil {
		t.Fatalf("failure: %+v, want what was read stored", got.Failure)
	}
	if stored := string(up.objects["ns/run/main-logs"]); stored != "one\ntwo\n" || got.Result != stored {
		t.Errorf("stored %q, result %q; want the lines read", stored, got.Result)
	}
	if a := got.Artifact; a == nil || a.Size != 8 || !strings.Contains(a.Incomplete, "grace ran out") {
		t.Errorf("artifact %+v, want it marked incomplete", a)
	}
}

func TestALogStoredWholeIsNotMarkedIncomplete(t *testing.T) {
	f := &scriptedFollower{streams: []followStream{{text: line(0, "x")}, {text: line(0, "x")}}}
	got := archiver(f, &recordingUploader{}, true).Archive(context.Background(), context.Background())
	if got.Artifact == nil || got.Artifact.Incomplete != "" {
		t.Errorf("artifact %+v, want it complete", got.Artifact)
	}
}

func TestAStoppedStoreFailsEvenWhenReadingStoppedToo(t *testing.T) {
	// The Pod was deleted: both end at once, and nothing may be reported as stored.
	f := &servingFollower{text: line(0, "one"), blocked: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-f.blocked
		cancel()
	}()
	got := archiver(f, &recordingUploader{}, false).Archive(ctx, ctx)
	if got.Failure == nil || got.Failure.Reason != v1alpha1.ReasonArtifactUploadFailed || got.Artifact != nil {
		t.Errorf("got %+v, want Error/ArtifactUploadFailed", got)
	}
}

func TestALineTheStreamBrokeInIsStoredOnceAndWhole(t *testing.T) {
	partial := line(1200, "second half")
	f := &scriptedFollower{streams: []followStream{
		{text: line(100, "first") + partial[:len(partial)-6], err: errors.New("connection reset by peer")},
		{text: line(100, "first") + partial + line(1300, "third")},
		{text: line(1300, "third")},
	}}
	up := &recordingUploader{}
	if got := archiver(f, up, true).Archive(context.Background(), context.Background()); got.Failure != nil {
		t.Fatalf("failure: %+v", got.Failure)
	}
	if stored := string(up.objects["ns/run/main-logs"]); stored != "first\nsecond half\nthird\n" {
		t.Errorf("stored %q, want each line once and whole", stored)
	}
}
