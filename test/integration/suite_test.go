// Package integration runs pnsflow against a real kube-apiserver and etcd (envtest). No kubelet
// runs: tests play it by writing Pod status, and play or run the executor's reporter.
package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	"github.com/pnsflow/pnsflow/internal/controller/steprun"
	"github.com/pnsflow/pnsflow/internal/manager"
	"github.com/pnsflow/pnsflow/internal/podspec"
)

const executorImage = "pns-executor:test"

var (
	ctx         context.Context
	cancelSuite context.CancelFunc
	testEnv     *envtest.Environment
	cfg         *rest.Config
	k8s         client.Client
	stopManager context.CancelFunc
	podConfig   = podspec.Config{ExecutorImage: executorImage}
	// testPolicy keeps grace periods short so error paths finish within a test's patience.
	testPolicy = steprun.Policy{ImagePullGrace: 2 * time.Second, DeadlineSlack: time.Second}
)

func TestIntegration(t *testing.T) {
	RegisterFailHandler(Fail)
	// Waiting is bounded by what is being waited for (grace periods are seconds here), never a sleep.
	SetDefaultEventuallyTimeout(15 * time.Second)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	RunSpecs(t, "Integration Suite")
}

// envtestAssets returns kube-apiserver and etcd, building them from Go modules when neither
// KUBEBUILDER_ASSETS nor bin/ has them: this suite never skips for want of a binary.
func envtestAssets() string {
	out, err := exec.Command(filepath.Join("..", "..", "hack", "envtest-assets.sh")).Output()
	Expect(err).NotTo(HaveOccurred(), "providing envtest assets")
	return strings.TrimSpace(string(out))
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	ctx, cancelSuite = context.WithCancel(context.Background())
	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: envtestAssets(),
	}
	var err error
	cfg, err = testEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	scheme, err := manager.Scheme()
	Expect(err).NotTo(HaveOccurred())
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	// The executor ClusterRole ships in config/rbac; install it as a user would.
	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "rbac", "executor_role.yaml"))
	Expect(err).NotTo(HaveOccurred())
	role := &rbacv1.ClusterRole{}
	Expect(yaml.Unmarshal(raw, role)).To(Succeed())
	Expect(k8s.Create(ctx, role)).To(Succeed())

	stopManager = startManager()
})

var _ = AfterSuite(func() {
	if stopManager != nil {
		stopManager()
	}
	cancelSuite()
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})

// startManager runs the manager exactly as cmd/manager builds it and returns a func that stops
// it and waits until it has.
func startManager() context.CancelFunc {
	_, stop := runManager(cfg, manager.Options{
		MetricsAddr: "0", ProbeAddr: "0", QPS: 500, Burst: 1000, StepRunWorkers: 4,
		Pod: podConfig, Policy: testPolicy, SkipNameValidation: true,
	})
	return stop
}

// runManager builds the manager with c and o, starts it, and returns it with a func that stops
// it and waits until it has; calling that func again does nothing.
func runManager(c *rest.Config, o manager.Options) (ctrl.Manager, func()) {
	mgr, err := manager.New(c, o)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	mctx, cancel := context.WithCancel(ctrl.LoggerInto(ctx, logf.Log))
	done := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(done)
		Expect(mgr.Start(mctx)).To(Succeed())
	}()
	return mgr, sync.OnceFunc(func() {
		cancel()
		<-done
	})
}

// newNamespace makes a fresh namespace for one test.
func newNamespace(labels map[string]string) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "it-", Labels: labels}}
	Expect(k8s.Create(ctx, ns)).To(Succeed())
	DeferCleanup(func() { _ = k8s.Delete(context.Background(), ns) })
	return ns.Name
}

func key(namespace, name string) client.ObjectKey {
	return client.ObjectKey{Namespace: namespace, Name: name}
}

func describeErr(err error) string {
	if err == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%T: %v", err, err)
}
