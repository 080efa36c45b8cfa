package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"

	"github.com/pnsflow/pnsflow/internal/artifact"
)

// forwardReadyTimeout bounds how long a port-forward may take to listen.
const forwardReadyTimeout = 30 * time.Second

// forward is a port-forward to one Pod's port, on a loopback port of its own, as `kubectl
// port-forward` makes it: a websocket tunnel, or SPDY where the API server has no tunnel.
type forward struct {
	local string // 127.0.0.1:port
	stop  context.CancelFunc
	done  chan error
}

// startForward forwards a loopback port to b.
func startForward(cfg *rest.Config, cs kubernetes.Interface, b Backend) (*forward, error) {
	url := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(b.Pod.Namespace).Name(b.Pod.Name).SubResource("portforward").URL()
	rt, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("port-forward to pod %s: %w", b.Pod, err)
	}
	var dialer httpstream.Dialer = spdy.NewDialer(upgrader, &http.Client{Transport: rt}, http.MethodPost, url)
	tunnel, err := portforward.NewSPDYOverWebsocketDialer(url, cfg)
	if err != nil {
		return nil, fmt.Errorf("port-forward to pod %s: %w", b.Pod, err)
	}
	dialer = portforward.NewFallbackDialer(tunnel, dialer, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})

	ctx, stop := context.WithCancel(context.Background())
	ready := make(chan struct{})
	pf, err := portforward.NewOnAddressesWithContext(ctx, dialer, []string{"127.0.0.1"},
		[]string{"0:" + strconv.Itoa(int(b.Port))}, ready, io.Discard, io.Discard)
	if err != nil {
		stop()
		return nil, fmt.Errorf("port-forward to pod %s: %w", b.Pod, err)
	}
	f := &forward{stop: stop, done: make(chan error, 1)}
	go func() { f.done <- pf.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-f.done:
		stop()
		return nil, fmt.Errorf("port-forward to pod %s port %d: %w", b.Pod, b.Port, err)
	case <-time.After(forwardReadyTimeout):
		f.close()
		return nil, fmt.Errorf("port-forward to pod %s port %d: not listening after %s", b.Pod, b.Port, forwardReadyTimeout)
	}
	ports, err := pf.GetPorts()
	if err != nil || len(ports) != 1 {
		f.close()
		return nil, errors.Join(fmt.Errorf("port-forward to pod %s: no local port", b.Pod), err)
	}
	f.local = net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[0].Local)))
	return f, nil
}

// dial connects to the forwarded port whatever address the client asked for: the request
// itself still names the repository's endpoint, which is what the server signs against.
func (f *forward) dial() artifact.DialFunc {
	var d net.Dialer
	return func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, f.local)
	}
}

func (f *forward) close() {
	f.stop()
	<-f.done
}
