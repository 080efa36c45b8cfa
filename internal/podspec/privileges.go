package podspec

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

// mainIDs returns the UID and GID main will run as, when the StepRun fixes them: the container's
// runAsUser/runAsGroup win over the Pod's, as in Kubernetes itself. The image's USER is not
// consulted: the builder cannot see it, and it may name a user rather than a number.
func mainIDs(sr *v1alpha1.StepRun) (uid, gid *int64) {
	if psc := sr.Spec.PodSecurityContext; psc != nil {
		uid, gid = psc.RunAsUser, psc.RunAsGroup
	}
	if sc := sr.Spec.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = sc.RunAsGroup
		}
	}
	return uid, gid
}

// ExecutorPrivileged reports whether the executor must run as root with SYS_PTRACE, and says why
// in a short message for the StepRun's ExecutorPrivileged condition.
//
// Reading /proc/<pid>/root and /proc/<pid>/environ of a process with the same UID and GID and no
// more capabilities needs no privilege, so when main's UID and GID are both known the executor
// runs as them with nothing. Otherwise it cannot match main; and a main running as UID 0 holds
// the runtime's default capabilities, which an unprivileged reader lacks, so ptrace access is
// refused even at the same UID.
func ExecutorPrivileged(sr *v1alpha1.StepRun) (privileged bool, reason, message string) {
	if sr == nil {
		return true, v1alpha1.ReasonUIDOrGIDUnknown, "no StepRun"
	}
	uid, gid := mainIDs(sr)
	switch {
	case uid == nil && gid == nil:
		return true, v1alpha1.ReasonUIDOrGIDUnknown, "main's UID and GID are unknown (set runAsUser and runAsGroup); the executor runs as root with SYS_PTRACE"
	case uid == nil:
		return true, v1alpha1.ReasonUIDOrGIDUnknown, "main's UID is unknown (set runAsUser); the executor runs as root with SYS_PTRACE"
	case gid == nil:
		return true, v1alpha1.ReasonUIDOrGIDUnknown, "main's GID is unknown (set runAsGroup); the executor runs as root with SYS_PTRACE"
	case *uid == 0:
		return true, v1alpha1.ReasonMainRunsAsRoot, "main runs as UID 0; the executor runs as root with SYS_PTRACE"
	}
	return false, v1alpha1.ReasonUIDAndGIDKnown, fmt.Sprintf("the executor runs as main's UID %d and GID %d with no capabilities", *uid, *gid)
}

func privilegeOf(sr *v1alpha1.StepRun) executorconfig.Privilege {
	privileged, reason, message := ExecutorPrivileged(sr)
	return executorconfig.Privilege{Privileged: privileged, Reason: reason, Message: message}
}

// executorSecurityContext applies ExecutorPrivileged's decision. Both variants keep the root
// filesystem read-only: the executor writes nothing to it.
func executorSecurityContext(sr *v1alpha1.StepRun) *corev1.SecurityContext {
	if privileged, _, _ := ExecutorPrivileged(sr); privileged {
		// Root keeps the runtime's default capabilities (DAC_OVERRIDE among them, to read main's
		// files whoever owns them) and adds SYS_PTRACE to pass the ptrace access check on any main.
		// runAsNonRoot is set false explicitly so a Pod-level runAsNonRoot cannot block it.
		return &corev1.SecurityContext{
			RunAsUser:              new(int64(0)),
			RunAsNonRoot:           new(false),
			ReadOnlyRootFilesystem: new(true),
			Capabilities:           &corev1.Capabilities{Add: []corev1.Capability{"SYS_PTRACE"}},
		}
	}
	uid, gid := mainIDs(sr)
	// Everything Pod Security "restricted" asks for, so such a Pod is admitted there.
	return &corev1.SecurityContext{
		RunAsUser:                new(*uid),
		RunAsGroup:               new(*gid),
		RunAsNonRoot:             new(true),
		AllowPrivilegeEscalation: new(false),
		ReadOnlyRootFilesystem:   new(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}
