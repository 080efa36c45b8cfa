// Package manager assembles the pnsflow operator: scheme, cache, controllers and probes. The
// manager binary, the envtest suites and the benchmark all build it here, so they test what ships.
package manager

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/controller/steprun"
	"github.com/pnsflow/pnsflow/internal/controller/workflowrun"
	"github.com/pnsflow/pnsflow/internal/metrics"
	"github.com/pnsflow/pnsflow/internal/podspec"
)

// The shipped defaults. cmd/manager's flags default to these (through DefaultOptions), and the
// fan-out benchmark (test/bench) runs with them, so what is measured is what ships.
const (
	DefaultMetricsAddr = ":8443"
	DefaultProbeAddr   = ":8081"
	// DefaultQPS and DefaultBurst are the client-side limits towards the API server. The API
	// server's priority and fairness protects it; a low client-side limit (Argo's qps 20) is
	// what makes wide fan-outs slow. client-go keeps one limiter per REST client, and
	// controller-runtime makes one per resource kind, so StepRun creates, Pod creates and
	// WorkflowRun status writes each get 500/s: status writes never queue behind a fan-out's
	// creates. On 2 cores the API server saturates first (`make bench`: 1000/2000 changed
	// nothing); a larger control plane has headroom before these bind.
	DefaultQPS   = 500
	DefaultBurst = 1000
	// DefaultStepRunWorkers StepRuns are reconciled in parallel (each creates one Pod). It
	// matches the WorkflowRun controller's 64 concurrent StepRun creates, so Pods keep pace
	// with StepRuns: with 16, a 5000-item fan-out left a StepRun waiting 6.6 s (median) for its
	// Pod, with 64 about 1 s, and all Pods existed no later.
	DefaultStepRunWorkers = 64
	// DefaultWorkflowRunWorkers WorkflowRuns are reconciled in parallel; each fans its
	// creates out concurrently (workflowrun.DefaultCreateConcurrency).
	DefaultWorkflowRunWorkers = 4
	// The leader lease. A leader that stops cleanly releases it, and a standby takes over within
	// a retry period; one that vanishes (its node lost) holds it until it expires, so a standby
	// takes over within DefaultLeaseDuration + DefaultRetryPeriod (+20 % jitter): ≤ 12.4 s, not
	// client-go's 17+ s. The price: a leader that cannot renew for DefaultRenewDeadline (an API
	// server outage of 7 s, not 10 s) gives the lease up and its process exits, to be restarted
	// as a standby; every replica's writes are idempotent, so that costs time, never work.
	DefaultLeaseDuration = 10 * time.Second
	DefaultRenewDeadline = 7 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// DefaultOptions returns the shipped settings; callers set what has no default (the executor
// image) and override what they must.
func DefaultOptions() Options {
	return Options{
		MetricsAddr:        DefaultMetricsAddr,
		MetricsSecure:      true,
		ProbeAddr:          DefaultProbeAddr,
		QPS:                DefaultQPS,
		Burst:              DefaultBurst,
		StepRunWorkers:     DefaultStepRunWorkers,
		WorkflowRunWorkers: DefaultWorkflowRunWorkers,
		Lease:              Lease{Duration: DefaultLeaseDuration, RenewDeadline: DefaultRenewDeadline, RetryPeriod: DefaultRetryPeriod},
		Pod:                podspec.Config{ExecutorImagePullPolicy: corev1.PullIfNotPresent},
		Policy:             steprun.DefaultPolicy,
	}
}

// Options are the manager's settings; cmd/manager fills them from flags. Zero QPS, Burst and
// worker counts mean the defaults above.
type Options struct {
	MetricsAddr, ProbeAddr string
	// MetricsSecure serves metrics over HTTPS to callers whose token may GET /metrics, as
	// kubebuilder's scaffold does; MetricsCertDir holds tls.crt and tls.key (empty: a
	// self-signed certificate made at start).
	MetricsSecure  bool
	MetricsCertDir string
	LeaderElect    bool
	// LeaderElectionNamespace is needed when running outside a cluster with LeaderElect.
	LeaderElectionNamespace string
	// Lease times the leader lease; zero fields mean the defaults above.
	Lease Lease
	// QPS and Burst are the client-side rate limits towards the API server.
	QPS   float32
	Burst int
	// StepRunWorkers bounds parallel StepRun reconciles.
	StepRunWorkers int
	// WorkflowRunWorkers bounds parallel WorkflowRun reconciles. One run is never
	// reconciled twice at once; its creates are concurrent within a reconcile.
	WorkflowRunWorkers int
	Pod                podspec.Config
	Policy             steprun.Policy
	// ArtifactRepository is the default artifact repository's ConfigMap; an empty name means
	// none (runs that store artifacts then need spec.artifactRepositoryRef).
	ArtifactRepository types.NamespacedName
	// Clock is injected by tests; nil means the real clock.
	Clock clock.PassiveClock
	// SkipNameValidation lets tests start several managers in one process.
	SkipNameValidation bool
}

// Lease is how the leader lease is held: it lasts Duration from its last renewal, the leader
// gives it up when it could not renew for RenewDeadline, and candidates try every RetryPeriod.
type Lease struct {
	Duration, RenewDeadline, RetryPeriod time.Duration
}

// check refuses, before anything starts, the timings client-go's elector would refuse only once
// the manager runs: 0 < 1.2 × RetryPeriod (its jitter) < RenewDeadline < Duration.
func (l Lease) check() error {
	if l.RetryPeriod <= 0 || float64(l.RenewDeadline) <= 1.2*float64(l.RetryPeriod) || l.Duration <= l.RenewDeadline {
		return fmt.Errorf("%w: leader lease duration %s, renew deadline %s and retry period %s must satisfy 0 < 1.2 × retry period < renew deadline < duration",
			ErrInvalidOptions, l.Duration, l.RenewDeadline, l.RetryPeriod)
	}
	return nil
}

// Scheme knows the core types and pnsflow's.
func Scheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("registering core types: %w", err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("registering pnsflow types: %w", err)
	}
	return scheme, nil
}

// ErrInvalidOptions marks an Options mistake: no retry can help, so Run returns it at once.
var ErrInvalidOptions = errors.New("invalid manager options")

// New builds a manager with every pnsflow controller registered. Its readiness check passes once
// the manager has started and its caches have synced, whether it leads or stands by. It needs
// the API server to be reachable (the Pod cache's selector is resolved through discovery); Run
// rides out an API server that is not.
func New(cfg *rest.Config, o Options) (ctrl.Manager, error) {
	return build(cfg, o, &readiness{})
}

func build(cfg *rest.Config, o Options, ready *readiness) (ctrl.Manager, error) {
	if o.Pod.ExecutorImage == "" {
		return nil, fmt.Errorf("%w: no executor image: set --executor-image or PNSFLOW_EXECUTOR_IMAGE", ErrInvalidOptions)
	}
	scheme, err := Scheme()
	if err != nil {
		return nil, err
	}
	o.withDefaults()
	if err := o.Lease.check(); err != nil {
		return nil, err
	}
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = o.QPS, o.Burst
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsOptions(o),
		HealthProbeBindAddress:  o.ProbeAddr,
		LeaderElection:          o.LeaderElect,
		LeaderElectionID:        "pnsflow-manager.pnsflow.dev",
		LeaderElectionNamespace: o.LeaderElectionNamespace,
		// The manager stops only after its controllers have; releasing the lease then lets a
		// rolled-out replacement take over at once instead of waiting ~15 s for it to expire.
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &o.Lease.Duration,
		RenewDeadline:                 &o.Lease.RenewDeadline,
		RetryPeriod:                   &o.Lease.RetryPeriod,
		Cache:                         CacheOptions(),
		Controller:                    config.Controller{SkipNameValidation: &o.SkipNameValidation},
	})
	if err != nil {
		return nil, fmt.Errorf("creating manager: %w", err)
	}
	rec, err := metrics.Register(ctrlmetrics.Registry, mgr.GetCache())
	if err != nil {
		return nil, err
	}
	if err := (&steprun.Reconciler{
		Client:                  mgr.GetClient(),
		Clock:                   o.Clock,
		Pod:                     o.Pod,
		Policy:                  o.Policy,
		MaxConcurrentReconciles: o.StepRunWorkers,
		APIReader:               mgr.GetAPIReader(),
		ArtifactRepository:      o.ArtifactRepository,
		Metrics:                 rec,
	}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the steprun controller: %w", err)
	}
	if err := workflowrun.SetupIndexes(context.Background(), mgr.GetFieldIndexer()); err != nil {
		return nil, err
	}
	if err := (&workflowrun.Reconciler{
		Client:                  mgr.GetClient(),
		Clock:                   o.Clock,
		MaxConcurrentReconciles: o.WorkflowRunWorkers,
		Metrics:                 rec,
	}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the workflowrun controller: %w", err)
	}
	if err := ready.track(mgr); err != nil {
		return nil, err
	}
	if o.ProbeAddr != "" && o.ProbeAddr != "0" {
		if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
			return nil, fmt.Errorf("adding health check: %w", err)
		}
		if err := mgr.AddReadyzCheck("readyz", ready.check); err != nil {
			return nil, fmt.Errorf("adding readiness check: %w", err)
		}
	}
	return mgr, nil
}

// metricsOptions serves the metrics endpoint as the scaffold does: with MetricsSecure, over
// HTTPS, and only to callers the API server authenticates and authorizes for GET /metrics.
func metricsOptions(o Options) metricsserver.Options {
	m := metricsserver.Options{BindAddress: o.MetricsAddr}
	if o.MetricsSecure {
		m.SecureServing = true
		m.FilterProvider = filters.WithAuthenticationAndAuthorization
		m.CertDir = o.MetricsCertDir
		if m.CertDir != "" {
			m.CertName, m.KeyName = "tls.crt", "tls.key"
		}
	}
	return m
}

// withDefaults fills the zero values that would otherwise mean client-go's or
// controller-runtime's own defaults (5 QPS, one worker): never what ships.
func (o *Options) withDefaults() {
	if o.Lease.Duration <= 0 {
		o.Lease.Duration = DefaultLeaseDuration
	}
	if o.Lease.RenewDeadline <= 0 {
		o.Lease.RenewDeadline = DefaultRenewDeadline
	}
	if o.Lease.RetryPeriod <= 0 {
		o.Lease.RetryPeriod = DefaultRetryPeriod
	}
	if o.QPS <= 0 {
		o.QPS = DefaultQPS
	}
	if o.Burst <= 0 {
		o.Burst = DefaultBurst
	}
	if o.StepRunWorkers <= 0 {
		o.StepRunWorkers = DefaultStepRunWorkers
	}
	if o.WorkflowRunWorkers <= 0 {
		o.WorkflowRunWorkers = DefaultWorkflowRunWorkers
	}
}

// CacheOptions keeps the manager's memory flat at wide fan-outs: it caches only the Pods that
// pnsflow made, drops managedFields from everything it caches, and keeps of a Pod only its
// metadata, status and node. The StepRun controller decides from those alone (steprun.Decide reads
// status, creation and deletion time; a Pod is deleted by name), while the spec — two
// containers, volumes, the executor's JSON config — is most of a Pod: about 35 MB of live heap
// at 5000 Pods (`make bench`). Anything that needs a Pod's spec must read it past the cache
// (mgr.GetAPIReader()); an update built from a cached Pod would be refused.
func CacheOptions() cache.Options {
	owned, err := labels.NewRequirement(v1alpha1.LabelStepRun, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant, valid label key: cannot fail
	}
	strip := cache.TransformStripManagedFields()
	return cache.Options{
		DefaultTransform: strip,
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}: {Label: labels.NewSelector().Add(*owned), Transform: func(in any) (any, error) {
				out, err := strip(in)
				if pod, ok := out.(*corev1.Pod); ok {
					pod.Spec = corev1.PodSpec{NodeName: pod.Spec.NodeName} // named when the node is lost
				}
				return out, err
			}},
		},
	}
}
