package manager

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

// ErrLeaderElectionLost is returned by Run when the manager lost its leader lease: the process
// must exit. controller-runtime stops a manager that lost its lease without waiting for its
// reconciles, so only the end of the process guarantees that nothing of the old leader still
// writes while another replica leads.
var ErrLeaderElectionLost = errors.New("leader election lost")

// Run runs the manager until ctx ends, riding out API server outages: it never returns because
// the API server is unreachable, at start or later. Requests wait at a gate while the API server
// does not answer (see apiGate: one prober retries with a back-off capped at 5 s and logs each
// attempt), so the manager resumes within seconds of its return; a manager that fails anyway
// (say its caches cannot sync) is rebuilt after the same back-off. It serves the liveness probe
// from the start, and the readiness probe passes only while the API server is reachable and the
// manager is started with its caches synced. Run returns nil when ctx ends, ErrInvalidOptions
// for a mistake in o, and ErrLeaderElectionLost when the lease was lost.
func Run(ctx context.Context, cfg *rest.Config, o Options) error {
	log := ctrl.LoggerFrom(ctx).WithName("run")
	if o.Pod.ExecutorImage == "" {
		return fmt.Errorf("%w: no executor image: set --executor-image or PNSFLOW_EXECUTOR_IMAGE", ErrInvalidOptions)
	}
	probe, err := readyzProbe(cfg)
	if err != nil {
		return err
	}
	// The gate's prober and every request held at it end with Run.
	gateCtx, stopGate := context.WithCancel(ctx)
	defer stopGate()
	gate := newAPIGate(log.WithName("api-gate"), probe, gateCtx.Done())
	go gate.run(gateCtx)
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(gate.wrap)

	var current atomic.Pointer[readiness]
	current.Store(&readiness{gate: gate})
	if o.ProbeAddr != "" && o.ProbeAddr != "0" {
		stop, err := serveProbes(o.ProbeAddr, func(req *http.Request) error { return current.Load().check(req) })
		if err != nil {
			return err
		}
		defer stop()
		// This server outlives each manager Run builds, so liveness holds while it rebuilds.
		o.ProbeAddr = "0"
	}

	var delay time.Duration
	for attempt := 1; ; attempt++ {
		ready := &readiness{gate: gate}
		current.Store(ready)
		err := runOnce(ctx, cfg, o, ready)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrInvalidOptions), errors.Is(err, ErrLeaderElectionLost):
			return err
		}
		delay = nextDelay(delay)
		log.Error(err, "The manager stopped; building a new one", "attempt", attempt, "retryIn", delay.String())
		if !sleep(ctx, delay) {
			return nil
		}
		// The next manager registers the same controller names in this process.
		o.SkipNameValidation = true
	}
}

// runOnce builds one manager and runs it until ctx ends or it fails.
func runOnce(ctx context.Context, cfg *rest.Config, o Options, ready *readiness) error {
	mgr, err := build(cfg, o, ready)
	if err != nil {
		return err
	}
	err = mgr.Start(ctx)
	// controller-runtime's error for a lost lease has no sentinel of its own.
	if err != nil && strings.Contains(err.Error(), ErrLeaderElectionLost.Error()) {
		return fmt.Errorf("%w: %w", ErrLeaderElectionLost, err)
	}
	return err
}

// serveProbes serves /healthz (always OK while the process runs) and /readyz (ready) on addr
// until the returned func is called.
func serveProbes(addr string, ready healthz.Checker) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for probes on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	for path, check := range map[string]healthz.Checker{"/healthz": healthz.Ping, "/readyz": ready} {
		h := http.StripPrefix(path, &healthz.Handler{Checks: map[string]healthz.Checker{strings.TrimPrefix(path, "/"): check}})
		mux.Handle(path, h)
		mux.Handle(path+"/", h)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

// readiness says whether one manager can do its work: the API server reachable (when Run put a
// gate in front of it), the manager started and its caches synced. A replica standing by for the
// lease keeps its caches synced too (a warm standby), so it is ready to take over at once, with
// no list of every run and Pod to wait for; one that is not ready would take over cold.
type readiness struct {
	gate    *apiGate
	started atomic.Bool
	synced  atomic.Bool
}

// track registers with mgr what tells started and synced.
func (r *readiness) track(mgr ctrl.Manager) error {
	if err := mgr.Add(startedMarker{r}); err != nil {
		return fmt.Errorf("adding the readiness tracker: %w", err)
	}
	if err := mgr.Add(syncWaiter{r: r, cache: mgr.GetCache()}); err != nil {
		return fmt.Errorf("adding the readiness tracker: %w", err)
	}
	return nil
}

func (r *readiness) check(_ *http.Request) error {
	switch {
	case r.gate != nil && !r.gate.isUp():
		return errors.New("the API server is unreachable")
	case !r.started.Load():
		return errors.New("the manager is starting")
	case !r.synced.Load():
		return errors.New("the caches have not synced yet")
	}
	return nil
}

// startedMarker runs once the manager's caches have started, leader or not.
type startedMarker struct{ r *readiness }

func (m startedMarker) Start(ctx context.Context) error {
	m.r.started.Store(true)
	<-ctx.Done()
	return nil
}

func (startedMarker) NeedLeaderElection() bool { return false }

// syncWaiter starts, on every replica, the informers of every kind the controllers watch, and
// marks the caches synced once they have listed.
type syncWaiter struct {
	r     *readiness
	cache cache.Cache
}

func (w syncWaiter) Start(ctx context.Context) error {
	for _, obj := range []client.Object{&v1alpha1.StepRun{}, &v1alpha1.WorkflowRun{}, &corev1.Pod{}} {
		for delay := time.Duration(0); ; {
			if _, err := w.cache.GetInformer(ctx, obj); err == nil {
				break
			} else if ctx.Err() != nil {
				return nil
			} else {
				delay = nextDelay(delay)
				ctrl.LoggerFrom(ctx).Info("Waiting for an informer to sync", "kind", fmt.Sprintf("%T", obj), "retryIn", delay.String(), "error", err.Error())
			}
			if !sleep(ctx, delay) {
				return nil
			}
		}
	}
	if w.cache.WaitForCacheSync(ctx) {
		w.r.synced.Store(true)
	}
	return nil
}

func (syncWaiter) NeedLeaderElection() bool { return false }
