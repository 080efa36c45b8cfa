package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

// StepRunGetter reads the StepRun (Reporter is one).
type StepRunGetter interface {
	Get(ctx context.Context) (*v1alpha1.StepRun, error)
}

// MainStarter says when main started (PodWatcher is one).
type MainStarter interface {
	MainStarted(ctx context.Context) (MainState, error)
}

// Attacher writes to main's standard input and closes it.
type Attacher interface {
	Attach(ctx context.Context, stdin io.Reader) error
}

// StdinFeeder writes the StepRun's spec.stdin to main once main is running.
type StdinFeeder struct {
	StepRun  StepRunGetter
	Pod      MainStarter
	Attacher Attacher
	// Attempts bounds the attach attempts; zero means 3. A retry never writes twice: main's
	// stdin is stdinOnce, closed when the first attach session that reached it ends.
	Attempts int
}

// Feed reads spec.stdin, waits for main to run and attaches to write it.
func (f *StdinFeeder) Feed(ctx context.Context) error {
	log := logr.FromContextOrDiscard(ctx)
	var sr *v1alpha1.StepRun
	err := retry(ctx, 3, func() error {
		var err error
		sr, err = f.StepRun.Get(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	if sr.Spec.Stdin == nil {
		return nil
	}
	st, err := f.Pod.MainStarted(ctx)
	if err != nil {
		return fmt.Errorf("waiting for main to start: %w", err)
	}
	if st.Running == nil {
		return errors.New("main ended before its stdin could be written")
	}
	attempts := f.Attempts
	if attempts <= 0 {
		attempts = 3
	}
	stdin := *sr.Spec.Stdin
	err = retry(ctx, attempts, func() error {
		return f.Attacher.Attach(ctx, strings.NewReader(stdin))
	})
	if err != nil {
		return fmt.Errorf("writing stdin: %w", err)
	}
	log.Info("Wrote main's stdin", "bytes", len(stdin))
	return nil
}

// retry calls fn up to attempts times, with backoff from 200 ms, while ctx lasts.
func retry(ctx context.Context, attempts int, fn func() error) error {
	backoff := 200 * time.Millisecond
	var err error
	for i := range attempts {
		if err = fn(); err == nil || ctx.Err() != nil {
			return err
		}
		if i < attempts-1 && !sleepCtx(ctx, backoff) {
			return err
		}
		backoff *= 2
	}
	return err
}

// PodAttacher attaches to main through the Pod attach API (pods/attach): WebSocket first, SPDY
// when the API server or a proxy cannot upgrade to WebSocket, as kubectl does.
type PodAttacher struct {
	cfg       *rest.Config
	client    rest.Interface
	namespace string
	pod       string
}

// NewPodAttacher returns an attacher to main in Pod ns/pod.
func NewPodAttacher(cfg *rest.Config, ns, pod string) (*PodAttacher, error) {
	c, err := newCoreClient(cfg)
	if err != nil {
		return nil, err
	}
	return &PodAttacher{cfg: cfg, client: c, namespace: ns, pod: pod}, nil
}

// Attach streams stdin to main, then closes main's stdin.
func (a *PodAttacher) Attach(ctx context.Context, stdin io.Reader) error {
	u := a.client.Post().Namespace(a.namespace).Resource("pods").Name(a.pod).SubResource("attach").
		Param("container", executorconfig.MainContainer).
		Param("stdin", "true").
		URL()
	spdy, err := remotecommand.NewSPDYExecutor(a.cfg, "POST", u)
	if err != nil {
		return fmt.Errorf("making SPDY attach: %w", err)
	}
	// A WebSocket handshake is a GET (RFC 6455).
	ws, err := remotecommand.NewWebSocketExecutor(a.cfg, "GET", u.String())
	if err != nil {
		return fmt.Errorf("making WebSocket attach: %w", err)
	}
	exec, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return fmt.Errorf("making attach: %w", err)
	}
	if err := exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdin}); err != nil {
		return fmt.Errorf("attaching to main: %w", err)
	}
	return nil
}
