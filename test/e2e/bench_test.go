//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
	"github.com/pnsflow/pnsflow/internal/testutil"
)

// benchN is how many StepRuns and how many bare Pods `make bench-e2e` runs.
const benchN = 20

// cgroupPoller samples, inside the kind node, every Pod container's cgroup every 20 ms: its peak
// memory, memory.max_usage_in_bytes (cgroup v1) or memory.peak (v2) — the kernel's own
// high-water mark, so sampling loses nothing but what happens after the last sample — and its
// CPU time, cpuacct.usage in ns (v1) or the usage_usec line of cpu.stat (v2, printed in ns),
// which only grows, so the last sample before the cgroup disappears is the container's total
// (less its last 20 ms at most, usually its exit). The last sample usually comes after the
// container's processes exited: the runtime removes the cgroup a little later. Values are kept
// per cgroup directory (named after the container ID) and printed, "<dir> <peak bytes> <cpu ns>",
// when the stop file appears. It runs until stopped or for an hour at most.
const cgroupPoller = `
set -u
shopt -s nullglob
if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
  mbase=/sys/fs/cgroup; cbase=/sys/fs/cgroup; mfile=memory.peak; cfile=cpu.stat
else
  mbase=/sys/fs/cgroup/memory; cbase=/sys/fs/cgroup/cpuacct; mfile=memory.max_usage_in_bytes; cfile=cpuacct.usage
  [ -d "$cbase" ] || cbase=/sys/fs/cgroup/cpu,cpuacct
fi
# kubelet's pod cgroups: <root>/[<qos>/]pod<uid> (cgroupfs) or <root>/[<qos>.slice/]...-pod<uid>.slice
# (systemd), root being kubepods or ...kubepods.slice, possibly under kubelet's cgroupRoot; the
# same path under each v1 controller's hierarchy.
root=$(find "$mbase" -maxdepth 3 -type d \( -name kubepods -o -name '*kubepods.slice' \) -print -quit)
[ -n "$root" ] || { echo "no kubepods cgroup under $mbase" >&2; exit 1; }
echo "sampling $root/.../$mfile and $cbase${root#"$mbase"}/.../$cfile" >&2
declare -A peak cpu
deadline=$((SECONDS + 3600))
while [ ! -e "$STOP" ] && [ "$SECONDS" -lt "$deadline" ]; do
  for d in "$root"/*/*pod[0-9a-f]*/*/ "$root"/*pod[0-9a-f]*/*/; do
    d=${d%/}; id=${d##*/}
    if { read -r v < "$d/$mfile"; } 2>/dev/null && [ "${peak[$id]:-0}" -lt "$v" ]; then peak[$id]=$v; fi
    # cpu.stat's first line is "usage_usec N"; cpuacct.usage is "N" (ns).
    if { read -r a b < "$cbase${d#"$mbase"}/$cfile"; } 2>/dev/null; then
      if [ -n "$b" ]; then v=$((b * 1000)); else v=$a; fi
      if [ "${cpu[$id]:-0}" -lt "$v" ]; then cpu[$id]=$v; fi
    fi
  done
  sleep 0.02
done
for d in "${!peak[@]}"; do echo "$d ${peak[$d]} ${cpu[$d]:-0}"; done
`

// cpuTarget is what the executor may use of CPU per step at 20 concurrent starts.
const cpuTarget = 100 * time.Millisecond

// nodeExec runs a command in the kind node's container (a kind node is a Docker container named
// after the node). Docker is what kind runs on; E2E_DOCKER names the client to use (the one
// hack/kind put first on PATH, when present).
func dockerBin() string {
	if d := os.Getenv("E2E_DOCKER"); d != "" {
		return d
	}
	if d, err := filepath.Abs(filepath.Join("..", "..", "bin", "kind", "run", "client", "docker")); err == nil {
		if _, err := os.Stat(d); err == nil {
			return d
		}
	}
	return "docker"
}

// bootNow reads CLOCK_BOOTTIME, the clock of /proc/uptime in every container on this kernel.
func bootNow() time.Duration {
	var ts unix.Timespec
	Expect(unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)).To(Succeed())
	return time.Duration(ts.Nano())
}

// pct is the nearest-rank percentile p (0-100) of xs.
func pct(xs []time.Duration, p float64) time.Duration {
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(i, 0)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// executorContainerID is the runtime's ID of the executor's container, "" before it has one.
func executorContainerID(pod *corev1.Pod) string {
	if cs := executorconfig.ExecutorStatus(pod); cs != nil {
		_, id, _ := strings.Cut(cs.ContainerID, "://")
		return id
	}
	return ""
}

// cgroupSample is what the poller kept of one container's cgroup.
type cgroupSample struct {
	peak int64
	cpu  time.Duration
}

// runTogether creates n StepRuns of `true` at once and returns each one's create → terminal time
// (from the first create, as seen by a watch) and their executors' container IDs, once every
// executor has terminated, so that the poller's last sample of its cgroup is its total.
func runTogether(ns, prefix string, n int) (took []time.Duration, ids, pods []string) {
	runs := make([]*v1alpha1.StepRun, n)
	for i := range runs {
		runs[i] = benchStep(fmt.Sprintf("%s-%02d", prefix, i), ns).Command("true").Obj()
	}
	start := time.Now()
	for _, sr := range runs {
		Expect(k8s.Create(ctx, sr)).To(Succeed())
	}
	done, seen, errs := make([]*v1alpha1.StepRun, n), make([]time.Time, n), make([]error, n)
	var wg sync.WaitGroup
	for i, sr := range runs {
		wg.Go(func() { done[i], seen[i], errs[i] = awaitStepRun(ctx, key(sr), 5*time.Minute, isTerminal) })
	}
	wg.Wait()
	for i, sr := range done {
		Expect(errs[i]).NotTo(HaveOccurred())
		Expect(sr.Status.Phase).To(Equal(v1alpha1.StepRunSucceeded), describeStatus(sr))
		took = append(took, seen[i].Sub(start))
	}
	for _, sr := range done {
		pod := &corev1.Pod{}
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: sr.Status.PodName}, pod)).To(Succeed())
			cs := executorconfig.ExecutorStatus(pod)
			g.Expect(cs).NotTo(BeNil(), "no status of the executor")
			g.Expect(cs.State.Terminated).NotTo(BeNil(), "the executor has not terminated yet")
		}).WithTimeout(2 * time.Minute).WithPolling(200 * time.Millisecond).Should(Succeed())
		ids = append(ids, executorContainerID(pod))
		pods = append(pods, pod.Name)
	}
	return took, ids, pods
}

// executorOwnCPU is the CPU time the executor process logged with its report, for each Pod: its
// own share of what its cgroup is charged (the cgroup also pays the runtime's start of the
// container and the startup probe's execs).
func executorOwnCPU(ns string, pods []string) []time.Duration {
	cs, err := kubernetes.NewForConfig(cfg)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	var cpu []time.Duration
	for _, pod := range pods {
		raw, err := cs.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: executorconfig.ExecutorContainer}).DoRaw(ctx)
		ExpectWithOffset(1, err).NotTo(HaveOccurred(), "the executor's log of %s", pod)
		for _, line := range strings.Split(string(raw), "\n") {
			var entry struct{ Msg, CPU string }
			if json.Unmarshal([]byte(line), &entry) != nil || entry.Msg != "Reported" {
				continue
			}
			d, err := time.ParseDuration(entry.CPU)
			ExpectWithOffset(1, err).NotTo(HaveOccurred(), "cpu of %q", line)
			cpu = append(cpu, d)
		}
	}
	ExpectWithOffset(1, cpu).To(HaveLen(len(pods)), "one Reported line with its CPU per executor")
	slices.Sort(cpu)
	return cpu
}

func mainFinishedAt(pod *corev1.Pod) time.Time {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == "main" && cs.State.Terminated != nil {
			return cs.State.Terminated.FinishedAt.Time
		}
	}
	return time.Time{}
}

// benchNodeName is the node every bench Pod is pinned to: the poller reads its cgroups, and bare
// Pods and StepRuns compare only on the same kubelet.
var benchNodeName string

// benchNode picks the bench's node, E2E_NODE_CONTAINER (a kind node's container is named as the
// node), else the only node, else the first worker (KIND_WORKERS), and pins the bench to it.
func benchNode() string {
	node := os.Getenv("E2E_NODE_CONTAINER")
	if node == "" {
		nodes := &corev1.NodeList{}
		ExpectWithOffset(1, k8s.List(ctx, nodes)).To(Succeed())
		for _, n := range nodes.Items {
			if len(nodes.Items) == 1 || n.Labels[workerLabel] == "w1" {
				node = n.Name
			}
		}
		ExpectWithOffset(1, node).NotTo(BeEmpty(), "several nodes, none the worker w1: set E2E_NODE_CONTAINER")
	}
	benchNodeName = node
	return node
}

// benchStep is a StepRun of the busybox test image pinned to the bench's node.
func benchStep(name, ns string) *testutil.StepRunWrapper {
	return step(name, ns).NodeSelector(corev1.LabelHostname, benchNodeName)
}

var _ = Describe("bench-e2e: the executor's cost on a real node", Label("bench"), Serial, Ordered, func() {
	It("measures StepRuns against bare Pods running `true`, the executor's memory and CPU, and its report latency", func() {
		ns := newNamespace("bench", nil)
		Eventually(func() error {
			return k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "default"}, &corev1.ServiceAccount{})
		}).Should(Succeed(), "the namespace's default ServiceAccount (bare Pods need it)")

		By("starting the cgroup memory and CPU poller in the node")
		node := benchNode()
		stop := fmt.Sprintf("/run/pnsflow-bench-%d.stop", time.Now().UnixNano())
		poller := exec.Command(dockerBin(), "exec", "-e", "STOP="+stop, node, "bash", "-c", cgroupPoller)
		var pollOut, pollErr bytes.Buffer
		poller.Stdout, poller.Stderr = &pollOut, &pollErr
		Expect(poller.Start()).To(Succeed())
		pollerDone := make(chan error, 1)
		go func() { pollerDone <- poller.Wait() }()
		var stopOnce sync.Once
		stopPoller := func() {
			stopOnce.Do(func() {
				_ = exec.Command(dockerBin(), "exec", node, "touch", stop).Run()
				select {
				case <-pollerDone:
				case <-time.After(30 * time.Second):
					_ = poller.Process.Kill()
				}
				_ = exec.Command(dockerBin(), "exec", node, "rm", "-f", stop).Run()
			})
		}
		DeferCleanup(stopPoller)

		var srTimes, podTimes, podMainTimes, exitToReport []time.Duration
		var executorIDs, executorPods, bareIDs []string
		By(fmt.Sprintf("running %d StepRuns and %d bare Pods of `true`, one after another, alternating", benchN, benchN))
		for i := range benchN {
			sr := benchStep(fmt.Sprintf("sr-%02d", i), ns).Command("true").Obj()
			start := time.Now()
			Expect(k8s.Create(ctx, sr)).To(Succeed())
			got, seen, err := awaitStepRun(ctx, key(sr), runTimeout, isTerminal)
			Expect(err).NotTo(HaveOccurred())
			Expect(got.Status.Phase).To(Equal(v1alpha1.StepRunSucceeded), describeStatus(got))
			srTimes = append(srTimes, seen.Sub(start))
			pod := &corev1.Pod{}
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: got.Status.PodName}, pod)).To(Succeed())
			// kubelet's finishedAt has one-second resolution (RFC 3339 seconds): this lag is
			// over-stated by up to 1 s (0.5 s on average); the uptime runs below are exact.
			exitToReport = append(exitToReport, seen.Sub(mainFinishedAt(pod)))
			executorIDs = append(executorIDs, executorContainerID(pod))
			executorPods = append(executorPods, pod.Name)

			bare := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%02d", i), Namespace: ns},
				Spec: corev1.PodSpec{
					RestartPolicy:                corev1.RestartPolicyNever,
					AutomountServiceAccountToken: new(false),
					NodeSelector:                 map[string]string{corev1.LabelHostname: benchNodeName},
					Containers: []corev1.Container{{Name: "main", Image: busyboxImage,
						ImagePullPolicy: corev1.PullIfNotPresent, Command: []string{"true"}}},
				},
			}
			start = time.Now()
			Expect(k8s.Create(ctx, bare)).To(Succeed())
			var mainEnded time.Time
			donePod, seen, err := awaitPod(ctx, key(bare), runTimeout, func(p *corev1.Pod) bool {
				if mainEnded.IsZero() && !mainFinishedAt(p).IsZero() {
					mainEnded = time.Now() // the watch delivered main's terminated state
				}
				return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
			})
			Expect(err).NotTo(HaveOccurred())
			Expect(donePod.Status.Phase).To(Equal(corev1.PodSucceeded))
			podTimes = append(podTimes, seen.Sub(start))
			podMainTimes = append(podMainTimes, mainEnded.Sub(start))
			if len(donePod.Status.ContainerStatuses) == 1 {
				_, id, _ := strings.Cut(donePod.Status.ContainerStatuses[0].ContainerID, "://")
				bareIDs = append(bareIDs, id)
			}
		}
		// The executor's CPU while Pods start together: it watches /proc for main from its start.
		By("running 6 StepRuns of `true` created together")
		took6, ids6, pods6 := runTogether(ns, "six", 6)
		By("running 20 StepRuns of `true` created together")
		took20, ids20, pods20 := runTogether(ns, "twenty", 20)
		stopPoller()
		GinkgoWriter.Printf("cgroup poller: %s", pollErr.String())

		samples := map[string]cgroupSample{}
		for _, line := range strings.Split(strings.TrimSpace(pollOut.String()), "\n") {
			f := strings.Fields(line)
			if len(f) != 3 {
				continue
			}
			peak, err := strconv.ParseInt(f[1], 10, 64)
			Expect(err).NotTo(HaveOccurred(), line)
			cpu, err := strconv.ParseInt(f[2], 10, 64)
			Expect(err).NotTo(HaveOccurred(), line)
			id := strings.TrimSuffix(strings.TrimPrefix(f[0], "cri-containerd-"), ".scope")
			samples[id] = cgroupSample{peak: peak, cpu: time.Duration(cpu)}
		}
		var mem []int64
		for _, id := range executorIDs {
			if v, ok := samples[id]; ok && v.peak > 0 {
				mem = append(mem, v.peak)
			}
		}
		Expect(mem).NotTo(BeEmpty(), "no executor cgroup seen by the poller (stderr: %s; %d cgroups seen)", pollErr.String(), len(samples))
		slices.Sort(mem)
		cpuOf := func(ids []string) []time.Duration {
			var cpu []time.Duration
			for _, id := range ids {
				if v, ok := samples[id]; ok && v.cpu > 0 {
					cpu = append(cpu, v.cpu)
				}
			}
			Expect(cpu).NotTo(BeEmpty(), "no container CPU seen by the poller (stderr: %s)", pollErr.String())
			return cpu
		}
		cpu1, cpu6, cpu20 := cpuOf(executorIDs), cpuOf(ids6), cpuOf(ids20)
		// What any container's cgroup is charged for its start (runc init, the runtime's hooks),
		// whoever runs in it: the executor's own part is above it.
		cpuBare := cpuOf(bareIDs)
		own1, own6, own20 := executorOwnCPU(ns, executorPods), executorOwnCPU(ns, pods6), executorOwnCPU(ns, pods20)

		By(fmt.Sprintf("timing main's exit to the terminal status exactly: %d StepRuns stamping /proc/uptime as they exit", benchN))
		// Three clocks agree here: main stamps CLOCK_BOOTTIME (/proc/uptime, 10 ms resolution)
		// just before it exits, and the test converts its watch times (monotonic) to the same
		// clock. A Pod watch beside the StepRun watch splits the lag into kubelet's part (main's
		// exit → main terminated in containerStatuses, which is what the executor waits for) and
		// the executor's (→ its terminal report).
		var exact, toKubelet, executorShare []time.Duration
		for i := range benchN {
			sr := shell(benchStep(fmt.Sprintf("stamp-%02d", i), ns), `cat /proc/uptime > /pnsflow/outputs/t`).
				Output("t", "/pnsflow/outputs/t", nil).Obj()
			podSeen := make(chan time.Time, 1)
			go func() {
				defer GinkgoRecover()
				_, at, err := awaitPod(ctx, client.ObjectKey{Namespace: ns, Name: sr.Name + "-pod"}, runTimeout,
					func(p *corev1.Pod) bool { return !mainFinishedAt(p).IsZero() })
				if err != nil {
					at = time.Time{}
				}
				podSeen <- at
			}()
			Expect(k8s.Create(ctx, sr)).To(Succeed())
			got, srAt, err := awaitStepRun(ctx, key(sr), runTimeout, isTerminal)
			Expect(err).NotTo(HaveOccurred())
			Expect(got.Status.Phase).To(Equal(v1alpha1.StepRunSucceeded), describeStatus(got))
			kubeletAt := <-podSeen
			Expect(kubeletAt.IsZero()).To(BeFalse(), "the Pod watch saw main terminated")
			wallNow, bootAt := time.Now(), bootNow()
			boot := func(t time.Time) time.Duration { return bootAt - wallNow.Sub(t) }
			v, _ := output(got, "t")
			up, err := strconv.ParseFloat(strings.Fields(v)[0], 64)
			Expect(err).NotTo(HaveOccurred(), v)
			exited := time.Duration(up * float64(time.Second))
			exact = append(exact, boot(srAt)-exited)
			toKubelet = append(toKubelet, boot(kubeletAt)-exited)
			executorShare = append(executorShare, srAt.Sub(kubeletAt))
		}

		var b strings.Builder
		fmt.Fprintf(&b, "bench-e2e %s, %d cores (GOMAXPROCS %d), node %s, N=%d each\n",
			time.Now().UTC().Format(time.RFC3339), runtime.NumCPU(), runtime.GOMAXPROCS(0), node, benchN)
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "measure\tp50\tp95\tmin\tmax")
		row := func(name string, xs []time.Duration) {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, ms(pct(xs, 50)), ms(pct(xs, 95)), ms(slices.Min(xs)), ms(slices.Max(xs)))
		}
		row("StepRun `true`: create → terminal (watch)", srTimes)
		row("bare Pod `true`: create → phase Succeeded (watch)", podTimes)
		row("bare Pod `true`: create → main terminated in containerStatuses (watch)", podMainTimes)
		fmt.Fprintf(tw, "executor overhead vs Pod Succeeded (StepRun − Pod)\t%s\t%s\t\t\n",
			ms(pct(srTimes, 50)-pct(podTimes, 50)), ms(pct(srTimes, 95)-pct(podTimes, 95)))
		fmt.Fprintf(tw, "executor overhead vs main terminated (StepRun − Pod)\t%s\t%s\t\t\n",
			ms(pct(srTimes, 50)-pct(podMainTimes, 50)), ms(pct(srTimes, 95)-pct(podMainTimes, 95)))
		row("main exit → terminal, from finishedAt (1 s resolution)", exitToReport)
		row("main exit → terminal, exact (/proc/uptime stamp)", exact)
		row("  of which: exit → kubelet publishes main terminated", toKubelet)
		row("  of which: kubelet's publication → terminal report (executor)", executorShare)
		fmt.Fprintf(tw, "executor peak memory (cgroup high-water mark)\t%s\t%s\t%s\t%s\n",
			mib(mem[len(mem)/2]), mib(mem[int(math.Ceil(0.95*float64(len(mem))))-1]), mib(mem[0]), mib(mem[len(mem)-1]))
		row("StepRun `true`, 6 created together: create → terminal (watch)", took6)
		row("StepRun `true`, 20 created together: create → terminal (watch)", took20)
		row("bare Pod `true`: its container's CPU (cgroup; the runtime's start)", cpuBare)
		row("executor CPU per step (cgroup), one at a time", cpu1)
		row("executor CPU per step (cgroup), 6 together", cpu6)
		row("executor CPU per step (cgroup), 20 together", cpu20)
		row("  of which the executor process (its log), one at a time", own1)
		row("  of which the executor process (its log), 6 together", own6)
		row("  of which the executor process (its log), 20 together", own20)
		Expect(tw.Flush()).To(Succeed())
		fmt.Fprintf(&b, "(memory: %d of %d executors sampled; CPU: %d of %d, %d of %d and %d of %d; bare containers %d of %d)\n",
			len(mem), len(executorIDs), len(cpu1), len(executorIDs), len(cpu6), len(ids6), len(cpu20), len(ids20), len(cpuBare), len(bareIDs))
		for _, c := range []struct {
			n   int
			cpu []time.Duration
		}{{6, cpu6}, {20, cpu20}} {
			verdict := "within"
			if pct(c.cpu, 95) > cpuTarget {
				verdict = "OVER"
			}
			fmt.Fprintf(&b, "executor CPU per step, %d together: p50 %s, p95 %s, max %s: p95 %s the %s target (p50 %s above a bare container's p50, started one at a time)\n",
				c.n, ms(pct(c.cpu, 50)), ms(pct(c.cpu, 95)), ms(slices.Max(c.cpu)), verdict, ms(cpuTarget), ms(pct(c.cpu, 50)-pct(cpuBare, 50)))
		}
		report := b.String()
		GinkgoWriter.Print(report)
		AddReportEntry("bench-e2e", report)
		if out := os.Getenv("E2E_BENCH_OUT"); out != "" {
			Expect(os.MkdirAll(filepath.Dir(out), 0o755)).To(Succeed())
			Expect(os.WriteFile(out, []byte(report), 0o644)).To(Succeed())
		}
	})
})
