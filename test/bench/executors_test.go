//go:build bench

package bench

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"k8s.io/client-go/rest"

	"github.com/pnsflow/pnsflow/internal/executor"
	"github.com/pnsflow/pnsflow/internal/podspec"
)

// playExecutors does what each Pod's pns-executor does on the happy path, through its Reporter:
// report Running (the first report records the Pod and the executor's privileges), then the
// terminal outcome — a bounded pool of them at once.
func (b *bench) playExecutors(ctx context.Context, ns string, names []string, obs *observation) error {
	cfg := b.executorConfig(ns)
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	work := make(chan string)
	for range min(b.s.executors, len(names)) {
		wg.Go(func() {
			for name := range work {
				err := b.playExecutor(ctx, cfg, ns, name)
				now := time.Now()
				mu.Lock()
				if err != nil {
					obs.failures++
					if first == nil {
						first = fmt.Errorf("executor of %s: %w", name, err)
					}
				} else {
					obs.completions = append(obs.completions, now)
				}
				mu.Unlock()
			}
		})
	}
	for _, name := range names {
		select {
		case work <- name:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	slices.SortFunc(obs.completions, time.Time.Compare)
	if first != nil {
		return fmt.Errorf("%d of %d executors failed, the first: %w", obs.failures, len(names), first)
	}
	return ctx.Err()
}

func (b *bench) playExecutor(ctx context.Context, cfg *rest.Config, ns, name string) error {
	r, err := executor.NewReporter(cfg, ns, name)
	if err != nil {
		return err
	}
	r.Info = executor.RunInfo{Pod: podspec.PodName(name), Privilege: b.privilege}
	started := time.Now()
	if err := r.ReportRunning(ctx, started); err != nil {
		return fmt.Errorf("reporting Running: %w", err)
	}
	outcome := executor.Decide(executor.Termination{ExitCode: 0, Reason: "Completed", StartedAt: started, FinishedAt: time.Now()},
		executor.Collected{}, nil, 0)
	if err := r.ReportTerminal(ctx, outcome); err != nil {
		return fmt.Errorf("reporting %s: %w", outcome.Phase, err)
	}
	return nil
}
