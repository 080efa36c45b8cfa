package executor

import (
	"bufio"
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
	"github.com/pnsflow/pnsflow/internal/logfollow"
)

// LogArchiver streams main's log into the repository while main runs, so it outlives the Pod
// and the kubelet's log rotation, and keeps its tail for status.outputs.result.
type LogArchiver struct {
	Logs     logfollow.Opener
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
	follow := logfollow.Follower{Logs: a.Logs, Terminated: a.MainTerminated, Retries: a.Retries, Backoff: a.Backoff}
	copyErr := follow.Copy(ctx, read, bw)
	incomplete := ""
	if errors.Is(copyErr, logfollow.ErrCut) {
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

var errUploadStopped = errors.New("the upload stopped reading")

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

var _ logfollow.Opener = (*PodLogs)(nil)

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
