package logfollow

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	. "github.com/pnsflow/pnsflow/internal/logfollow/logfollowtest"
)

// follower follows logs; the container has ended when ended is set.
func follower(o Opener, ended bool) *Follower {
	return &Follower{Logs: o, Backoff: time.Millisecond, Terminated: func(ctx context.Context) error {
		if ended {
			return nil
		}
		<-ctx.Done()
		return ctx.Err()
	}}
}

func copyAll(t *testing.T, f *Follower) string {
	t.Helper()
	var b strings.Builder
	if err := f.Copy(context.Background(), context.Background(), &b); err != nil {
		t.Fatalf("Copy: %v", err)
	}
	return b.String()
}

func TestTheLogIsCopiedWithoutTimestampsAndReadOnceMoreAfterTheEnd(t *testing.T) {
	text := Line(0, "one") + Line(1, "two words") + Line(2, "")
	o := &Scripted{Streams: []Stream{{Text: text}, {Text: text}}}
	if got := copyAll(t, follower(o, true)); got != "one\ntwo words\n\n" {
		t.Errorf("copied %q", got)
	}
	if since := o.Since(); len(since) != 2 || since[0] != nil || !since[1].Time.Equal(At(2)) {
		t.Errorf("follows since %v, want from the start, then from the last line's time", since)
	}
}

func TestABrokenFollowResumesWithoutLosingOrRepeatingLines(t *testing.T) {
	o := &Scripted{Streams: []Stream{
		{Text: Line(100, "a") + Line(1200, "b"), Err: errors.New("connection reset by peer")},
		// Resumed from the second of "b": the API sends "b" again, then what came after.
		{Text: Line(1200, "b") + Line(1900, "c") + Line(2500, "d")},
		{Text: Line(2500, "d")},
	}}
	if got := copyAll(t, follower(o, true)); got != "a\nb\nc\nd\n" {
		t.Errorf("copied %q, want every line once", got)
	}
	if since := o.Since(); len(since) != 3 || since[0] != nil || !since[1].Time.Equal(At(1200)) {
		t.Errorf("follows since %v, want from the start, then from b's time", since)
	}
}

func TestLinesWrittenAfterTheKubeletEndedTheFollowAreCopied(t *testing.T) {
	// The kubelet saw the container exited before the runtime wrote "c" and "d" to the file.
	o := &Scripted{Streams: []Stream{
		{Text: Line(100, "a") + Line(1200, "b")},
		{Text: Line(1200, "b") + Line(1300, "c") + Line(2100, "d")},
	}}
	if got := copyAll(t, follower(o, true)); got != "a\nb\nc\nd\n" {
		t.Errorf("copied %q, want every line once", got)
	}
}

func TestAResumedFollowKeepsLinesThatShareTheLastWrittenLinesTime(t *testing.T) {
	o := &Scripted{Streams: []Stream{
		{Text: Line(5, "a") + Line(7, "b") + Line(7, "c"), Err: errors.New("unexpected EOF")},
		{Text: Line(5, "a") + Line(7, "b") + Line(7, "c") + Line(7, "d") + Line(7, "e") + Line(9, "f")},
		{Text: Line(9, "f")},
	}}
	if got := copyAll(t, follower(o, true)); got != "a\nb\nc\nd\ne\nf\n" {
		t.Errorf("copied %q, want every line once", got)
	}
}

func TestAFollowEndingWhileTheContainerRunsIsResumed(t *testing.T) {
	both := Line(0, "first") + Line(5, "second")
	o := &Scripted{Streams: []Stream{{Text: Line(0, "first")}, {Text: both}, {Text: both}}}
	f := follower(o, false)
	calls := 0
	f.Terminated = func(ctx context.Context) error {
		if calls++; calls == 1 {
			return errors.New("still running")
		}
		return nil
	}
	if got := copyAll(t, f); got != "first\nsecond\n" {
		t.Errorf("copied %q", got)
	}
}

func TestALineTheStreamBrokeInIsCopiedOnceAndWhole(t *testing.T) {
	partial := Line(1200, "second half")
	o := &Scripted{Streams: []Stream{
		{Text: Line(100, "first") + partial[:len(partial)-6], Err: errors.New("connection reset by peer")},
		{Text: Line(100, "first") + partial + Line(1300, "third")},
		{Text: Line(1300, "third")},
	}}
	if got := copyAll(t, follower(o, true)); got != "first\nsecond half\nthird\n" {
		t.Errorf("copied %q, want each line once and whole", got)
	}
}

func TestReadingCutShortReturnsErrCutWithTheLinesReadWritten(t *testing.T) {
	o := &Serving{Text: Line(0, "one") + Line(1, "two"), Blocked: make(chan struct{})}
	read, stop := context.WithCancel(context.Background())
	go func() {
		<-o.Blocked
		stop()
	}()
	var b strings.Builder
	if err := follower(o, false).Copy(context.Background(), read, &b); !errors.Is(err, ErrCut) {
		t.Errorf("Copy = %v, want ErrCut", err)
	}
	if b.String() != "one\ntwo\n" {
		t.Errorf("copied %q", b.String())
	}
	// The copy's own context ending is not a cut.
	ctx, cancel := context.WithCancel(context.Background())
	o = &Serving{Text: Line(0, "one"), Blocked: make(chan struct{})}
	go func() {
		<-o.Blocked
		cancel()
	}()
	if err := follower(o, false).Copy(ctx, ctx, &b); err == nil || errors.Is(err, ErrCut) {
		t.Errorf("Copy = %v, want the context's error", err)
	}
}

func TestAFollowThatKeepsBreakingFailsAfterItsRetries(t *testing.T) {
	boom := errors.New("boom")
	o := &Scripted{Streams: []Stream{{Err: boom}, {Err: boom}, {Err: boom}}}
	f := follower(o, true)
	f.Retries = 2
	if err := f.Copy(context.Background(), context.Background(), &strings.Builder{}); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("Copy = %v, want the follow's error", err)
	}
	if n := len(o.Since()); n != 3 {
		t.Errorf("%d follows, want 1 and 2 retries", n)
	}
}

func TestAWriteErrorEndsTheCopyAtOnce(t *testing.T) {
	o := &Scripted{Streams: []Stream{{Text: Line(0, "x")}, {Text: Line(0, "x")}}}
	err := follower(o, true).Copy(context.Background(), context.Background(), failingWriter{})
	if !IsWriteError(err) || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Copy = %v, want the write error", err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestSplitTimestampTakesOnlyTheKubeletsPrefix(t *testing.T) {
	for _, tc := range []struct {
		line, ts, rest string
		ok             bool
	}{
		{"2026-11-30T12:00:00.123456789Z hello\n", "2026-11-30T12:00:00.123456789Z", "hello\n", true},
		{"2026-11-30T12:00:00Z x", "2026-11-30T12:00:00Z", "x", true},
		{"2026-11-30T12:00:00.5+01:00 y", "2026-11-30T12:00:00.5+01:00", "y", true},
		{"hello world\n", "", "hello world\n", false},
		{"no-space-at-all", "", "no-space-at-all", false},
		{"2026/11/30T12:00:00Z z", "", "2026/11/30T12:00:00Z z", false},
	} {
		ts, rest, ok := splitTimestamp([]byte(tc.line))
		if string(ts) != tc.ts || string(rest) != tc.rest || ok != tc.ok {
			t.Errorf("splitTimestamp(%q) = %q, %q, %v", tc.line, ts, rest, ok)
		}
	}
}
