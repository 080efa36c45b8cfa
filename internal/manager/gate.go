package manager

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
)

const (
	// firstRetryDelay and maxRetryDelay bound the back-off between attempts to reach the API
	// server (and to rebuild a failed manager): it resumes within maxRetryDelay of the API
	// server's return.
	firstRetryDelay = 250 * time.Millisecond
	maxRetryDelay   = 5 * time.Second
	// probeTimeout bounds one reachability probe, so a black-holed address is retried too.
	probeTimeout = 4 * time.Second
	// calmPeriod is how long the API server must stay reachable before a new outage starts its
	// back-off from firstRetryDelay again: a flapping server is probed no faster than the cap.
	calmPeriod = time.Minute
)

// nextDelay is the back-off after a wait of d: firstRetryDelay, then doubling up to maxRetryDelay.
func nextDelay(d time.Duration) time.Duration {
	if d <= 0 {
		return firstRetryDelay
	}
	return min(2*d, maxRetryDelay)
}

// apiGate holds the manager's requests while the API server is unreachable, so none of them
// fails into a back-off of its own. client-go's informers back off up to 30-60 s after repeated
// failures, and the controllers' work queues requeue a failed reconcile after up to 16 minutes;
// either would delay the manager long after the API server is back. Instead, the first request
// that cannot reach it closes the gate, one prober retries with a back-off capped at
// maxRetryDelay and logs each attempt, and every request waiting at the gate (and the one that
// failed, when it was never sent or is a read) goes on as soon as the prober gets an answer.
type apiGate struct {
	log   logr.Logger
	probe func(context.Context) error
	// stop ends every wait: the process is shutting down.
	stop <-chan struct{}
	// wake tells the prober the gate has closed.
	wake chan struct{}

	mu sync.Mutex
	// up is closed while the API server is believed reachable; a closed gate has a fresh one.
	up    chan struct{}
	since time.Time // when the gate last opened or closed
	cause error     // what closed it
}

func newAPIGate(log logr.Logger, probe func(context.Context) error, stop <-chan struct{}) *apiGate {
	up := make(chan struct{})
	close(up)
	return &apiGate{log: log, probe: probe, stop: stop, wake: make(chan struct{}, 1), up: up, since: time.Now()}
}

// isUp reports whether the gate is open.
func (g *apiGate) isUp() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return isClosed(g.up)
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// wait returns once the gate is open, or with an error when ctx ends or the gate is stopped.
// An open gate lets every request through, even after the stop (releasing the leader lease).
func (g *apiGate) wait(ctx context.Context) error {
	g.mu.Lock()
	up, cause := g.up, g.cause
	g.mu.Unlock()
	select {
	case <-up:
		return nil
	default:
	}
	select {
	case <-up:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for the API server (unreachable: %v): %w", cause, ctx.Err())
	case <-g.stop:
		return fmt.Errorf("the manager is stopping and the API server is unreachable: %w", cause)
	}
}

// close closes the gate after err, once per outage, and wakes the prober.
func (g *apiGate) close(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !isClosed(g.up) {
		return
	}
	g.up, g.since, g.cause = make(chan struct{}), time.Now(), err
	g.log.Info("API server unreachable; holding requests until it answers", "error", err.Error())
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// open opens the gate and reports how long it was closed.
func (g *apiGate) open() time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	down := time.Since(g.since)
	if !isClosed(g.up) {
		close(g.up)
		g.since = time.Now()
	}
	return down
}

// run probes the API server whenever the gate is closed, until ctx ends.
func (g *apiGate) run(ctx context.Context) {
	var delay time.Duration
	var lastOpened time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.wake:
		}
		if time.Since(lastOpened) > calmPeriod {
			delay = 0
		} else if delay = nextDelay(delay); !sleep(ctx, delay) { // flapping: keep backing off
			return
		}
		for attempt := 1; ; attempt++ {
			pctx, cancel := context.WithTimeout(ctx, probeTimeout)
			err := g.probe(pctx)
			cancel()
			if err == nil {
				down := g.open()
				lastOpened = time.Now()
				g.log.Info("API server reachable again", "attempts", attempt, "down", down.Round(time.Millisecond).String())
				break
			}
			if ctx.Err() != nil {
				return
			}
			delay = nextDelay(delay)
			g.log.Info("API server still unreachable; retrying", "attempt", attempt, "retryIn", delay.String(), "error", err.Error())
			if !sleep(ctx, delay) {
				return
			}
		}
	}
}

// sleep waits d, or until ctx ends (false).
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// readyzProbe asks the API server's /readyz with cfg's credentials. An answer that says the
// server is serving (200), or that only this client may not ask (401, 403, 404), counts as
// reachable; a 5xx or 429 (starting, overloaded, etcd away) does not.
func readyzProbe(cfg *rest.Config) (func(context.Context) error, error) {
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("building the API server probe: %w", err)
	}
	u, _, err := rest.DefaultServerUrlFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("building the API server probe: %w", err)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/readyz"
	target := u.String()
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		_ = resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound:
			return nil
		}
		return fmt.Errorf("GET /readyz: %s", resp.Status)
	}, nil
}

// wrap is a rest.Config transport wrapper putting the gate in front of rt.
func (g *apiGate) wrap(rt http.RoundTripper) http.RoundTripper {
	return &gatedTransport{gate: g, next: rt}
}

type gatedTransport struct {
	gate *apiGate
	next http.RoundTripper
}

// WrappedRoundTripper lets client-go find the transport underneath (idle connections, dialer).
func (t *gatedTransport) WrappedRoundTripper() http.RoundTripper { return t.next }

func (t *gatedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	for {
		if err := t.gate.wait(req.Context()); err != nil {
			return nil, err
		}
		resp, err := t.next.RoundTrip(req)
		if err == nil || req.Context().Err() != nil {
			return resp, err
		}
		t.gate.close(err)
		if !retriable(req, err) {
			return nil, err
		}
		if req.Body != nil && req.Body != http.NoBody {
			body, berr := req.GetBody()
			if berr != nil {
				return nil, err
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
	}
}

// retriable says whether req may be sent again after err: when it never left (the connection
// could not be made), provided its body can be replayed; or when it is a read.
func retriable(req *http.Request, err error) bool {
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	if neverSent(err) {
		return replayable
	}
	return (req.Method == http.MethodGet || req.Method == http.MethodHead) && (req.Body == nil || req.Body == http.NoBody)
}

// neverSent reports an error from making the connection, before anything was written.
func neverSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && (op.Op == "dial" || op.Op == "proxyconnect")
}
