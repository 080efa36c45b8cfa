// Package logfollowtest plays the Pod log API for tests of what follows logs.
package logfollowtest

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Stream is one follow: its text, then its end, err (nil: a clean end).
type Stream struct {
	Text string
	Err  error
}

// Scripted returns the next of Streams on each Follow and records each follow's since.
type Scripted struct {
	mu      sync.Mutex
	Streams []Stream
	since   []*metav1.Time
}

// Follow opens the next stream; with none left it fails.
func (s *Scripted) Follow(_ context.Context, since *metav1.Time) (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.since = append(s.since, since)
	if len(s.Streams) == 0 {
		return nil, errors.New("no more streams")
	}
	st := s.Streams[0]
	s.Streams = s.Streams[1:]
	return st.Open(), nil
}

// Open serves the stream: its text, then its end.
func (st Stream) Open() io.ReadCloser {
	return io.NopCloser(io.MultiReader(strings.NewReader(st.Text), endReader{st.Err}))
}

// Since is the since of each follow so far, nil for one from the start.
func (s *Scripted) Since() []*metav1.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*metav1.Time(nil), s.since...)
}

type endReader struct{ err error }

func (e endReader) Read([]byte) (int, error) {
	if e.err == nil {
		return 0, io.EOF
	}
	return 0, e.err
}

// Serving serves its text, then holds the stream open as the kubelet does for a log it is
// still reading, until the follow's context ends; Blocked closes once the text has been read.
type Serving struct {
	Text    string
	Blocked chan struct{}
}

// Follow opens the held stream.
func (s *Serving) Follow(ctx context.Context, _ *metav1.Time) (io.ReadCloser, error) {
	return io.NopCloser(io.MultiReader(strings.NewReader(s.Text), &heldOpen{ctx: ctx, blocked: s.Blocked})), nil
}

type heldOpen struct {
	ctx     context.Context
	blocked chan struct{}
	once    sync.Once
}

func (h *heldOpen) Read([]byte) (int, error) {
	h.once.Do(func() { close(h.blocked) })
	<-h.ctx.Done()
	return 0, h.ctx.Err()
}

// T0 is the time of the scripted logs' first line.
var T0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// Line is a kubelet log line at T0 + ms milliseconds.
func Line(ms int, text string) string {
	return At(ms).Format(time.RFC3339Nano) + " " + text + "\n"
}

// At is T0 + ms milliseconds.
func At(ms int) time.Time { return T0.Add(time.Duration(ms) * time.Millisecond) }
