package podlogs

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	. "github.com/pnsflow/pnsflow/internal/logfollow/logfollowtest"
)

// scriptedSource serves a Pod's follows in turn; main has ended once endedAfter of them were
// opened, and everything is gone once gone is set.
type scriptedSource struct {
	mu         sync.Mutex
	follows    []Stream
	endedAfter int
	opened     []Options
	gone       bool
}

func (s *scriptedSource) Open(_ context.Context, _, pod string, o Options) (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opened = append(s.opened, o)
	if s.gone || len(s.follows) == 0 {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, pod)
	}
	st := s.follows[0]
	s.follows = s.follows[1:]
	if errors.Is(st.Err, errRefused) {
		return nil, st.Err
	}
	return st.Open(), nil
}

// errRefused: a follow that cannot even be opened (the API server is down).
var errRefused = errors.New("connection refused")

func (s *scriptedSource) MainEnded(context.Context, string, string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.opened) >= s.endedAfter || s.gone, nil
}

func readFollow(t *testing.T, src Source, tail *int64, notes ...*[]string) (string, error) {
	t.Helper()
	var note func(string)
	if len(notes) > 0 {
		note = func(s string) { *notes[0] = append(*notes[0], s) }
	}
	rc, err := Follow(context.Background(), src, "ns", "s-pod", tail, note)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return string(b), err
}

func TestFollowResumesACutFollowWithoutLosingOrRepeatingALine(t *testing.T) {
	src := &scriptedSource{endedAfter: 5, follows: []Stream{
		{Text: Line(0, "one") + Line(1, "two") + At(1).Format(time.RFC3339Nano) + " thr", Err: errors.New("unexpected EOF")},
		// The API server is down a while: the reconnections fail.
		{Err: errRefused},
		{Err: errRefused},
		// Resumed from the second of "two": the kubelet sends that second again.
		{Text: Line(0, "one") + Line(1, "two") + Line(1, "three") + Line(1500, "four")},
		// Cut cleanly while main runs (an API server's timeout).
		{Text: Line(1500, "four") + Line(2100, "five")},
		// Main has ended: one more read takes the lines the runtime wrote last.
		{Text: Line(2100, "five") + Line(2200, "six")},
	}}
	var notes []string
	got, err := readFollow(t, src, nil, &notes)
	if err != nil {
		t.Fatal(err)
	}
	if want := "one\ntwo\nthree\nfour\nfive\nsix\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	// Said once for each break (not for each failed reconnection), not for the read after main's
	// end.
	wantNotes := []string{
		"following the log of pod s-pod broke: unexpected EOF; resuming after the last line printed",
		"following the log of pod s-pod ended while main runs; resuming after the last line printed",
	}
	if !slices.Equal(notes, wantNotes) {
		t.Errorf("notes %q, want %q", notes, wantNotes)
	}
	if len(src.opened) != 6 {
		t.Fatalf("opened %d follows, want 6: %+v", len(src.opened), src.opened)
	}
	for i, o := range src.opened {
		if !o.Follow || !o.Timestamps {
			t.Errorf("follow %d: %+v, want follow with timestamps", i, o)
		}
	}
	if src.opened[0].SinceTime != nil {
		t.Errorf("the first follow asked since %v, want the log's start", src.opened[0].SinceTime)
	}
	for i, ms := range map[int]int{1: 1, 2: 1, 3: 1, 4: 1500, 5: 2100} {
		if since := src.opened[i].SinceTime; since == nil || !since.Time.Equal(At(ms)) {
			t.Errorf("follow %d asked since %v, want the last line's time %v", i, since, At(ms))
		}
	}
}

func TestFollowAsksTheTailOnlyUntilALineIsRead(t *testing.T) {
	tail := int64(2)
	src := &scriptedSource{endedAfter: 2, follows: []Stream{{Err: errors.New("connection reset")}, {Text: Line(5, "last")}}}
	got, err := readFollow(t, src, &tail)
	if err != nil {
		t.Fatal(err)
	}
	if got != "last\n" {
		t.Errorf("got %q", got)
	}
	if len(src.opened) != 3 {
		t.Fatalf("opened %d follows, want 3: %+v", len(src.opened), src.opened)
	}
	for i, o := range src.opened[:2] {
		if o.TailLines == nil || *o.TailLines != 2 {
			t.Errorf("follow %d asked %v lines, want the tail of 2 (no line was read before it)", i, o.TailLines)
		}
	}
	if o := src.opened[2]; o.TailLines != nil || o.SinceTime == nil {
		t.Errorf("the follow after a line was read: %+v, want since its time and no tail", o)
	}
}

func TestFollowEndsWhereThePodWasDeleted(t *testing.T) {
	src := &scriptedSource{endedAfter: 100, follows: []Stream{{Text: Line(0, "one"), Err: errors.New("stream closed")}}}
	rc, err := Follow(context.Background(), src, "ns", "s-pod", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	src.mu.Lock()
	src.gone = true
	src.mu.Unlock()
	b, err := io.ReadAll(rc)
	if err != nil || string(b) != "one\n" {
		t.Errorf("got %q, %v; want the line read before the Pod went, and a clean end", b, err)
	}
}

func TestFollowOfAPodThatIsGoneFailsAsOpenDoes(t *testing.T) {
	_, err := readFollow(t, &scriptedSource{gone: true}, nil)
	if !IsGone(err) {
		t.Errorf("got %v, want the Pod's NotFound", err)
	}
}
