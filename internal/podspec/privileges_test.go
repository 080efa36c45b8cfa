package podspec

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

func TestExecutorSecurityContext(t *testing.T) {
	u := func(v int64) *int64 { return &v }
	caps := func(add, drop []corev1.Capability) *corev1.Capabilities {
		return &corev1.Capabilities{Add: add, Drop: drop}
	}
	root := func(gid *int64, c *corev1.Capabilities) *corev1.SecurityContext {
		return &corev1.SecurityContext{
			RunAsUser: new(int64(0)), RunAsGroup: gid, RunAsNonRoot: new(false), ReadOnlyRootFilesystem: new(true),
			Capabilities: c,
		}
	}
	unprivileged := func(uid, gid int64) *corev1.SecurityContext {
		return &corev1.SecurityContext{
			RunAsUser: new(uid), RunAsGroup: new(gid), RunAsNonRoot: new(true),
			AllowPrivilegeEscalation: new(false), ReadOnlyRootFilesystem: new(true),
			Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		}
	}
	withMain := func(sc *corev1.SecurityContext) option {
		return func(sr *v1alpha1.StepRun) { sr.Spec.SecurityContext = sc }
	}
	ptrace := func(sr *v1alpha1.StepRun) { sr.Spec.Executor = &v1alpha1.ExecutorOptions{Ptrace: true} }
	tests := []struct {
		name        string
		opts        []option
		wantReason  string
		wantAdopt   bool
		wantMessage string // a substring
		want        *corev1.SecurityContext
	}{
		{"container level", []option{withIDs(u(1000), u(2000), nil, nil)}, v1alpha1.ReasonUIDAndGIDKnown, false, "UID 1000 and GID 2000", unprivileged(1000, 2000)},
		{"pod level", []option{withIDs(nil, nil, u(1001), u(2001))}, v1alpha1.ReasonUIDAndGIDKnown, false, "UID 1001 and GID 2001", unprivileged(1001, 2001)},
		{"container wins over pod", []option{withIDs(u(1000), u(2000), u(3000), u(4000))}, v1alpha1.ReasonUIDAndGIDKnown, false, "UID 1000 and GID 2000", unprivileged(1000, 2000)},
		{"uid on container, gid on pod", []option{withIDs(u(1000), nil, nil, u(2001))}, v1alpha1.ReasonUIDAndGIDKnown, false, "UID 1000 and GID 2001", unprivileged(1000, 2001)},
		{"gid 0 is fine", []option{withIDs(u(1000), u(0), nil, nil)}, v1alpha1.ReasonUIDAndGIDKnown, false, "GID 0", unprivileged(1000, 0)},
		// Unknown IDs: root with the runtime's defaults (which hold SETUID and SETGID), no SYS_PTRACE.
		{"only uid known", []option{withIDs(u(1000), nil, nil, nil)}, v1alpha1.ReasonUIDOrGIDUnknown, true, "GID is unknown", root(nil, nil)},
		{"only gid known", []option{withIDs(nil, u(1000), nil, nil)}, v1alpha1.ReasonUIDOrGIDUnknown, true, "UID is unknown", root(nil, nil)},
		{"unknown", nil, v1alpha1.ReasonUIDOrGIDUnknown, true, "UID and GID are unknown", root(nil, nil)},
		{"uid 0", []option{withIDs(u(0), u(0), nil, nil)}, v1alpha1.ReasonMainRunsAsRoot, false, "UID 0", root(u(0), nil)},
		{"uid 0 and a group", []option{withIDs(u(0), u(5), nil, nil)}, v1alpha1.ReasonMainRunsAsRoot, false, "UID 0", root(u(5), nil)},
		{"uid 0 at pod level, gid unknown", []option{withIDs(nil, nil, u(0), nil)}, v1alpha1.ReasonMainRunsAsRoot, true, "UID 0", root(nil, nil)},
		{"main adds a capability: mirrored", []option{withMain(&corev1.SecurityContext{
			RunAsUser: u(0), RunAsGroup: u(0), Capabilities: caps([]corev1.Capability{"NET_ADMIN"}, []corev1.Capability{"KILL"}),
		})}, v1alpha1.ReasonMainRunsAsRoot, false, "main's capabilities", root(u(0), caps([]corev1.Capability{"NET_ADMIN"}, []corev1.Capability{"KILL"}))},
		{"known root drops all: so does the executor", []option{withMain(&corev1.SecurityContext{
			RunAsUser: u(0), RunAsGroup: u(0), Capabilities: caps(nil, []corev1.Capability{"ALL"}),
		})}, v1alpha1.ReasonMainRunsAsRoot, false, "main's capabilities", root(u(0), caps(nil, []corev1.Capability{"ALL"}))},
		{"unknown uid drops all: the executor keeps what it needs to take main's IDs", []option{withMain(&corev1.SecurityContext{
			Capabilities: caps([]corev1.Capability{"NET_BIND_SERVICE"}, []corev1.Capability{"ALL"}),
		})}, v1alpha1.ReasonUIDOrGIDUnknown, true, "takes main's UID and GID",
			root(nil, caps([]corev1.Capability{"NET_BIND_SERVICE", "SETUID", "SETGID"}, []corev1.Capability{"ALL"}))},
		{"unknown uid drops setuid by another spelling", []option{withMain(&corev1.SecurityContext{
			Capabilities: caps(nil, []corev1.Capability{"cap_setuid", "MKNOD"}),
		})}, v1alpha1.ReasonUIDOrGIDUnknown, true, "takes main's UID and GID",
			root(nil, caps([]corev1.Capability{"SETUID"}, []corev1.Capability{"MKNOD"}))},
		{"privileged main: privileged executor", []option{withMain(&corev1.SecurityContext{Privileged: new(true), RunAsUser: u(5)})},
			v1alpha1.ReasonMainPrivileged, true, "privileged",
			&corev1.SecurityContext{RunAsUser: new(int64(0)), RunAsNonRoot: new(false), ReadOnlyRootFilesystem: new(true), Privileged: new(true)}},
		{"ptrace asked for", []option{withIDs(u(1000), u(1000), nil, nil), ptrace}, v1alpha1.ReasonPtraceRequested, false, "SYS_PTRACE",
			root(u(1000), caps([]corev1.Capability{"SYS_PTRACE"}, nil))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sr := stepRun(tt.opts...)
			got := ExecutorPrivileged(sr)
			wantPrivileged := tt.wantReason != v1alpha1.ReasonUIDAndGIDKnown
			if got.Privileged != wantPrivileged || got.Reason != tt.wantReason || got.AdoptMainIDs != tt.wantAdopt || !strings.Contains(got.Message, tt.wantMessage) {
				t.Errorf("ExecutorPrivileged = %+v; want privileged %v, reason %s, adopt %v, a message containing %q",
					got, wantPrivileged, tt.wantReason, tt.wantAdopt, tt.wantMessage)
			}
			pod := mustBuild(t, sr, testCfg)
			sc := container(t, pod, executorconfig.ExecutorContainer).SecurityContext
			if diff := cmp.Diff(tt.want, sc); diff != "" {
				t.Errorf("executor securityContext (-want +got):\n%s", diff)
			}
			if sc.Capabilities != nil && tt.wantReason != v1alpha1.ReasonPtraceRequested {
				for _, c := range sc.Capabilities.Add {
					if sameCapability(c, "SYS_PTRACE") {
						t.Errorf("the executor adds SYS_PTRACE without spec.executor.ptrace")
					}
				}
			}
			if diff := cmp.Diff(got, executorConfig(t, pod).Privilege); diff != "" {
				t.Errorf("the executor's config carries another decision (-want +got):\n%s", diff)
			}
			// main keeps exactly the user's.
			if diff := cmp.Diff(sr.Spec.SecurityContext, container(t, pod, executorconfig.MainContainer).SecurityContext); diff != "" {
				t.Errorf("main securityContext (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(sr.Spec.PodSecurityContext, pod.Spec.SecurityContext); diff != "" {
				t.Errorf("pod securityContext (-want +got):\n%s", diff)
			}
		})
	}
	if p := ExecutorPrivileged(nil); !p.Privileged {
		t.Error("ExecutorPrivileged(nil) is not privileged")
	}
}

func TestSameCapability(t *testing.T) {
	for _, tt := range []struct {
		a, b corev1.Capability
		want bool
	}{
		{"SETUID", "SETUID", true},
		{"CAP_SETUID", "SETUID", true},
		{"cap_setuid", "SETUID", true},
		{"setgid", "SETUID", false},
		{"ALL", "all", true},
	} {
		if got := sameCapability(tt.a, tt.b); got != tt.want {
			t.Errorf("sameCapability(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}
