// Package testutil holds builders that keep tests short: MakeStepRun(name, ns).Image(..).Obj().
package testutil

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

// StepRunWrapper builds a StepRun.
type StepRunWrapper struct{ v1alpha1.StepRun }

// MakeStepRun starts a StepRun running busybox `true`.
func MakeStepRun(name, namespace string) *StepRunWrapper {
	return &StepRunWrapper{v1alpha1.StepRun{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec:       v1alpha1.StepRunSpec{Image: "busybox:1.36", Command: []string{"true"}},
	}}
}

// Obj returns the built StepRun.
func (w *StepRunWrapper) Obj() *v1alpha1.StepRun { return w.StepRun.DeepCopy() }

// Image sets main's image.
func (w *StepRunWrapper) Image(image string) *StepRunWrapper { w.Spec.Image = image; return w }

// Command sets main's command (nil keeps the image's entrypoint).
func (w *StepRunWrapper) Command(cmd ...string) *StepRunWrapper { w.Spec.Command = cmd; return w }

// Args sets main's args.
func (w *StepRunWrapper) Args(args ...string) *StepRunWrapper { w.Spec.Args = args; return w }

// RunAs sets main's UID and GID (container level); a nil leaves it unknown.
func (w *StepRunWrapper) RunAs(uid, gid *int64) *StepRunWrapper {
	if w.Spec.SecurityContext == nil {
		w.Spec.SecurityContext = &corev1.SecurityContext{}
	}
	w.Spec.SecurityContext.RunAsUser, w.Spec.SecurityContext.RunAsGroup = uid, gid
	return w
}

// Restricted makes main's securityContext satisfy Pod Security "restricted".
func (w *StepRunWrapper) Restricted() *StepRunWrapper {
	if w.Spec.SecurityContext == nil {
		w.Spec.SecurityContext = &corev1.SecurityContext{}
	}
	sc := w.Spec.SecurityContext
	sc.RunAsNonRoot = new(true)
	sc.AllowPrivilegeEscalation = new(false)
	sc.Capabilities = &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}
	sc.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}
	return w
}

// Output declares an output parameter read from path, with an optional default.
func (w *StepRunWrapper) Output(name, path string, def *string) *StepRunWrapper {
	if w.Spec.Outputs == nil {
		w.Spec.Outputs = &v1alpha1.Outputs{}
	}
	w.Spec.Outputs.Parameters = append(w.Spec.Outputs.Parameters,
		v1alpha1.OutputParameter{Name: name, ValueFrom: v1alpha1.OutputValueFrom{Path: path}, Default: def})
	return w
}

// Stdin sets the content written to main's stdin.
func (w *StepRunWrapper) Stdin(s string) *StepRunWrapper { w.Spec.Stdin = &s; return w }

// ServiceAccount sets the Pod's (and so the executor's) service account.
func (w *StepRunWrapper) ServiceAccount(name string) *StepRunWrapper {
	w.Spec.ServiceAccountName = name
	return w
}

// Deadline sets activeDeadlineSeconds.
func (w *StepRunWrapper) Deadline(seconds int64) *StepRunWrapper {
	w.Spec.ActiveDeadlineSeconds = &seconds
	return w
}

// Label sets a label.
// Annotation sets an annotation on the StepRun (copied to its Pod).
func (w *StepRunWrapper) Annotation(k, v string) *StepRunWrapper {
	if w.Annotations == nil {
		w.Annotations = map[string]string{}
	}
	w.Annotations[k] = v
	return w
}

func (w *StepRunWrapper) Label(k, v string) *StepRunWrapper {
	if w.Labels == nil {
		w.Labels = map[string]string{}
	}
	w.Labels[k] = v
	return w
}

// Volume adds a Pod volume and mounts it into main at path.
func (w *StepRunWrapper) Volume(v corev1.Volume, path string) *StepRunWrapper {
	w.Spec.Volumes = append(w.Spec.Volumes, v)
	w.Spec.VolumeMounts = append(w.Spec.VolumeMounts, corev1.VolumeMount{Name: v.Name, MountPath: path})
	return w
}
