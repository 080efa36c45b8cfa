//go:build e2e

package e2e

import (
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
	"github.com/pnsflow/pnsflow/internal/testutil"
)

// baselineNamespace is what Pod Security "baseline" enforcement looks like.
var baselineNamespace = map[string]string{"pod-security.kubernetes.io/enforce": "baseline"}

var _ = Describe("The executor holds no capability main lacks", func() {
	// main records its IDs and writes a value under /tmp; a third output is a file baked into the
	// image, read through main's root while main lives (the second of sleep). main also tries to
	// read the executor's environment and token: both must be refused whatever the executor's
	// mode (it is non-dumpable, and main has no SYS_PTRACE).
	const script = `
printf "$(id -u):$(id -g)" > /tmp/ids
printf tmp > /tmp/v
e=""
for p in /proc/[0-9]*; do
  case "$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)" in "/pns-executor run"*) e="${p#/proc/}" ;; esac
done
try() { if [ -z "$e" ]; then printf "no executor"; elif cat "$1" >/dev/null 2>&1; then printf read; else printf refused; fi; }
try "/proc/$e/environ" > /tmp/environ
try "/proc/$e/root/var/run/secrets/kubernetes.io/serviceaccount/token" > /tmp/token
sleep 1`
	withOutputs := func(w *testutil.StepRunWrapper) *testutil.StepRunWrapper {
		return shell(w, script).
			Output("ids", "/tmp/ids", nil).
			Output("v", "/tmp/v", nil).
			Output("baked", "/etc/pnsflow-baked", nil).
			Output("environ", "/tmp/environ", nil).
			Output("token", "/tmp/token", nil)
	}
	// run creates sr, expects it Succeeded with every output, and returns the executor's
	// securityContext after checking it adds no SYS_PTRACE.
	run := func(sr *v1alpha1.StepRun, ids, reason string) *corev1.SecurityContext {
		got := terminal(create(sr), runTimeout)
		Expect(got.Status.Phase).To(Equal(v1alpha1.StepRunSucceeded), describeStatus(got))
		Expect(outputs(got)).To(Equal(map[string]string{
			"ids": ids, "v": "tmp", "baked": "baked into the image", "environ": "refused", "token": "refused",
		}), describeStatus(got))
		priv := condition(got, v1alpha1.ConditionExecutorPrivileged)
		Expect(priv).NotTo(BeNil())
		Expect(priv.Reason).To(Equal(reason))
		Expect(priv.Status).To(Equal(map[bool]metav1.ConditionStatus{true: metav1.ConditionFalse, false: metav1.ConditionTrue}[reason == v1alpha1.ReasonUIDAndGIDKnown]))
		if reason == v1alpha1.ReasonUIDOrGIDUnknown {
			uid, gid, _ := strings.Cut(ids, ":")
			Expect(priv.Message).To(ContainSubstring("took main's UID %s and GID %s", uid, gid))
		}
		pods := podsOf(got)
		Expect(pods).To(HaveLen(1))
		Expect(pods[0].Spec.InitContainers).To(HaveLen(1))
		Expect(pods[0].Spec.InitContainers[0].Name).To(Equal(executorconfig.ExecutorContainer))
		sc := pods[0].Spec.InitContainers[0].SecurityContext
		if sc.Capabilities != nil {
			Expect(sc.Capabilities.Add).NotTo(ContainElement(corev1.Capability("SYS_PTRACE")))
		}
		return sc
	}

	It("busybox as root with no securityContext is admitted under baseline", func() {
		ns := newNamespace("baseline-root", baselineNamespace)
		sc := run(withOutputs(step("root", ns)).Obj(), "0:0", v1alpha1.ReasonUIDOrGIDUnknown)
		Expect(sc.Capabilities).To(BeNil(), "the runtime's defaults, as main has")
	})

	It("an image whose USER is 1000:1000, with no securityContext, is admitted under baseline", func() {
		ns := newNamespace("baseline-nonroot", baselineNamespace)
		// The kubelet hands the runtime the image's numeric UID alone; the runtime then takes the
		// GID from the image's /etc/passwd, which has no user 1000: main runs as 1000:0.
		run(withOutputs(step("nonroot", ns).Image(nonrootImage)).Obj(), "1000:0", v1alpha1.ReasonUIDOrGIDUnknown)
	})

	It("main dropping every capability is admitted under baseline; the executor keeps only SETUID and SETGID", func() {
		ns := newNamespace("baseline-dropall", baselineNamespace)
		sr := withOutputs(step("dropall", ns)).Obj()
		sr.Spec.SecurityContext = &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
		sc := run(sr, "0:0", v1alpha1.ReasonUIDOrGIDUnknown)
		Expect(sc.Capabilities.Drop).To(ConsistOf(corev1.Capability("ALL")))
		Expect(sc.Capabilities.Add).To(ConsistOf(corev1.Capability("SETUID"), corev1.Capability("SETGID")))
	})

	It("main adding NET_ADMIN (outside baseline): the executor mirrors it", func() {
		ns := newNamespace("netadmin", nil)
		sr := withOutputs(step("netadmin", ns)).Obj()
		sr.Spec.SecurityContext = &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}}}
		sc := run(sr, "0:0", v1alpha1.ReasonUIDOrGIDUnknown)
		Expect(sc.Capabilities.Add).To(ConsistOf(corev1.Capability("NET_ADMIN")))
	})

	It("main with a known non-root UID and GID is admitted under restricted, /tmp and image outputs included", func() {
		ns := newNamespace("restricted-tmp", restrictedNamespace)
		sc := run(withOutputs(step("known", ns)).RunAs(uid1000, gid1000).Restricted().Obj(), "1000:1000", v1alpha1.ReasonUIDAndGIDKnown)
		Expect(sc.RunAsUser).To(HaveValue(BeEquivalentTo(1000)))
	})
})
