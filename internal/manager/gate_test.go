package manager

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

func TestNextDelay(t *testing.T) {
	cases := []struct{ in, want time.Duration }{
		{0, 250 * time.Millisecond},
		{250 * time.Millisecond, 500 * time.Millisecond},
		{2 * time.Second, 4 * time.Second},
		{4 * time.Second, 5 * time.Second},
		{5 * time.Second, 5 * time.Second},
		{time.Hour, 5 * time.Second},
	}
	for _, tc := range cases {
		if got := nextDelay(tc.in); got != tc.want {
			t.Errorf("nextDelay(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestRetriable(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	withBody := func(method string, replayable bool) *http.Request {
		req, _ := http.NewRequest(method, "https://api", strings.NewReader("{}"))
		if !replayable {
			req.GetBody = nil
		}
		return req
	}
	get, _ := http.NewRequest(http.MethodGet, "https://api", nil)
	cases := []struct {
		name string
		req  *http.Request
		err  error
		want bool
	}{
		{"a read that could not connect", get, refused, true},
		{"a read cut off", get, reset, true},
		{"a write that could not connect", withBody(http.MethodPost, true), refused, true},
		{"a write whose body cannot be replayed", withBody(http.MethodPost, false), refused, false},
		{"a write cut off may have been applied", withBody(http.MethodPost, true), reset, false},
		{"a wrapped dial error", get, errors.Join(errors.New("Get"), refused), true},
		{"any other error of a write", withBody(http.MethodPatch, true), io.ErrUnexpectedEOF, false},
	}
	for _, tc := range cases {
		if got := retriable(tc.req, tc.err); got != tc.want {
			t.Errorf("%s: retriable = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// fakeTransport fails while down, with a dial error, and answers 200 otherwise.
type fakeTransport struct {
	mu    sync.Mutex
	down  bool
	calls int
}

func (f *fakeTransport) set(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

func (f *fakeTransport) isDown() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.down
}

func (f *fakeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if req.Body != nil {
		if b, _ := io.ReadAll(req.Body); string(b) != "{}" {
			return nil, errors.New("the body was not replayed")
		}
	}
	if f.down {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	}
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}, nil
}

// A request that cannot connect closes the gate and waits for the prober; it and every request
// behind it go on, body replayed, once the API server answers.
func TestGateHoldsRequestsUntilTheAPIServerAnswers(t *testing.T) {
	api := &fakeTransport{down: true}
	probed := make(chan struct{}, 100)
	probe := func(context.Context) error {
		probed <- struct{}{}
		if api.isDown() {
			return errors.New("refused")
		}
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g := newAPIGate(logr.Discard(), probe, ctx.Done())
	go g.run(ctx)
	rt := g.wrap(api)

	results := make(chan error, 2)
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		go func() {
			req, _ := http.NewRequest(method, "https://api", strings.NewReader("{}"))
			resp, err := rt.RoundTrip(req)
			if err == nil && resp.StatusCode != http.StatusOK {
				err = errors.New(resp.Status)
			}
			results <- err
		}()
	}
	<-probed // the gate closed and the prober is retrying
	<-probed
	if g.isUp() {
		t.Fatal("the gate is open while the API server is down")
	}
	select {
	case err := <-results:
		t.Fatalf("a request returned while the API server was down: %v", err)
	default:
	}
	api.set(false)
	for range 2 {
		if err := <-results; err != nil {
			t.Errorf("request: %v", err)
		}
	}
	if !g.isUp() {
		t.Error("the gate is still closed")
	}
}

// A gate that closes again soon after it opened is probed after a back-off, not at once: an API
// server whose connections keep failing is not hammered.
func TestGateBacksOffWhenFlapping(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	probes := make(chan time.Time, 10)
	g := newAPIGate(logr.Discard(), func(context.Context) error { probes <- time.Now(); return nil }, ctx.Done())
	go g.run(ctx)
	closed := time.Now()
	g.close(errors.New("refused"))
	if first := <-probes; first.Sub(closed) >= firstRetryDelay {
		t.Errorf("the first outage was probed after %v, want at once", first.Sub(closed))
	}
	if err := g.wait(ctx); err != nil {
		t.Fatal(err)
	}
	closed = time.Now()
	g.close(errors.New("refused again"))
	if second := <-probes; second.Sub(closed) < firstRetryDelay {
		t.Errorf("a gate closed again right after opening was probed after %v, want at least %v", second.Sub(closed), firstRetryDelay)
	}
}

// A request waiting at a closed gate ends with its context, and with the gate's stop.
func TestGateWaitEnds(t *testing.T) {
	stop := make(chan struct{})
	g := newAPIGate(logr.Discard(), func(context.Context) error { return errors.New("down") }, stop)
	g.close(errors.New("refused"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := g.wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("wait after the context ended: %v", err)
	}
	close(stop)
	if err := g.wait(context.Background()); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("wait after the stop: %v", err)
	}
	g.open()
	if err := g.wait(context.Background()); err != nil {
		t.Errorf("an open gate lets requests through even after the stop: %v", err)
	}
}

func TestReadinessCheck(t *testing.T) {
	closedGate := newAPIGate(logr.Discard(), nil, nil)
	closedGate.close(errors.New("refused"))
	cases := []struct {
		name    string
		r       *readiness
		started bool
		synced  bool
		wantErr string
	}{
		{"starting", &readiness{}, false, false, "starting"},
		{"API server unreachable", &readiness{gate: closedGate}, true, true, "unreachable"},
		{"started, not synced (leading or standing by)", &readiness{}, true, false, "not synced"},
		{"started and synced (leading or standing by)", &readiness{}, true, true, ""},
	}
	for _, tc := range cases {
		tc.r.started.Store(tc.started)
		tc.r.synced.Store(tc.synced)
		err := tc.r.check(nil)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%s: check() = %v, want %q", tc.name, err, tc.wantErr)
		}
	}
}

func TestLeaseTimingsMustLeaveTheLeaderTimeToRenew(t *testing.T) {
	cases := []struct {
		name  string
		lease Lease
		ok    bool
	}{
		{"the defaults", DefaultOptions().Lease, true},
		{"client-go's", Lease{Duration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}, true},
		{"renew deadline as long as the lease", Lease{Duration: 10 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}, false},
		{"renew deadline inside the retry period's jitter", Lease{Duration: 10 * time.Second, RenewDeadline: 2200 * time.Millisecond, RetryPeriod: 2 * time.Second}, false},
		{"no retry period", Lease{Duration: 10 * time.Second, RenewDeadline: 7 * time.Second}, false},
	}
	for _, tc := range cases {
		err := tc.lease.check()
		if tc.ok != (err == nil) || err != nil && !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%s: check() = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}
