//go:build bench

package bench

import (
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/pnsflow/pnsflow/internal/controller/workflowrun"
	"github.com/pnsflow/pnsflow/internal/manager"
)

// The targets for the shipped defaults (with targetAPIServerFanOutPerStep and
// targetSucceeded5000 in apicost_test.go).
const (
	targetPods1000       = 3 * time.Second
	targetPods5000       = 15 * time.Second
	targetWritesPerStep  = 4.0
	targetRunBytes5000   = 20 * 1024
	targetRSS5000        = 200 << 20
	targetProgressMaxAge = 2 * time.Second
)

func secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func perStep(count, n int) string { return fmt.Sprintf("%.2f", float64(count)/float64(n)) }

// row is one line of the table.
func (r *result) row() string {
	return fmt.Sprintf("| %d | %s | %s | %s | %s + %s = %s | %s | %s | %s |",
		r.n, secs(r.stepRuns), secs(r.pods), secs(r.succeeded),
		perStep(r.manager, r.n), perStep(r.executor, r.n), perStep(r.manager+r.executor, r.n),
		mib(r.rss), fmt.Sprintf("%d", r.wfrBytes), secs(r.progressAge))
}

// perStepWrites is the writes that happen once per item; the rest (run status, events, the
// executor identity per namespace) are amortised over the run.
func (r *result) perStepWrites() (perItem, amortised int) {
	for k, c := range r.writes.detail {
		f := strings.Fields(k)
		if len(f) != 3 {
			continue
		}
		switch f[2] {
		case "stepruns", "pods", "stepruns/status":
			perItem += c
		default:
			if f[0] == managerUser || strings.HasSuffix(f[0], ":pnsflow-executor") {
				amortised += c
			}
		}
	}
	return perItem, amortised
}

func machine() string {
	osName := runtime.GOOS
	if raw, err := os.ReadFile("/etc/os-release"); err == nil {
		for line := range strings.SplitSeq(string(raw), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				osName = strings.Trim(v, `"`)
			}
		}
	}
	return fmt.Sprintf("%d cores, %s, %s", runtime.NumCPU(), osName, runtime.Version())
}

func renderReport(s settings, results []*result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Fan-out benchmark, %s, %s; kube-apiserver + etcd from bin/k8s (envtest, no kubelet).\n",
		time.Now().Format("2006-01-02"), machine())
	fmt.Fprintf(&b, "Manager: %s, shipped defaults (--kube-api-qps %d --kube-api-burst %d --steprun-workers %d "+
		"--workflowrun-workers %d; %d concurrent StepRun creates per run). Executors played by the benchmark, %d at once.\n\n",
		s.mode, manager.DefaultQPS, manager.DefaultBurst, manager.DefaultStepRunWorkers, manager.DefaultWorkflowRunWorkers,
		workflowrun.DefaultCreateConcurrency, s.executors)
	if len(s.managerArgs) > 0 {
		fmt.Fprintf(&b, "NOT the shipped defaults: the manager ran with %s.\n\n", strings.Join(s.managerArgs, " "))
	}
	rss := "manager peak RSS"
	if s.mode == "inprocess" {
		rss = "peak RSS (manager + benchmark)"
	}
	fmt.Fprintf(&b, "| N | StepRuns ready | Pods ready | Succeeded | writes/step: manager + executor | %s | WorkflowRun bytes | progress max age |\n", rss)
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		b.WriteString(r.row() + "\n")
	}
	b.WriteString("\nTimes are from the WorkflowRun's create. \"progress max age\" is the longest a StepRun's creation or\n" +
		"completion went unreflected in the run's status (counts, status.progress).\n\n")

	for _, r := range results {
		perItem, amortised := r.perStepWrites()
		fmt.Fprintf(&b, "N=%d (load average %s → %s)\n", r.n, r.loadBefore, r.loadAfter)
		fmt.Fprintf(&b, "  executors: %s for %d Running + %d terminal reports; run Succeeded %s after the last report\n",
			secs(r.executorsTook), r.n, r.n, secs(r.succeeded-r.pods-r.executorsTook))
		fmt.Fprintf(&b, "  writes: %d manager, %d executor (%s per step per item, %d amortised: %s per step); benchmark's own %d not counted\n",
			r.manager, r.executor, perStep(perItem, r.n), amortised, perStep(amortised, r.n), r.others)
		b.WriteString(r.writes.describe(func(s string) string {
			return strings.NewReplacer(managerUser, "manager", "system:serviceaccount:", "").Replace(s)
		}))
		fmt.Fprintf(&b, "  reconciles: workflowrun %d, steprun %d\n", r.reconciles["workflowrun"], r.reconciles["steprun"])
		fmt.Fprintf(&b, "  WorkflowRun: %d bytes as served (status %d bytes); %d status updates seen\n",
			r.wfrBytes, r.wfrStatusBytes, r.statusUpdates)
		fmt.Fprintf(&b, "  status age: fan-out %s, completions %s; longest gap between status.progress changes while items finished %s\n",
			secs(r.fanOutAge), secs(r.doneAge), secs(r.progressGap))
		fmt.Fprintf(&b, "  StepRun → its Pod: median %s, max %s\n", secs(r.podLag50), secs(r.podLagMax))
		var cpu, fan []string
		for _, k := range slices.Sorted(maps.Keys(r.cpu)) {
			cpu = append(cpu, fmt.Sprintf("%s %.1f s", k, r.cpu[k].Seconds()))
			fan = append(fan, fmt.Sprintf("%s %.1f s", k, r.cpuFanOut[k].Seconds()))
		}
		fmt.Fprintf(&b, "  CPU in the fan-out (create → all Pods): %s (kube-apiserver %.1f ms per StepRun + Pod)\n", strings.Join(fan, ", "),
			float64(r.cpuFanOut["kube-apiserver"].Microseconds())/1000/float64(r.n))
		fmt.Fprintf(&b, "  CPU over the whole run: %s (kube-apiserver %.1f ms per step)\n", strings.Join(cpu, ", "),
			float64(r.cpu["kube-apiserver"].Microseconds())/1000/float64(r.n))
	}

	b.WriteString(renderCost(s, results))

	b.WriteString("\nTargets (shipped defaults):\n")
	check := func(ok bool, format string, args ...any) {
		mark := "PASS"
		if !ok {
			mark = "MISS"
		}
		fmt.Fprintf(&b, "  %s  %s\n", mark, fmt.Sprintf(format, args...))
	}
	for _, r := range results {
		perItem, _ := r.perStepWrites()
		switch r.n {
		case 1000:
			check(r.pods <= targetPods1000, "N=1000: all Pods in %s (target ≤ %s)", secs(r.pods), secs(targetPods1000))
		case 5000:
			check(r.pods <= targetPods5000, "N=5000: all Pods in %s (target ≤ %s)", secs(r.pods), secs(targetPods5000))
			check(r.wfrBytes <= targetRunBytes5000, "N=5000: WorkflowRun %d bytes (target ≤ %d)", r.wfrBytes, targetRunBytes5000)
			check(r.rss <= targetRSS5000, "N=5000: manager peak RSS %s (target ≤ %s)", mib(r.rss), mib(targetRSS5000))
		}
		check(float64(perItem)/float64(r.n) <= targetWritesPerStep, "N=%d: %s writes per step besides amortised ones (target ≤ %.0f)",
			r.n, perStep(perItem, r.n), targetWritesPerStep)
		checkCost(r, check)
		check(r.progressAge <= targetProgressMaxAge, "N=%d: progress max age %s (target ≤ %s)", r.n, secs(r.progressAge), secs(targetProgressMaxAge))
	}
	return b.String()
}
