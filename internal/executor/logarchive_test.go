package executor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/logfollow"
	. "github.com/pnsflow/pnsflow/internal/logfollow/logfollowtest"
)

func archiver(f logfollow.Opener, up Uploader, mainDone bool) *LogArchiver {
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
	text := Line(0, "one") + Line(1, "two words") + Line(2, "")
	// Once main has ended, the log is read once more from its last line's second: all of it here.
	f := &Scripted{Streams: []Stream{{Text: text}, {Text: text}}}
	up := &recordingUploader{}
	got := archiver(f, up, true).Archive(context.Background(), context.Background())
	if got.Failure != nil {
		t.Fatalf("failure: %+v", got.Failure)
	}
	if stored := string(up.objects["ns/run/main-logs"]); stored != "one\ntwo words\n\n" {
		t.Errorf("stored %q", stored)
	}
	if len(f.Since()) != 2 || !f.Since()[1].Time.Equal(At(2)) {
		t.Errorf("follows since %v, want from the start, then from the last line's time", f.Since())
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

func TestLongLinesAndLargeLogsStayWholeAndTheResultIsTheTail(t *testing.T) {
	long := strings.Repeat("x", 200*1024)
	var b strings.Builder
	b.WriteString(Line(0, long))
	for i := range 100000 {
		b.WriteString(Line(1+i/1000, fmt.Sprintf("line %d", i)))
	}
	f := &Scripted{Streams: []Stream{{Text: b.String()}, {Text: b.String()}}}
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
	f := &Scripted{Streams: []Stream{{Err: errors.New("boom")}, {Err: errors.New("boom")}, {Err: errors.New("boom")}}}
	a := archiver(f, &recordingUploader{}, true)
	a.Retries = 2
	got := a.Archive(context.Background(), context.Background())
	if got.Failure == nil || got.Failure.Phase != v1alpha1.StepRunError || got.Failure.Reason != v1alpha1.ReasonArtifactUploadFailed ||
		!strings.Contains(got.Failure.Message, "boom") || got.Artifact != nil {
		t.Errorf("got %+v, want Error/ArtifactUploadFailed with the cause", got)
	}
	up := &recordingUploader{err: errors.New("repository down")}
	got = archiver(&Scripted{Streams: []Stream{{Text: Line(0, "x")}, {Text: Line(0, "x")}}}, up, true).Archive(context.Background(), context.Background())
	if got.Failure == nil || !strings.Contains(got.Failure.Message, "repository down") {
		t.Errorf("a failed upload: got %+v", got)
	}
}

func TestALogStillServedWhenReadingEndsIsStoredAsReadAndMarkedIncomplete(t *testing.T) {
	f := &Serving{Text: Line(0, "one") + Line(1, "two"), Blocked: make(chan struct{})}
	up := &recordingUploader{}
	read, stopReading := context.WithCancel(context.Background())
	go func() {
		<-f.Blocked
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
	f := &Scripted{Streams: []Stream{{Text: Line(0, "x")}, {Text: Line(0, "x")}}}
	got := archiver(f, &recordingUploader{}, true).Archive(context.Background(), context.Background())
	if got.Artifact == nil || got.Artifact.Incomplete != "" {
		t.Errorf("artifact %+v, want it complete", got.Artifact)
	}
}

func TestAStoppedStoreFailsEvenWhenReadingStoppedToo(t *testing.T) {
	// The Pod was deleted: both end at once, and nothing may be reported as stored.
	f := &Serving{Text: Line(0, "one"), Blocked: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-f.Blocked
		cancel()
	}()
	got := archiver(f, &recordingUploader{}, false).Archive(ctx, ctx)
	if got.Failure == nil || got.Failure.Reason != v1alpha1.ReasonArtifactUploadFailed || got.Artifact != nil {
		t.Errorf("got %+v, want Error/ArtifactUploadFailed", got)
	}
}
