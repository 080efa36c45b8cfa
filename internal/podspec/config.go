package podspec

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

// Defaults applied by Build to a zero Config field.
const (
	// DefaultExecutorServiceAccount is the account the controller keeps in every namespace it
	// runs steps in; a StepRun without spec.serviceAccountName runs under it.
	DefaultExecutorServiceAccount = "pnsflow-executor"
	// DefaultTokenExpirationSeconds is the lifetime of the executor's projected token; kubelet
	// refreshes it before it expires, so it only bounds the damage of a leaked token.
	DefaultTokenExpirationSeconds int64 = 3600
	// MinTokenExpirationSeconds is the shortest lifetime the API server accepts for a projected
	// token; shorter values are raised to it rather than producing a Pod that is refused.
	MinTokenExpirationSeconds int64 = 600
	// DefaultReadyTimeout bounds the executor's startup: its startup probe gives up after it.
	DefaultReadyTimeout = 30 * time.Second
	// DefaultNodeLostAfter is how long a run's Pod stays on a node that is not ready or
	// unreachable before it is evicted and the run ends Error/NodeLost (Kubernetes' default is
	// 300 s: five minutes of a step hanging).
	DefaultNodeLostAfter = 60 * time.Second
)

// Config is the operator-wide part of the Pod: everything that does not come from the StepRun.
type Config struct {
	// ExecutorImage is the pns-executor image. Required.
	ExecutorImage string
	// ExecutorImagePullPolicy is the executor's pull policy; empty leaves the API default.
	ExecutorImagePullPolicy corev1.PullPolicy
	// ExecutorServiceAccount is used when the StepRun names none; default
	// DefaultExecutorServiceAccount.
	ExecutorServiceAccount string
	// TokenExpirationSeconds is the projected token's lifetime; default
	// DefaultTokenExpirationSeconds, at least MinTokenExpirationSeconds.
	TokenExpirationSeconds int64
	// ReadyTimeout bounds the executor's startup probe (then kubelet restarts the executor);
	// default DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// ExecutorResources are the executor's requests and limits; when entirely empty,
	// DefaultExecutorResources.
	ExecutorResources corev1.ResourceRequirements
	// NodeLostAfter is the tolerationSeconds of the Pod's not-ready and unreachable tolerations;
	// default DefaultNodeLostAfter. A StepRun that tolerates those taints itself keeps its own.
	NodeLostAfter time.Duration
	// Repository is the run's artifact repository, resolved by the controller; required when the
	// StepRun has output artifacts, ignored otherwise.
	Repository *executorconfig.Repository
}

// DefaultExecutorResources returns the executor's default requests and limits: it mostly sleeps
// on a pidfd and a watch, so it asks for little, and its memory is capped so a bug cannot starve
// main.
func DefaultExecutorResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("10m"),
			corev1.ResourceMemory: resource.MustParse("16Mi"),
		},
		Limits: corev1.ResourceList{
			corev1.ResourceMemory: resource.MustParse("64Mi"),
		},
	}
}

// withDefaults fills zero fields. It also deep-copies the resources so that no two Pods, and no
// Pod and the Config, share a map.
func (c Config) withDefaults() Config {
	if c.ExecutorServiceAccount == "" {
		c.ExecutorServiceAccount = DefaultExecutorServiceAccount
	}
	switch {
	case c.TokenExpirationSeconds <= 0:
		c.TokenExpirationSeconds = DefaultTokenExpirationSeconds
	case c.TokenExpirationSeconds < MinTokenExpirationSeconds:
		c.TokenExpirationSeconds = MinTokenExpirationSeconds
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = DefaultReadyTimeout
	}
	if c.NodeLostAfter <= 0 {
		c.NodeLostAfter = DefaultNodeLostAfter
	}
	r := c.ExecutorResources
	if len(r.Requests) == 0 && len(r.Limits) == 0 && len(r.Claims) == 0 {
		c.ExecutorResources = DefaultExecutorResources()
	} else {
		c.ExecutorResources = *r.DeepCopy()
	}
	return c
}
