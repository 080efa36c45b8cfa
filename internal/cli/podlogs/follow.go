package podlogs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pnsflow/pnsflow/internal/logfollow"
)

// followRetries bounds the reconnections after errors, a second apart: an API server restart
// takes tens of seconds.
const followRetries = 60

// errMainRuns: the follow ended while main still runs (the API server or kubelet cut it).
var errMainRuns = errors.New("main is still running")

// Follow opens main's log and follows it until main has ended. A follow that the API server or
// the kubelet cuts while main runs (a restart, a timeout, a proxy) is resumed from the last
// line's timestamp, so no line is lost or printed twice; note, when set, is told once per break.
// Opening fails as Source.Open does; a Pod deleted while it is followed ends the log there.
func Follow(ctx context.Context, src Source, namespace, pod string, tail *int64, note func(string)) (io.ReadCloser, error) {
	first, err := src.Open(ctx, namespace, pod, Options{Follow: true, Timestamps: true, TailLines: tail})
	if err != nil {
		return nil, err
	}
	o := &resumer{src: src, namespace: namespace, pod: pod, tail: tail, first: first}
	f := logfollow.Follower{Logs: o, Retries: followRetries, Resuming: func(cause error) {
		// Said once per break: the reconnections that fail while the API server is down are not.
		if note == nil || o.broken.Swap(true) {
			return
		}
		why := "ended while main runs"
		if cause != nil {
			why = "broke: " + cause.Error()
		}
		note(fmt.Sprintf("following the log of pod %s %s; resuming after the last line printed", pod, why))
	}, Terminated: func(ctx context.Context) error {
		ended, err := src.MainEnded(ctx, namespace, pod)
		switch {
		case err != nil:
			return err
		case !ended:
			return errMainRuns
		}
		return nil
	}}
	pr, pw := io.Pipe()
	go func() {
		err := f.Copy(ctx, ctx, pw)
		if err != nil && !logfollow.IsWriteError(err) {
			err = fmt.Errorf("following the log of pod %s: %w", pod, err)
		}
		pw.CloseWithError(err)
	}()
	return pr, nil
}

// resumer opens the follows of one log: the one Follow opened first, then resumed ones.
type resumer struct {
	src            Source
	namespace, pod string
	tail           *int64
	mu             sync.Mutex
	first          io.ReadCloser
	// broken: the log is being reconnected, and that was said.
	broken atomic.Bool
}

func (r *resumer) Follow(ctx context.Context, since *metav1.Time) (io.ReadCloser, error) {
	r.mu.Lock()
	first := r.first
	r.first = nil
	r.mu.Unlock()
	if first != nil {
		return first, nil
	}
	o := Options{Follow: true, Timestamps: true, SinceTime: since}
	if since == nil {
		o.TailLines = r.tail // nothing was read yet: the same part of the log as asked
	}
	rc, err := r.src.Open(ctx, r.namespace, r.pod, o)
	if IsGone(err) {
		return io.NopCloser(strings.NewReader("")), nil
	}
	if err == nil {
		r.broken.Store(false)
	}
	return rc, err
}
