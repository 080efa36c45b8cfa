// Command manager runs the pnsflow operator.
package main

import (
	"flag"
	"os"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/pnsflow/pnsflow/internal/manager"
	"github.com/pnsflow/pnsflow/internal/podspec"
)

func main() {
	// Every default comes from manager.DefaultOptions: the benchmark runs with the same values.
	o := manager.DefaultOptions()
	var qps float64
	var pullPolicy string
	flag.StringVar(&o.MetricsAddr, "metrics-bind-address", o.MetricsAddr, "Address the metrics endpoint binds to; 0 disables it.")
	flag.BoolVar(&o.MetricsSecure, "metrics-secure", o.MetricsSecure, "Serve metrics over HTTPS, only to callers allowed to GET /metrics (false: plain HTTP, to anyone).")
	flag.StringVar(&o.MetricsCertDir, "metrics-cert-dir", "", "Directory with tls.crt and tls.key for the metrics endpoint; empty: a self-signed certificate.")
	flag.StringVar(&o.ProbeAddr, "health-probe-bind-address", o.ProbeAddr, "Address the health and readiness probes bind to.")
	flag.BoolVar(&o.LeaderElect, "leader-elect", false, "Elect a leader so only one manager acts at a time.")
	flag.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader lease (needed outside a cluster).")
	flag.DurationVar(&o.Lease.Duration, "leader-elect-lease-duration", o.Lease.Duration, "How long the leader lease lasts after its last renewal: a vanished leader's standby takes over after it.")
	flag.DurationVar(&o.Lease.RenewDeadline, "leader-elect-renew-deadline", o.Lease.RenewDeadline, "How long the leader keeps trying to renew before it gives the lease up and exits.")
	flag.DurationVar(&o.Lease.RetryPeriod, "leader-elect-retry-period", o.Lease.RetryPeriod, "How often a standby tries to take the lease, and the leader to renew it.")
	// The API server's priority and fairness protects it; a low client-side limit (Argo's
	// qps 20) is what makes wide fan-outs slow.
	flag.Float64Var(&qps, "kube-api-qps", float64(o.QPS), "Client-side limit on requests per second to the API server.")
	flag.IntVar(&o.Burst, "kube-api-burst", o.Burst, "Client-side burst of requests to the API server.")
	flag.IntVar(&o.StepRunWorkers, "steprun-workers", o.StepRunWorkers, "StepRuns reconciled in parallel.")
	flag.IntVar(&o.WorkflowRunWorkers, "workflowrun-workers", o.WorkflowRunWorkers, "WorkflowRuns reconciled in parallel (each fans its creates out concurrently).")
	flag.StringVar(&o.Pod.ExecutorImage, "executor-image", os.Getenv("PNSFLOW_EXECUTOR_IMAGE"), "Image of the pns-executor sidecar (env PNSFLOW_EXECUTOR_IMAGE).")
	flag.StringVar(&pullPolicy, "executor-image-pull-policy", envOr("PNSFLOW_EXECUTOR_IMAGE_PULL_POLICY", string(o.Pod.ExecutorImagePullPolicy)), "Pull policy of the pns-executor image.")
	var artifactRepository string
	flag.StringVar(&artifactRepository, "artifact-repository", "pnsflow-artifact-repository",
		"ConfigMap, in the manager's namespace (env POD_NAMESPACE), describing the default artifact repository; empty for none.")
	flag.DurationVar(&o.Pod.NodeLostAfter, "node-lost-after", podspec.DefaultNodeLostAfter,
		"How long a run's Pod stays on a node that is not ready or unreachable before it is evicted and the run ends Error/NodeLost (its tolerationSeconds).")
	flag.DurationVar(&o.Policy.ImagePullGrace, "image-pull-grace", o.Policy.ImagePullGrace, "How long a Pod may fail to pull an image before its run ends Error/ImagePullFailed.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	// Outside a cluster there is no namespace of the manager's own: no default repository.
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" && artifactRepository != "" {
		o.ArtifactRepository = types.NamespacedName{Namespace: ns, Name: artifactRepository}
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	o.QPS = float32(qps)
	o.Pod.ExecutorImagePullPolicy = corev1.PullPolicy(pullPolicy)

	// Run never returns for an unreachable API server, at start or later: it waits, not ready,
	// and resumes when the API server answers. It returns for a mistake in the options, and when
	// the leader lease was lost, which must end the process (see manager.ErrLeaderElectionLost).
	ctx := ctrl.SetupSignalHandler()
	if err := manager.Run(ctrl.LoggerInto(ctx, ctrl.Log), ctrl.GetConfigOrDie(), o); err != nil {
		ctrl.Log.WithName("setup").Error(err, "Manager stopped")
		os.Exit(1)
	}
}

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}
