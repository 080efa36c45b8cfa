package executor

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
	"k8s.io/client-go/rest"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

// LogFollower opens main's log as the kubelet keeps it (stdout and stderr in order), each line
// prefixed with its RFC 3339 timestamp, following it until main ends; from since when set.
type LogFollower interface {
	Follow(ctx context.Context, since *metav1.Time) (io.ReadCloser, error)
}

// LogArchiver streams main's log into the repository while main runs, so it outlives the Pod
// and the kubelet's log rotation, and keeps its tail for status.outputs.result.
type LogArchiver struct {
	Logs     LogFollower
	Uploader Uploader
	Key      string
	// MainStarted waits until main has started; MainTerminated until it has ended.
	MainStarted    func(context.Context) error
	MainTerminated func(context.Context) error
	// MaxResult caps the result; zero means v1alpha1.MaxResultBytes.
	MaxResult int
	// Retries bounds reconnections after a follow broke with an error; zero means 5.
	Retries int
	// Backoff is the wait before a reconnection; zero means a second.
	Backoff time.Duration
}

// ArchivedLog is what archiving gave: the stored artifact and the log's tail, or why not.
type ArchivedLog struct {
	Artifact *v1alpha1.ArtifactStatus
	Result   string
	Failure  *Failure
}

// Archive follows main's log from its start to its end into the repository. A follow that
// ends before main has (a dropped connection) is resumed from the last line's timestamp,
// skipping the lines already stored. Reading stops when read ends, storing stops when ctx does:
// a log still being served when read ends is stored as read so far, marked incomplete, rather
// than lost with the step's report.
func (a *LogArchiver) Archive(ctx, read context.Context) ArchivedLog {
	fail := func(err error) ArchivedLog {
		return ArchivedLog{Failure: &Failure{Phase: v1alpha1.StepRunError, Reason: v1alpha1.ReasonArtifactUploadFailed,
			Message: fmt.Sprintf("archiving main's log as %s: %v", a.Key, err)}}
	}
	if err := a.MainStarted(ctx); err != nil {
		return fail(fmt.Errorf("main never started: %w", err))
	}
	max := a.MaxResult
	if max <= 0 {
		max = v1alpha1.MaxResultBytes
	}
	tail := &tailBuffer{buf: make([]byte, max)}
	pr, pw := io.Pipe()
	type upload struct {
		size int64
		sum  string
		err  error
	}
	uploaded := make(chan upload, 1)
	go func() {
		size, sum, err := a.Uploader.Upload(ctx, a.Key, executorconfig.ArchiveNone, pr)
		// Unblocks the follower if the upload stopped reading early.
		pr.CloseWithError(errUploadStopped)
		uploaded <- upload{size, sum, err}
	}()
	// Buffered: a log of millions of short lines would otherwise cost a pipe hand-over each.
	bw := bufio.NewWriterSize(io.MultiWriter(pw, tail), 64*1024)
	started := time.Now()
	copyErr := a.copyLog(ctx, read, bw)
	incomplete := ""
	if errors.Is(copyErr, errReadCut) {
		incomplete = "the executor's grace ran out while the kubelet was still serving main's log: the archive holds what was read until then"
		copyErr = nil
	}
	if copyErr == nil {
		if err := bw.Flush(); err != nil {
			copyErr = errUploadStopped
		}
	}
	pw.CloseWithError(copyErr)
	up := <-uploaded
	switch {
	case copyErr != nil && !errors.Is(copyErr, errUploadStopped):
		return fail(copyErr)
	case up.err != nil:
		return fail(up.err)
	}
	logr.FromContextOrDiscard(ctx).Info("Archived main's log", "key", a.Key, "bytes", up.size,
		"took", time.Since(started).Round(time.Millisecond).String(), "incomplete", incomplete != "")
	return ArchivedLog{
		Artifact: &v1alpha1.ArtifactStatus{Name: v1alpha1.MainLogsArtifact, Key: a.Key, Size: up.size, SHA256: up.sum,
			Archive: executorconfig.ArchiveNone, Incomplete: incomplete},
		Result: tailText(tail, max),
	}
}

var (
	errUploadStopped = errors.New("the upload stopped reading")
	// errReadCut: reading stopped at its deadline while storing may still go on.
	errReadCut = errors.New("reading main's log ran out of time")
)

// copyLog writes main's log, without the timestamps, to w until the follow ends with main, or
// until read ends (errReadCut when ctx has not).
func (a *LogArchiver) copyLog(ctx, read context.Context, w io.Writer) error {
	retries, backoff := a.Retries, a.Backoff
	if retries <= 0 {
		retries = 5
	}
	if backoff <= 0 {
		backoff = time.Second
	}
	log := logr.FromContextOrDiscard(ctx)
	var last lastLine
	// afterMain: the follow began once main was known to have ended, so it read the whole file.
	afterMain := false
	for failures := 0; ; {
		var since *metav1.Time
		if t := last.time(); !t.IsZero() {
			since = &metav1.Time{Time: t}
		}
		err := a.followOnce(read, since, w, &last)
		switch {
		case errors.Is(err, errUploadStopped), ctx.Err() != nil:
			return err
		case read.Err() != nil:
			return errReadCut
		case err == nil && afterMain:
			return nil
		case err == nil && a.ended(read, backoff):
			// The kubelet ends a follow as soon as it sees main exited, which can be before the
			// runtime has written main's last lines to the file: one more read takes them.
			afterMain = true
			continue
		case err != nil:
			if failures++; failures > retries {
				return fmt.Errorf("following main's log: %w", err)
			}
			log.Info("Following main's log broke; resuming", "error", err.Error(), "after", string(last.raw))
		default:
			log.Info("Main's log ended while main runs; resuming", "after", string(last.raw))
		}
		select {
		case <-read.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return errReadCut
		case <-time.After(backoff):
		}
	}
}

// ended: the follow ended cleanly; it is main's end unless main is still running.
func (a *LogArchiver) ended(ctx context.Context, wait time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	return a.MainTerminated(ctx) == nil
}

// lastLine is the timestamp of the last line stored, kept as the kubelet wrote it and parsed
// only when a follow is resumed: most logs are never resumed, and parsing millions of
// timestamps would cost the executor seconds of CPU. Lines written fast can share a timestamp,
// so it also counts the lines stored with exactly this one.
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

// replay tells, line by line, which lines of a resumed follow were stored already: those before
// the last line's time, and as many at that time as were stored.
type replay struct {
	on    bool
	after time.Time
	same  int
}

// newReplay replays a follow resumed since the last line's time (nil: not resumed), of which
// same lines were stored.
func newReplay(since *metav1.Time, same int) replay {
	if since == nil {
		return replay{}
	}
	return replay{on: true, after: since.Time, same: same}
}

// stored reports whether the line stamped ts was stored before; once a line is new, all are.
func (r *replay) stored(ts []byte) bool {
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
// the second of the last line stored, which the API cannot say more finely: the lines stored
// already are skipped.
func (a *LogArchiver) followOnce(ctx context.Context, since *metav1.Time, w io.Writer, last *lastLine) error {
	stream, err := a.Logs.Follow(ctx, since)
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
			// A line the stream broke in: not stored, so a resumed follow sends it whole.
			raw = nil
		}
		if chunk := raw; len(chunk) > 0 {
			if atLineStart {
				if ts, rest, ok := splitTimestamp(chunk); ok {
					if skipping = seen.stored(ts); !skipping {
						last.set(ts)
					}
					chunk = rest
				}
			}
			if !skipping {
				if _, werr := w.Write(chunk); werr != nil {
					return errUploadStopped
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

// Follow opens main's log with timestamps, following it.
func (l *PodLogs) Follow(ctx context.Context, since *metav1.Time) (io.ReadCloser, error) {
	req := l.client.Get().Namespace(l.namespace).Resource("pods").Name(l.pod).SubResource("log").
		Param("container", executorconfig.MainContainer).
		Param("follow", "true").
		Param("timestamps", "true")
	if since != nil {
		req = req.Param("sinceTime", since.UTC().Format(time.RFC3339))
	}
	stream, err := req.Stream(ctx)
	if err != nil {
		return nil, fmt.Errorf("following main's log: %w", err)
	}
	return stream, nil
}

var _ LogFollower = (*PodLogs)(nil)

// newLogArchiver archives main's log as key, through the executor's Pod client.
func newLogArchiver(core rest.Interface, c executorconfig.Config, pod PodStatus, up Uploader) *LogArchiver {
	return &LogArchiver{
		Logs:     NewPodLogsForClient(core, c.Namespace, c.Pod),
		Uploader: up,
		Key:      c.Logs.Key,
		MainStarted: func(ctx context.Context) error {
			_, err := pod.MainStarted(ctx)
			return err
		},
		MainTerminated: func(ctx context.Context) error {
			_, err := pod.MainTerminated(ctx)
			return err
		},
	}
}
