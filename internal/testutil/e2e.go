package testutil

import (
	"context"
	"fmt"
	"strings"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Builders the e2e suite (test/e2e) needs beyond the envtest ones: on a real kubelet the pull
// policy, environment, resources and security context matter.

// PullPolicy sets main's image pull policy.
func (w *StepRunWrapper) PullPolicy(p corev1.PullPolicy) *StepRunWrapper {
	w.Spec.ImagePullPolicy = p
	return w
}

// Env adds an environment variable to main.
func (w *StepRunWrapper) Env(name, value string) *StepRunWrapper {
	w.Spec.Env = append(w.Spec.Env, corev1.EnvVar{Name: name, Value: value})
	return w
}

// EnvFromConfigMap fills main's environment from a ConfigMap, each key prefixed by prefix.
func (w *StepRunWrapper) EnvFromConfigMap(name, prefix string) *StepRunWrapper {
	w.Spec.EnvFrom = append(w.Spec.EnvFrom, corev1.EnvFromSource{
		Prefix:       prefix,
		ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}},
	})
	return w
}

// Resources sets main's requests and limits.
func (w *StepRunWrapper) Resources(r corev1.ResourceRequirements) *StepRunWrapper {
	w.Spec.Resources = r
	return w
}

// SecurityContext sets main's security context as given.
func (w *StepRunWrapper) SecurityContext(sc *corev1.SecurityContext) *StepRunWrapper {
	w.Spec.SecurityContext = sc
	return w
}

// PullPolicy sets the template's image pull policy.
func (s *StepWrapper) PullPolicy(p corev1.PullPolicy) *StepWrapper {
	s.Template.ImagePullPolicy = p
	return s
}

// NodeSelector adds a node label main's Pod must land on.
func (w *StepRunWrapper) NodeSelector(key, value string) *StepRunWrapper {
	if w.Spec.NodeSelector == nil {
		w.Spec.NodeSelector = map[string]string{}
	}
	w.Spec.NodeSelector[key] = value
	return w
}

// Tolerate adds a toleration to the run's Pod.
func (w *StepRunWrapper) Tolerate(t corev1.Toleration) *StepRunWrapper {
	w.Spec.Tolerations = append(w.Spec.Tolerations, t)
	return w
}

// Affinity sets the run's Pod affinity.
func (w *StepRunWrapper) Affinity(a *corev1.Affinity) *StepRunWrapper {
	w.Spec.Affinity = a
	return w
}

// NodeSelector adds a node label every item's Pod must land on.
func (s *StepWrapper) NodeSelector(key, value string) *StepWrapper {
	if s.Template.NodeSelector == nil {
		s.Template.NodeSelector = map[string]string{}
	}
	s.Template.NodeSelector[key] = value
	return s
}

// LeaderPod names the Pod that holds a controller-runtime leader Lease, or "" when none does.
func LeaderPod(ctx context.Context, c client.Reader, namespace, lease string) (string, error) {
	l := &coordinationv1.Lease{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: lease}, l); err != nil {
		return "", fmt.Errorf("reading the leader lease %s/%s: %w", namespace, lease, err)
	}
	return HolderPod(ptr.Deref(l.Spec.HolderIdentity, "")), nil
}

// HolderPod names the Pod of a controller-runtime leader identity, "<hostname>_<uuid>" ("" for
// none): a Pod's hostname is its name.
func HolderPod(identity string) string {
	pod, _, found := strings.Cut(identity, "_")
	if !found {
		return ""
	}
	return pod
}
