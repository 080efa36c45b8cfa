package manager_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/manager"
	"github.com/pnsflow/pnsflow/internal/podspec"
)

// The manager is pointed at the API server through a TCP proxy the test opens and cuts: an
// outage the manager sees exactly as a real one (connections refused, watches broken), while the
// test reaches the API server directly.
func TestManagerRidesOutAPIServerOutages(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver and etcd")
	}
	logs := &logBuffer{}
	logf.SetLogger(logs.logger())
	direct, k8s := startEnvtest(t)
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("OUTAGE_LOGS") != "" {
			t.Logf("manager logs (tail):\n%s", logs.tail(64<<10))
		}
	})

	t.Run("unreachable at start: live, not ready, retrying; reconciles once it answers", func(t *testing.T) {
		g := newG(t)
		proxy := newProxy(t, direct.Host)
		mark := logs.len()
		probes, errc := runManager(t, proxy.config(direct), false)

		g.Eventually(probes.status("/healthz")).Should(Equal(http.StatusOK))
		g.Expect(probes.status("/readyz")()).To(Equal(http.StatusInternalServerError))
		// It retries, with a back-off and a log line per attempt, instead of exiting.
		g.Eventually(func() int { return strings.Count(logs.since(mark), `"msg"="API server still unreachable; retrying"`) }).
			WithTimeout(20 * time.Second).Should(BeNumerically(">=", 3))
		g.Expect(logs.since(mark)).To(ContainSubstring(`"attempt"=3`))
		g.Expect(probes.status("/readyz")()).To(Equal(http.StatusInternalServerError))
		g.Expect(errc).NotTo(Receive())

		sr := newStepRun(t, k8s)
		proxy.open()
		g.Eventually(podOf(k8s, sr)).WithTimeout(15 * time.Second).Should(Succeed())
		g.Eventually(probes.status("/readyz")).Should(Equal(http.StatusOK))
		g.Expect(errc).NotTo(Receive())
	})

	t.Run("connections dropped mid-run: not ready while cut, reconciles once back", func(t *testing.T) {
		g := newG(t)
		proxy := newProxy(t, direct.Host)
		proxy.open()
		probes, errc := runManager(t, proxy.config(direct), false)
		g.Eventually(probes.status("/readyz")).WithTimeout(30 * time.Second).Should(Equal(http.StatusOK))
		g.Eventually(podOf(k8s, newStepRun(t, k8s))).WithTimeout(30 * time.Second).Should(Succeed())

		mark := logs.len()
		proxy.cut()
		g.Eventually(probes.status("/readyz")).WithTimeout(20 * time.Second).Should(Equal(http.StatusInternalServerError))
		g.Expect(probes.status("/healthz")()).To(Equal(http.StatusOK))
		sr := newStepRun(t, k8s) // made while the manager cannot see it
		// Long enough for the back-off to grow (0.25 + 0.5 + 1 + 2 s).
		g.Eventually(func() int { return strings.Count(logs.since(mark), `"msg"="API server still unreachable; retrying"`) }).
			WithTimeout(20 * time.Second).Should(BeNumerically(">=", 4))
		g.Expect(podOf(k8s, sr)()).NotTo(Succeed())
		proxy.open()
		g.Eventually(podOf(k8s, sr)).WithTimeout(15 * time.Second).Should(Succeed())
		g.Eventually(probes.status("/readyz")).Should(Equal(http.StatusOK))
		g.Expect(errc).NotTo(Receive())
	})

	t.Run("a leader that cannot renew its lease stops", func(t *testing.T) {
		g := newG(t)
		proxy := newProxy(t, direct.Host)
		proxy.open()
		probes, errc := runManager(t, proxy.config(direct), true)
		g.Eventually(probes.status("/readyz")).WithTimeout(30 * time.Second).Should(Equal(http.StatusOK))

		proxy.cut()
		// controller-runtime's renew deadline is 10 s; then Run must end so the process exits.
		var err error
		g.Eventually(errc).WithTimeout(40 * time.Second).Should(Receive(&err))
		g.Expect(errors.Is(err, manager.ErrLeaderElectionLost)).To(BeTrue(), "Run returned %v", err)
	})
}

// newG polls at a pace that leaves the 2-core machine to the manager and the API server.
func newG(t *testing.T) *WithT {
	g := NewWithT(t)
	g.SetDefaultEventuallyPollingInterval(200 * time.Millisecond)
	g.SetDefaultEventuallyTimeout(10 * time.Second)
	return g
}

// startEnvtest starts kube-apiserver and etcd with pnsflow's CRDs and returns their config and a
// client that reaches them directly.
func startEnvtest(t *testing.T) (*rest.Config, client.Client) {
	t.Helper()
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		out, err := exec.Command(filepath.Join("..", "..", "hack", "envtest-assets.sh")).Output()
		if err != nil {
			t.Fatalf("providing envtest assets: %v", err)
		}
		assets = strings.TrimSpace(string(out))
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting envtest: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping envtest: %v", err)
		}
	})
	scheme, err := manager.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	k8s, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return cfg, k8s
}

// runManager runs manager.Run until the test ends and returns its probe endpoints and a channel
// that receives what Run returned.
func runManager(t *testing.T, cfg *rest.Config, leaderElect bool) (probeClient, <-chan error) {
	t.Helper()
	addr := freeAddr(t)
	o := manager.Options{
		MetricsAddr: "0", ProbeAddr: addr, StepRunWorkers: 2,
		Pod:                podspec.Config{ExecutorImage: "pns-executor:test"},
		SkipNameValidation: true,
		LeaderElect:        leaderElect, LeaderElectionNamespace: "default",
	}
	ctx, cancel := context.WithCancel(ctrl.LoggerInto(context.Background(), logf.Log))
	errc := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		errc <- manager.Run(ctx, cfg, o)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("Run did not return within 30 s of its context's end")
		}
	})
	return probeClient{base: "http://" + addr}, errc
}

func newStepRun(t *testing.T, k8s client.Client) *v1alpha1.StepRun {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "outage-"}}
	if err := k8s.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	sr := &v1alpha1.StepRun{
		ObjectMeta: metav1.ObjectMeta{Name: "step", Namespace: ns.Name},
		Spec:       v1alpha1.StepRunSpec{Image: "busybox:1.37"},
	}
	if err := k8s.Create(ctx, sr); err != nil {
		t.Fatal(err)
	}
	return sr
}

func podOf(k8s client.Client, sr *v1alpha1.StepRun) func() error {
	return func() error {
		return k8s.Get(context.Background(), client.ObjectKey{Namespace: sr.Namespace, Name: podspec.PodName(sr.Name)}, &corev1.Pod{})
	}
}

type probeClient struct{ base string }

// status returns a func giving the probe's HTTP status, 0 when it cannot be reached.
func (p probeClient) status(path string) func() int {
	return func() int {
		c := http.Client{Timeout: 2 * time.Second}
		resp, err := c.Get(p.base + path)
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// tcpProxy forwards a fixed local address to the API server while open; cut, it closes every
// connection and refuses new ones.
type tcpProxy struct {
	t      *testing.T
	addr   string
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
}

func newProxy(t *testing.T, apiHost string) *tcpProxy {
	t.Helper()
	u, err := url.Parse(apiHost)
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{t: t, addr: freeAddr(t), target: u.Host, conns: map[net.Conn]struct{}{}}
	t.Cleanup(p.cut)
	return p
}

// config is cfg pointed at the proxy; the API server's certificate names 127.0.0.1, any port.
func (p *tcpProxy) config(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Host = "https://" + p.addr
	return c
}

func (p *tcpProxy) open() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("proxy: %v", err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				p.t.Logf("proxy: dialing %s: %v", p.target, err)
				_ = down.Close()
				continue
			}
			if !p.track(down, up) {
				return
			}
			go p.pipe(down, up)
			go p.pipe(up, down)
		}
	}()
}

// track records a connection pair, or closes it when the proxy was cut meanwhile.
func (p *tcpProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		for _, c := range conns {
			_ = c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *tcpProxy) pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
}

func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		_ = c.Close()
		delete(p.conns, c)
	}
}

// logBuffer keeps every log line, for assertions on the retry log and a tail on failure.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.buf.WriteString(time.Now().Format("15:04:05.000 ") + prefix + " " + args + "\n")
	}, funcr.Options{})
}

func (b *logBuffer) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

func (b *logBuffer) since(mark int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()[mark:]
}

func (b *logBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	return s[max(0, len(s)-n):]
}
