package testutil

import (
	corev1 "k8s.io/api/core/v1"
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
