//go:build e2e

package e2e

import (
	"regexp"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/podspec"
	"github.com/pnsflow/pnsflow/internal/testutil"
)

var (
	uid1000 = new(int64(1000))
	gid1000 = new(int64(1000))
	// restrictedNamespace is what Pod Security "restricted" enforcement looks like.
	restrictedNamespace = map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}
)

func emptyDir(name string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
}

func condition(sr *v1alpha1.StepRun, t string) *metav1.Condition {
	return meta.FindStatusCondition(sr.Status.Conditions, t)
}

var _ = Describe("A StepRun on a real kubelet", func() {
	It("writes an output file and prints to stdout: Succeeded, exit 0, output and result", func() {
		ns := newNamespace("output", nil)
		sr := create(shell(step("hello", ns), `echo "hello from main"; printf world > /pnsflow/outputs/greeting`).
			Output("greeting", "/pnsflow/outputs/greeting", nil).Obj())

		got := terminal(sr, runTimeout)
		Expect(got.Status.Phase).To(Equal(v1alpha1.StepRunSucceeded), describeStatus(got))
		Expect(got.Status.Reason).To(Equal(v1alpha1.ReasonSucceeded))
		Expect(got.Status.ExitCode).To(HaveValue(BeZero()))
		Expect(outputs(got)).To(Equal(map[string]string{"greeting": "world"}))
		Expect(result(got)).To(ContainSubstring("hello from main"))
		Expect(got.Status.PodName).To(Equal(podspec.PodName(sr.Name)))
		Expect(got.Status.StartedAt).NotTo(BeNil())
		Expect(got.Status.FinishedAt).NotTo(BeNil())
		Expect(got.Status.Duration).NotTo(BeEmpty())
		Expect(meta.IsStatusConditionTrue(got.Status.Conditions, v1alpha1.ConditionSucceeded)).To(BeTrue())
		Expect(podsOf(got)).To(HaveLen(1))
	})

	It("a main exiting 3 ends Failed with exit code 3", func() {
		ns := newNamespace("exit3", nil)
		sr := create(shell(step("three", ns), "exit 3").Obj())
		got := terminal(sr, runTimeout)
		Expect(got.Status.Phase).To(Equal(v1alpha1.StepRunFailed), describeStatus(got))
		Expect(got.Status.Reason).To(Equal(v1alpha1.ReasonExitCode))
		Expect(got.Status.ExitCode).To(HaveValue(BeEquivalentTo(3)))
		Expect(meta.IsStatusConditionFalse(got.Status.Conditions, v1alpha1.ConditionSucceeded)).To(BeTrue())
	})

	It("runs the image's entrypoint and CMD untouched when no command is given", func() {
		ns := newNamespace("entrypoint", nil)
		// localhost/pnsflow-entrypoint:test (hack/images/entrypoint.Dockerfile): ENTRYPOINT
		// ["/bin/sh", "/usr/local/bin/entrypoint.sh"], CMD ["default-arg"]; the script prints
		// its arguments and writes "ran" to $PNSFLOW_OUTPUTS/entrypoint and /tmp/entrypoint.
		sr := create(step("entry", ns).Image(entrypointImage).Command().
			Output("entrypoint", "/pnsflow/outputs/entrypoint", nil).Obj())
		got := terminal(sr, runTimeout)
		Expect(got.Status.Phase).To(Equal(v1alpha1.StepRunSucceeded), describeStatus(got))
		Expect(outputs(got)).To(HaveKeyWithValue("entrypoint", "ran"))
		Expect(result(got)).To(ContainSubstring("entrypoint ran with args: default-arg"))
		pod := podsOf(got)
		Expect(pod).To(HaveLen(1))
		Expect(pod[0].Spec.Containers[0].Command).To(BeEmpty(), "main's command stays the image's")
		Expect(pod[0].Spec.Containers[0].Args).To(BeEmpty())
	})

	Describe("privileges", func() {
		// main writes one output under /pnsflow/outputs and one on an emptyDir of its own, which
		// the executor reads from its own mount of that volume after main has exited.
		const script = `printf "$(id -u):$(id -g)" > /pnsflow/outputs/ids; printf on-volume > /data/v`
		withOutputs := func(w *testutil.StepRunWrapper) *testutil.StepRunWrapper {
			return w.Volume(emptyDir("data"), "/data").
				Output("ids", "/pnsflow/outputs/ids", nil).
				Output("v", "/data/v", nil)
		}

		It("admits main as UID 1000/GID 1000 under Pod Security restricted; the executor needs no privilege", func() {
			ns := newNamespace("restricted", restrictedNamespace)
			sr := create(withOutputs(shell(step("unprivileged", ns), script).RunAs(uid1000, gid1000).Restricted()).Obj())
			got := terminal(sr, runTimeout)
			Expect(got.Status.Phase).To(Equal(v1alpha1.StepRunSucceeded), describeStatus(got))
			Expect(outputs(got)).To(Equal(map[string]string{"ids": "1000:1000", "v": "on-volume"}))
			priv := condition(got, v1alpha1.ConditionExecutorPrivileged)
			Expect(priv).NotTo(BeNil())
			Expect(priv.Status).To(Equal(metav1.ConditionFalse))
			Expect(priv.Reason).To(Equal(v1alpha1.ReasonUIDAndGIDKnown))

			pods := podsOf(got)
			Expect(pods).To(HaveLen(1))
			exec := pods[0].Spec.InitContainers[0].SecurityContext
			Expect(exec.RunAsUser).To(HaveValue(BeEquivalentTo(1000)))
			Expect(exec.Capabilities.Add).To(BeEmpty())
			Expect(exec.Capabilities.Drop).To(ContainElement(corev1.Capability("ALL")))
		})

		It("ends Error/PodForbidden with the admission message within seconds when the GID is unknown under restricted", func() {
			ns := newNamespace("forbidden", restrictedNamespace)
			sr := create(withOutputs(shell(step("gidless", ns), script).RunAs(uid1000, nil).Restricted()).Obj())
			got := terminal(sr, 30*time.Second)
			Expect(got.Status.Phase).To(Equal(v1alpha1.StepRunError), describeStatus(got))
			Expect(got.Status.Reason).To(Equal(v1alpha1.ReasonPodForbidden))
			Expect(got.Status.Message).To(ContainSubstring("violates PodSecurity"))
			Expect(got.Status.Message).To(ContainSubstring("restricted"))
			took := got.Status.FinishedAt.Sub(got.CreationTimestamp.Time)
			Expect(took).To(BeNumerically("<=", 10*time.Second), "refused %s after creation", took)
			Expect(podsOf(got)).To(BeEmpty())
			AddReportEntry("PodForbidden after", took.String())
		})

		It("takes main's IDs when its GID is unknown, under baseline, and says so", func() {
			ns := newNamespace("adopt", baselineNamespace)
			sr := create(withOutputs(shell(step("gidless", ns), script).RunAs(uid1000, nil).Restricted()).Obj())
			got := terminal(sr, runTimeout)
			Expect(got.Status.Phase).To(Equal(v1alpha1.StepRunSucceeded), describeStatus(got))
			Expect(outputs(got)).To(Equal(map[string]string{"ids": "1000:0", "v": "on-volume"}))
			priv := condition(got, v1alpha1.ConditionExecutorPrivileged)
			Expect(priv).NotTo(BeNil())
			Expect(priv.Status).To(Equal(metav1.ConditionTrue))
			Expect(priv.Reason).To(Equal(v1alpha1.ReasonUIDOrGIDUnknown))
			pods := podsOf(got)
			Expect(pods).To(HaveLen(1))
			// main drops ALL: the executor keeps only what taking main's IDs needs.
			Expect(pods[0].Spec.InitContainers[0].SecurityContext.Capabilities.Add).To(ConsistOf(corev1.Capability("SETUID"), corev1.Capability("SETGID")))
		})
	})

	It("writes stdin to main", func() {
		ns := newNamespace("stdin", nil)
		const in = "first line\nsecond line: 42\n"
		sr := create(shell(step("stdin", ns), `cat > /pnsflow/outputs/in; echo "read $(wc -l < /pnsflow/outputs/in) lines"`).
			RunAs(uid1000, gid1000).Stdin(in).Output("in", "/pnsflow/outputs/in", nil).Obj())
		got := terminal(sr, runTimeout)
		Expect(got.Status.Phase).To(Equal(v1alpha1.StepRunSucceeded), describeStatus(got))
		Expect(outputs(got)).To(HaveKeyWithValue("in", strings.TrimSuffix(in, "\n")), "one trailing newline trimmed")
		Expect(result(got)).To(ContainSubstring("read 2 lines"))
	})

	It("passes env, envFrom, volumeMounts, resources and securityContext to main", func() {
		ns := newNamespace("passthrough", nil)
		Expect(k8s.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: ns},
			Data:       map[string]string{"COLOR": "blue", "greeting.txt": "hi from a ConfigMap"},
		})).To(Succeed())
		cm := corev1.Volume{Name: "settings", VolumeSource: corev1.VolumeSource{
			ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}}}
		// main reports what it sees, one output each. The limits are read from main's own cgroup
		// (v1 memory/cpu controllers, or v2's unified files): what the runtime enforces.
		script := strings.Join([]string{
			`o=/pnsflow/outputs`,
			`printf %s "$FOO" > $o/env`,
			`printf %s "$CM_COLOR" > $o/envfrom`,
			`cat /etc/settings/greeting.txt > $o/configmap`,
			`echo scratch-ok > /scratch/f && cat /scratch/f > $o/emptydir`,
			`(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max) > $o/memory`,
			`(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d" " -f1 /sys/fs/cgroup/cpu.max) > $o/cpu`,
			`printf "$(id -u):$(id -g)" > $o/ids`,
			`if touch /rootfs-probe 2>/dev/null; then echo writable; else echo read-only; fi > $o/rootfs`,
			`grep CapBnd /proc/self/status | cut -f2 > $o/capbnd`,
			`grep NoNewPrivs /proc/self/status | cut -f2 > $o/nonewprivs`,
		}, "\n")
		w := shell(step("passthrough", ns), script).
			Env("FOO", "bar").
			EnvFromConfigMap("settings", "CM_").
			Volume(emptyDir("scratch"), "/scratch").
			Volume(cm, "/etc/settings").
			Resources(corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("48Mi")},
			}).
			SecurityContext(&corev1.SecurityContext{
				RunAsUser: uid1000, RunAsGroup: new(int64(3000)),
				ReadOnlyRootFilesystem:   new(true),
				AllowPrivilegeEscalation: new(false),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			})
		for _, name := range []string{"env", "envfrom", "configmap", "emptydir", "memory", "cpu", "ids", "rootfs", "capbnd", "nonewprivs"} {
			w = w.Output(name, "/pnsflow/outputs/"+name, nil)
		}
		got := terminal(create(w.Obj()), runTimeout)
		Expect(got.Status.Phase).To(Equal(v1alpha1.StepRunSucceeded), describeStatus(got))
		Expect(outputs(got)).To(Equal(map[string]string{
			"env":        "bar",
			"envfrom":    "blue",
			"configmap":  "hi from a ConfigMap",
			"emptydir":   "scratch-ok",
			"memory":     "50331648", // 48Mi
			"cpu":        "50000",    // 500m of the default 100ms CFS period
			"ids":        "1000:3000",
			"rootfs":     "read-only",
			"capbnd":     "0000000000000000",
			"nonewprivs": "1",
		}))
	})

	It("ends Error/ImagePullFailed in bounded time for an image that does not exist", func() {
		ns := newNamespace("image", nil)
		// IfNotPresent: kubelet tries to pull, fails (no such registry), backs off; the
		// controller gives up after --image-pull-grace (60 s by default).
		missing := create(shell(step("missing", ns).Image("localhost/pnsflow-e2e-does-not-exist:v1"), "true").Obj())
		// Never: kubelet refuses at once (ErrImageNeverPull), a permanent image error.
		never := create(shell(step("never", ns).Image("localhost/pnsflow-e2e-does-not-exist:v1").
			PullPolicy(corev1.PullNever), "true").Obj())

		got := terminal(never, time.Minute)
		Expect(got.Status.Phase).To(Equal(v1alpha1.StepRunError), describeStatus(got))
		Expect(got.Status.Reason).To(Equal(v1alpha1.ReasonImagePullFailed))
		Expect(got.Status.Message).To(ContainSubstring("ErrImageNeverPull"))
		AddReportEntry("ImagePullFailed (pull policy Never) after", got.Status.FinishedAt.Sub(got.CreationTimestamp.Time).String())

		got = terminal(missing, 150*time.Second)
		Expect(got.Status.Phase).To(Equal(v1alpha1.StepRunError), describeStatus(got))
		Expect(got.Status.Reason).To(Equal(v1alpha1.ReasonImagePullFailed))
		Expect(got.Status.Message).To(ContainSubstring("container main"))
		Expect(got.Status.Message).To(MatchRegexp("ErrImagePull|ImagePullBackOff"))
		took := got.Status.FinishedAt.Sub(got.CreationTimestamp.Time)
		Expect(took).To(BeNumerically("<=", 2*time.Minute))
		AddReportEntry("ImagePullFailed (pull policy IfNotPresent) after", took.String())
	})

	Describe("losing the Pod or the executor mid-run", func() {
		It("ends Error/PodDeleted when the Pod is deleted while main runs", func() {
			ns := newNamespace("poddeleted", nil)
			sr := create(shell(step("deleted", ns), "sleep 300").Obj())
			inPhase(sr, v1alpha1.StepRunRunning, runTimeout)
			Expect(k8s.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: podspec.PodName(sr.Name)}})).To(Succeed())
			// kubelet stops both containers (30 s grace at most), the executor gives up after
			// SIGTERM once it sees the Pod being deleted; the run must then say the Pod was deleted.
			got := terminal(sr, 90*time.Second)
			Expect(got.Status.Phase).To(Equal(v1alpha1.StepRunError), describeStatus(got))
			Expect(got.Status.Reason).To(Equal(v1alpha1.ReasonPodDeleted), describeStatus(got))
		})

		It("restarts the executor killed while main runs: Succeeded with main's exit code and its output, the restart recorded", func() {
			ns := newNamespace("executorkilled", nil)
			// main runs as root (no runAsUser: the executor runs as root too), waits until the
			// first "/pns-executor run" process is gone and a new one runs (kubelet restarted the
			// sidecar), writes its output and exits 0 (9 if that takes over two minutes). The test
			// kills the executor from main with `kubectl exec` once the run is Running: root main
			// holds CAP_KILL, so SIGKILL reaches the (non-dumpable) executor; no node access or
			// container runtime CLI is needed.
			const waitForNewExecutor = `
executor_pid() {
  for p in /proc/[0-9]*; do
    case "$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)" in "/pns-executor run"*) echo "${p#/proc/}"; return 0 ;; esac
  done
  return 1
}
first=$(executor_pid) || exit 8
i=0
until now=$(executor_pid) && [ "$now" != "$first" ]; do
  i=$((i+1)); [ "$i" -gt 600 ] && exit 9
  sleep 0.2
done
echo -n "after restart" > $PNSFLOW_OUTPUTS/v
exit 0`
			sr := create(shell(step("killed", ns), waitForNewExecutor).
				Output("v", "/pnsflow/outputs/v", nil).Obj())
			inPhase(sr, v1alpha1.StepRunRunning, runTimeout)
			out, err := kubectl("exec", "-n", ns, podspec.PodName(sr.Name), "-c", "main", "--", "sh", "-c", `
for p in /proc/[0-9]*; do
  case "$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)" in
    "/pns-executor run"*) kill -KILL "${p#/proc/}" && echo "killed ${p#/proc/}" ;;
  esac
done`)
			Expect(err).NotTo(HaveOccurred(), out)
			Expect(out).To(ContainSubstring("killed"))

			got := terminal(sr, runTimeout)
			Expect(got.Status.Phase).To(Equal(v1alpha1.StepRunSucceeded), describeStatus(got))
			Expect(got.Status.ExitCode).To(HaveValue(BeEquivalentTo(0)))
			Expect(outputs(got)).To(HaveKeyWithValue("v", "after restart"))
			Expect(got.Status.ExecutorRestarts).To(BeNumerically(">=", 1), "the StepRun records the restart")
			pod := &corev1.Pod{}
			Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: got.Status.PodName}, pod)).To(Succeed())
			Expect(pod.Status.InitContainerStatuses).To(ContainElement(And(
				HaveField("Name", "pns-executor"), HaveField("RestartCount", BeNumerically(">=", int32(1))))))
			Expect(podsOf(got)).To(HaveLen(1), "the same Pod, not a new one")
		})

		It("retries the executor whose container the runtime failed to start: kubelet restarts it and the run ends Succeeded", func() {
			ns := newNamespace("executorstart", nil)
			// The kind node's runc wrapper fails the first `runc create` of the named container, as
			// runc does when it cannot join the Pod's namespaces (hack/kind/README.md).
			sr := create(shell(step("startfault", ns), `echo -n ok > $PNSFLOW_OUTPUTS/v`).
				Annotation(faultAnnotation, "pns-executor").
				Output("v", "/pnsflow/outputs/v", nil).Obj())
			got := terminal(sr, 2*runTimeout)
			Expect(got.Status.Phase).To(Equal(v1alpha1.StepRunSucceeded), describeStatus(got))
			Expect(outputs(got)).To(HaveKeyWithValue("v", "ok"))
			pod := &corev1.Pod{}
			Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: got.Status.PodName}, pod)).To(Succeed())
			Expect(pod.Status.InitContainerStatuses).To(ContainElement(And(
				HaveField("Name", "pns-executor"), HaveField("RestartCount", BeNumerically(">=", int32(1))))),
				"the injected failure happened and kubelet started the executor again")
			Expect(got.Status.ExecutorRestarts).To(BeNumerically(">=", 1))
			AddReportEntry("injected executor start failure → Succeeded after", got.Status.FinishedAt.Sub(got.CreationTimestamp.Time).String())
		})

		It("ends Error/MainStartFailed, marked never started, when the runtime cannot start main", func() {
			ns := newNamespace("mainstart", nil)
			sr := create(shell(step("mainfault", ns), `echo never`).Annotation(faultAnnotation, "main").Obj())
			got := terminal(sr, runTimeout)
			Expect(got.Status.Phase).To(Equal(v1alpha1.StepRunError), describeStatus(got))
			Expect(got.Status.Reason).To(Equal(v1alpha1.ReasonMainStartFailed), describeStatus(got))
			Expect(got.Status.MainNeverStarted()).To(BeTrue(), "MainStarted=False: safe to retry")
			Expect(got.Status.NeverStartedInfrastructureFailure()).To(BeTrue())
			Expect(got.Status.StartedAt).To(BeNil(), "no impossible start time")
			Expect(got.Status.Duration).To(BeEmpty(), "no duration from an impossible start time")
		})
	})

	It("kubectl get stepruns shows NAME PHASE EXIT POD DURATION AGE with sensible values", func() {
		ns := newNamespace("columns", nil)
		sr := create(shell(step("columns", ns), "sleep 1").Obj())
		got := terminal(sr, runTimeout)
		Expect(got.Status.Phase).To(Equal(v1alpha1.StepRunSucceeded), describeStatus(got))

		out, err := kubectl("get", "stepruns", "-n", ns)
		Expect(err).NotTo(HaveOccurred(), out)
		GinkgoWriter.Print(out)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		Expect(lines).To(HaveLen(2))
		Expect(strings.Fields(lines[0])).To(Equal([]string{"NAME", "PHASE", "EXIT", "POD", "DURATION", "AGE"}))
		row := strings.Fields(lines[1])
		Expect(row).To(HaveLen(6), lines[1])
		Expect(row[:4]).To(Equal([]string{"columns", "Succeeded", "0", "columns-pod"}))
		Expect(row[4]).To(BeElementOf("1s", "2s"), "main slept one second")
		Expect(row[5]).To(MatchRegexp(`^[0-9]+s$`), "age of a run made seconds ago")

		out, err = kubectl("get", "sr", "-n", ns, "-o", "wide")
		Expect(err).NotTo(HaveOccurred(), out)
		lines = strings.Split(strings.TrimSpace(out), "\n")
		Expect(strings.Fields(lines[0])).To(Equal([]string{"NAME", "PHASE", "EXIT", "POD", "DURATION", "REASON", "AGE"}))
		Expect(regexp.MustCompile(`^columns\s+Succeeded\s+0\s+columns-pod\s+\S+\s+Succeeded\s+`).MatchString(lines[1])).
			To(BeTrue(), lines[1])
	})
})
