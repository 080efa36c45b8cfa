package podlogs

import (
	"bytes"
	"context"
	"io"
)

// Job reads one log, writing its lines to out and any note about it to notes.
type Job func(ctx context.Context, out, notes *Writer) error

// Ordered runs jobs up to window at a time and writes their output in the jobs' order, so a
// WorkflowRun's logs read step after step while several are fetched at once. At most window
// logs are held in memory: a slot is freed only once its log is written out.
func Ordered(ctx context.Context, jobs []Job, window int, stdout, stderr io.Writer, color bool, prefixWidth int) error {
	type result struct {
		out, notes bytes.Buffer
		err        error
	}
	results := make([]chan *result, len(jobs))
	for i := range results {
		results[i] = make(chan *result, 1)
	}
	slots := make(chan struct{}, max(window, 1))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for i, job := range jobs {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			go func() {
				r := &result{}
				out, notes := NewWriter(&r.out, color), NewWriter(&r.notes, color)
				out.width, notes.width = prefixWidth, prefixWidth
				r.err = job(ctx, out, notes)
				results[i] <- r
			}()
		}
	}()
	for i := range jobs {
		var r *result
		select {
		case r = <-results[i]:
		case <-ctx.Done():
			return ctx.Err()
		}
		if _, err := r.out.WriteTo(stdout); err != nil {
			return err
		}
		if _, err := r.notes.WriteTo(stderr); err != nil {
			return err
		}
		<-slots
		if r.err != nil {
			return r.err
		}
	}
	return nil
}
