// Package logfollow follows a container's log through the Pod log API to its container's end,
// resuming a follow that broke from its last line's timestamp without losing or repeating a
// line. The executor archives main's log with it; kubectl pnsflow logs -f prints it.
package logfollow

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Opener opens the log as the kubelet keeps it (stdout and stderr in order), each line prefixed
// with its RFC 3339 timestamp, following it until the container ends; from since when set.
type Opener interface {
	Follow(ctx context.Context, since *metav1.Time) (io.ReadCloser, error)
}

// Follower copies a container's log from its start to its end.
type Follower struct {
	Logs Opener
	// Terminated returns nil once the container has ended, and waits for it until ctx ends.
	Terminated func(context.Context) error
	// Retries bounds reconnections after a follow broke with an error; zero means 5.
	Retries int
	// Backoff is the wait before a reconnection; zero means a second.
	Backoff time.Duration
	// Resuming, when set, is told before each reconnection why the follow ended: its error, or
	// nil when it ended cleanly while the container runs.
	Resuming func(cause error)
}

var (
	// ErrCut: reading stopped because its context ended while the copy's own had not.
	ErrCut = errors.New("reading the log ran out of time")
	// errWrite marks a failed write, which ends the copy at once.
	errWrite = errors.New("writing the log")
)

// Copy writes the log, without the timestamps, to w until a follow ends with the container.
// Follows run under read: when read ends before ctx, Copy returns ErrCut with every line read so
// far written whole. A write error is returned wrapped, as it is.
func (f *Follower) Copy(ctx, read context.Context, w io.Writer) error {
	retries, backoff := f.Retries, f.Backoff
	if retries <= 0 {
		retries = 5
	}
	if backoff <= 0 {
		backoff = time.Second
	}
	log := logr.FromContextOrDiscard(ctx)
	var last lastLine
	// afterEnd: the follow began once the container was known to have ended, so it read the
	// whole file.
	afterEnd := false
	for failures := 0; ; {
		var since *metav1.Time
		if t := last.time(); !t.IsZero() {
			since = &metav1.Time{Time: t}
		}
		err := f.followOnce(read, since, w, &last)
		switch {
		case errors.Is(err, errWrite), ctx.Err() != nil:
			return err
		case read.Err() != nil:
			return ErrCut
		case err == nil && afterEnd:
			return nil
		case err == nil && f.ended(read, backoff):
			// The kubelet ends a follow as soon as it sees the container exited, which can be
			// before the runtime has written its last lines to the file: one more read takes them.
			afterEnd = true
			continue
		case err != nil:
			if failures++; failures > retries {
				return fmt.Errorf("following the log: %w", err)
			}
			log.Info("Following the log broke; resuming", "error", err.Error(), "after", string(last.raw))
		default:
			log.Info("The log ended while its container runs; resuming", "after", string(last.raw))
		}
		if f.Resuming != nil {
			f.Resuming(err)
		}
		select {
		case <-read.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return ErrCut
		case <-time.After(backoff):
		}
	}
}

// IsWriteError reports whether Copy ended because writing to its writer failed.
func IsWriteError(err error) bool { return errors.Is(err, errWrite) }

// ended: the follow ended cleanly; it is the container's end unless it is still running.
func (f *Follower) ended(ctx context.Context, wait time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	return f.Terminated(ctx) == nil
}

// lastLine is the timestamp of the last line written, kept as the kubelet wrote it and parsed
// only when a follow is resumed: most logs are never resumed, and parsing millions of
// timestamps would cost seconds of CPU. Lines written fast can share a timestamp, so it also
// counts the lines written with exactly this one.
type lastLine struct {
	raw  []byte
	same int
}

func (l *lastLine) set(ts []byte) {
	if bytes.Equal(l.raw, ts) {
		l.same++
		return
	}
	l.raw, l.same = append(l.raw[:0], ts...), 1
}

func (l *lastLine) time() time.Time {
	t, _ := time.Parse(time.RFC3339Nano, string(l.raw))
	return t
}

// replay tells, line by line, which lines of a resumed follow were written already: those
// before the last line's time, and as many at that time as were written.
type replay struct {
	on    bool
	after time.Time
	same  int
}

// newReplay replays a follow resumed since the last line's time (nil: not resumed), of which
// same lines were written.
func newReplay(since *metav1.Time, same int) replay {
	if since == nil {
		return replay{}
	}
	return replay{on: true, after: since.Time, same: same}
}

// written reports whether the line stamped ts was written before; once a line is new, all are.
func (r *replay) written(ts []byte) bool {
	if !r.on {
		return false
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	switch {
	case err != nil || t.After(r.after):
		r.on = false
	case t.Equal(r.after):
		if r.same == 0 {
			r.on = false
		} else {
			r.same--
		}
	}
	return r.on
}

// followOnce copies one follow stream and advances *last. A resumed follow (since set) starts at
// the second of the last line written, which the API cannot say more finely: the lines written
// already are skipped.
func (f *Follower) followOnce(ctx context.Context, since *metav1.Time, w io.Writer, last *lastLine) error {
	stream, err := f.Logs.Follow(ctx, since)
	if err != nil {
		return err
	}
	defer stream.Close()
	r := bufio.NewReaderSize(stream, 64*1024)
	seen := newReplay(since, last.same)
	atLineStart, skipping := true, false
	for {
		raw, err := r.ReadSlice('\n')
		if broken(err) && atLineStart && !bytes.HasSuffix(raw, []byte{'\n'}) {
			// A line the stream broke in: not written, so a resumed follow sends it whole.
			raw = nil
		}
		if chunk := raw; len(chunk) > 0 {
			if atLineStart {
				if ts, rest, ok := splitTimestamp(chunk); ok {
					if skipping = seen.written(ts); !skipping {
						last.set(ts)
					}
					chunk = rest
				}
			}
			if !skipping {
				if _, werr := w.Write(chunk); werr != nil {
					return fmt.Errorf("%w: %w", errWrite, werr)
				}
			}
			atLineStart = raw[len(raw)-1] == '\n'
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
			// A line longer than the buffer goes on in the next chunk.
		case errors.Is(err, io.EOF):
			return nil
		default:
			return err
		}
	}
}

// broken: the stream ended with an error rather than cleanly or at a full buffer.
func broken(err error) bool {
	return err != nil && !errors.Is(err, bufio.ErrBufferFull) && !errors.Is(err, io.EOF)
}

// splitTimestamp splits the kubelet's "<RFC 3339 time> " prefix off a log line; it checks the
// prefix's shape, not its value (parsed only when a follow is resumed).
func splitTimestamp(line []byte) (ts, rest []byte, ok bool) {
	i := bytes.IndexByte(line, ' ')
	if i < len("2006-01-02T15:04:05Z") || i > len("2006-01-02T15:04:05.999999999-07:00") ||
		line[4] != '-' || line[7] != '-' || line[10] != 'T' || line[13] != ':' {
		return nil, line, false
	}
	return line[:i], line[i+1:], true
}
