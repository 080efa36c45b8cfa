package podspec

import (
	"fmt"
	"slices"
	"strings"

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

// ExecutorPrivileged decides the executor's privileges and says why, for the StepRun's
// ExecutorPrivileged condition.
//
// The kernel lets a process read another's /proc/<pid>/environ and open its /proc/<pid>/root
// without CAP_SYS_PTRACE when both have the same UIDs and GIDs and the target's permitted
// capabilities are a subset of the reader's effective ones. So the executor never needs
// SYS_PTRACE:
//   - main's UID and GID known and not root: the executor runs as them with nothing (restricted);
//   - main runs as root: the executor runs as root with main's own capability set (baseline);
//   - main's UID or GID unknown until it runs: the executor starts as root with main's
//     capabilities, plus SETUID and SETGID, and takes main's UID, GID and groups once it has
//     found main (AdoptMainIDs), before it opens main's root.
//
// SYS_PTRACE comes only from spec.executor.ptrace, and a privileged main makes a privileged
// executor (it must hold every capability main holds).
func ExecutorPrivileged(sr *v1alpha1.StepRun) executorconfig.Privilege {
	if sr == nil {
		return executorconfig.Privilege{Privileged: true, Reason: v1alpha1.ReasonUIDOrGIDUnknown, Message: "no StepRun"}
	}
	uid, gid := mainIDs(sr)
	adopt := uid == nil || gid == nil
	switch {
	case sr.Spec.Executor != nil && sr.Spec.Executor.Ptrace:
		return executorconfig.Privilege{Privileged: true, Reason: v1alpha1.ReasonPtraceRequested,
			Message: "spec.executor.ptrace is set: the executor runs as root with SYS_PTRACE"}
	case mainPrivileged(sr):
		return executorconfig.Privilege{Privileged: true, Reason: v1alpha1.ReasonMainPrivileged, AdoptMainIDs: adopt,
			Message: "main is privileged, so the executor is too: it must hold every capability main holds"}
	case uid != nil && *uid == 0:
		return executorconfig.Privilege{Privileged: true, Reason: v1alpha1.ReasonMainRunsAsRoot, AdoptMainIDs: adopt,
			Message: "main runs as UID 0; the executor runs as root with main's capabilities and no SYS_PTRACE"}
	case adopt:
		return executorconfig.Privilege{Privileged: true, Reason: v1alpha1.ReasonUIDOrGIDUnknown, AdoptMainIDs: true,
			Message: fmt.Sprintf("main's %s unknown until it runs (set runAsUser and runAsGroup to run the executor unprivileged); "+
				"the executor starts as root with main's capabilities and no SYS_PTRACE, and takes main's UID and GID once it finds main",
				unknownIDs(uid, gid))}
	}
	return executorconfig.Privilege{Reason: v1alpha1.ReasonUIDAndGIDKnown,
		Message: fmt.Sprintf("the executor runs as main's UID %d and GID %d with no capabilities", *uid, *gid)}
}

func unknownIDs(uid, gid *int64) string {
	switch {
	case uid == nil && gid == nil:
		return "UID and GID are"
	case uid == nil:
		return "UID is"
	}
	return "GID is"
}

func mainPrivileged(sr *v1alpha1.StepRun) bool {
	sc := sr.Spec.SecurityContext
	return sc != nil && sc.Privileged != nil && *sc.Privileged
}

// adoptionCapabilities are what the executor needs to take main's IDs: setfsuid/setresuid and
// setfsgid/setresgid/setgroups. Both are in every runtime's default set and allowed by Pod
// Security baseline.
var adoptionCapabilities = []corev1.Capability{"SETUID", "SETGID"}

// executorSecurityContext applies ExecutorPrivileged's decision. Every variant keeps the root
// filesystem read-only: the executor writes nothing to it.
func executorSecurityContext(sr *v1alpha1.StepRun) *corev1.SecurityContext {
	p := ExecutorPrivileged(sr)
	uid, gid := mainIDs(sr)
	if !p.Privileged {
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
	// Root; runAsNonRoot false explicitly so a Pod-level runAsNonRoot cannot block it.
	sc := &corev1.SecurityContext{
		RunAsUser:              new(int64(0)),
		RunAsNonRoot:           new(false),
		ReadOnlyRootFilesystem: new(true),
	}
	// main's GID, when known, spares the executor a change of group.
	if gid != nil && !p.AdoptMainIDs {
		sc.RunAsGroup = new(*gid)
	}
	switch p.Reason {
	case v1alpha1.ReasonPtraceRequested:
		sc.Capabilities = &corev1.Capabilities{Add: []corev1.Capability{"SYS_PTRACE"}}
	case v1alpha1.ReasonMainPrivileged:
		sc.Privileged = new(true)
	default:
		sc.Capabilities = mirroredCapabilities(sr.Spec.SecurityContext, p.AdoptMainIDs)
	}
	return sc
}

// mirroredCapabilities gives the executor main's capability set: the runtime's defaults with
// main's add and drop applied. With adopt it keeps SETUID and SETGID even where main drops them.
func mirroredCapabilities(main *corev1.SecurityContext, adopt bool) *corev1.Capabilities {
	var add, drop []corev1.Capability
	if main != nil && main.Capabilities != nil {
		add = slices.Clone(main.Capabilities.Add)
		drop = slices.Clone(main.Capabilities.Drop)
	}
	if adopt {
		dropsAll := slices.ContainsFunc(drop, func(c corev1.Capability) bool { return sameCapability(c, "ALL") })
		for _, needed := range adoptionCapabilities {
			dropped := slices.ContainsFunc(drop, func(c corev1.Capability) bool { return sameCapability(c, needed) })
			drop = slices.DeleteFunc(drop, func(c corev1.Capability) bool { return sameCapability(c, needed) })
			added := slices.ContainsFunc(add, func(c corev1.Capability) bool { return sameCapability(c, needed) })
			if (dropped || dropsAll) && !added {
				add = append(add, needed)
			}
		}
	}
	if len(add) == 0 && len(drop) == 0 {
		return nil
	}
	return &corev1.Capabilities{Add: add, Drop: drop}
}

// sameCapability compares capability names as runtimes do: case-insensitive, "CAP_" optional.
func sameCapability(a, b corev1.Capability) bool {
	norm := func(c corev1.Capability) string { return strings.TrimPrefix(strings.ToUpper(string(c)), "CAP_") }
	return norm(a) == norm(b)
}
