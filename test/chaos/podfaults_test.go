//go:build chaos

package chaos

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/podspec"
	. "github.com/pnsflow/pnsflow/internal/testutil"
)

const (
	// trigger is the file main waits for before it does what the fault needs; the test creates
	// it (exec in main) once the run is seen Running.
	trigger = outputs + "/.go"
	// awaitTrigger is main's wait for it (exit 7 after five minutes: never triggered).
	awaitTrigger = `i=0; until [ -e ` + trigger + ` ]; do i=$((i+1)); [ "$i" -gt 3000 ] && exit 7; sleep 0.1; done`
	// killExecutors: main, as UID 1000 like its unprivileged executor, SIGKILLs every process it
	// may signal (the executor among them; pause runs as another UID), then waits until kubelet
	// has started a new executor (exit 9 after five minutes) before it writes its output.
	killExecutors = `executor_pid() {
  for p in /proc/[0-9]*; do
    case "$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)" in "/pns-executor run"*) echo "${p#/proc/}"; return 0 ;; esac
  done
  return 1
}
` + awaitTrigger + `
first=$(executor_pid) || exit 8
kill -9 -1
i=0; until now=$(executor_pid) && [ "$now" != "$first" ]; do i=$((i+1)); [ "$i" -gt 1500 ] && exit 9; sleep 0.2; done`
)

// faultTimes records when each run's fault was injected, and what went wrong injecting it.
type faultTimes struct {
	mu   sync.Mutex
	at   map[string]time.Time
	errs []error
}

func newFaultTimes() *faultTimes { return &faultTimes{at: map[string]time.Time{}} }

func (f *faultTimes) done(name string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		f.errs = append(f.errs, fmt.Errorf("%s: %w", name, err))
		return
	}
	f.at[name] = time.Now()
}

func (f *faultTimes) get(name string) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.at[name]
	return t, ok
}

func (f *faultTimes) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.at)
}

func (f *faultTimes) errors() []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]error(nil), f.errs...)
}

// pull creates main's trigger file by exec in the run's main container. An exec killed with
// SIGKILL (137) still created it: main's fault (kill -9 -1, an OOM kill of the container) may
// take the exec'd process with it.
func pull(sr *v1alpha1.StepRun) error {
	var err error
	for range 3 {
		var out bytes.Buffer
		if err = execInMain(sr.Namespace, podspec.PodName(sr.Name), &out, "touch", trigger); err == nil {
			return nil
		}
		var code utilexec.CodeExitError
		if errors.As(err, &code) && code.Code == 137 {
			return nil
		}
		err = fmt.Errorf("%w: %s", err, out.String())
	}
	return err
}

// execInMain runs cmd in the Pod's main container (WebSocket, falling back to SPDY).
func execInMain(ns, pod string, out *bytes.Buffer, cmd ...string) error {
	u := cs.CoreV1().RESTClient().Post().Namespace(ns).Resource("pods").Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: "main", Command: cmd, Stdout: true, Stderr: true},
			scheme.ParameterCodec).URL()
	spdy, err := remotecommand.NewSPDYExecutor(cfg, "POST", u)
	if err != nil {
		return err
	}
	ws, err := remotecommand.NewWebSocketExecutor(cfg, "GET", u.String())
	if err != nil {
		return err
	}
	e, err := remotecommand.NewFallbackExecutor(ws, spdy, httpstream.IsUpgradeFailure)
	if err != nil {
		return err
	}
	return e.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: out, Stderr: out})
}

// evict asks the Eviction API (policy/v1) to evict the StepRun's Pod.
func evict(ns, srName string) error {
	ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: podspec.PodName(srName)}}
	var err error
	for range 5 {
		if err = cs.PolicyV1().Evictions(ns).Evict(ctx, ev); err == nil {
			return nil
		}
		if !apierrors.IsTooManyRequests(err) && !apierrors.IsInternalError(err) && !apierrors.IsServerTimeout(err) {
			return err
		}
	}
	return err
}

func executorsKilled() {
	ns := newNamespace("executor")
	t := track(ns)
	const runs, inFlightRuns = 20, 10
	faults := newFaultTimes()
	t.whenRunning(func(sr *v1alpha1.StepRun) { faults.done(sr.Name, pull(sr)) })
	b := t.start(valueRuns(ns, "kill", runs, killExecutors), inFlightRuns)

	Expect(t.finish(b, 5*time.Minute)).To(Succeed())
	Expect(faults.errors()).To(BeEmpty())
	Expect(faults.count()).To(Equal(runs), "every run's main was told to kill once it was seen Running")

	srs := verifyRuns(t, b.names)
	restarts := 0
	for _, sr := range srs {
		restarts += int(sr.Status.ExecutorRestarts)
	}
	lat := sinceFault(t, b.names, faults.get)
	first := faults.first()
	record(row{
		fault:       "executors SIGKILLed by main (kill -9 -1)",
		runs:        fmt.Sprintf("%d StepRuns (%d at a time), main and executor UID 1000", runs, inFlightRuns),
		outcomes:    describeTally(tally(values(srs)...)),
		p50:         percentile(lat, 0.5),
		max:         percentile(lat, 1),
		allTerminal: t.lastEnded(b.names).Sub(first),
		notes:       fmt.Sprintf("each run's own fault → its terminal status; %d executor restarts recorded in all", restarts),
	})
	expectValues(srs)
	for _, sr := range srs {
		Expect(sr.Status.ExitCode).To(HaveValue(BeZero()), describeStatus(sr))
		Expect(sr.Status.ExecutorRestarts).To(BeNumerically(">=", 1), "the restart is recorded: %s", describeStatus(sr))
		Expect(mainStarted(sr)).To(Equal(metav1.ConditionTrue), describeStatus(sr))
	}
}

// first is the earliest injection.
func (f *faultTimes) first() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	var first time.Time
	for _, at := range f.at {
		if first.IsZero() || at.Before(first) {
			first = at
		}
	}
	return first
}

func podsEvicted() {
	ns := newNamespace("evict")
	t := track(ns)
	const runs, inFlightRuns, items = 14, 10, 4
	faults := newFaultTimes()
	// Standalone: 10 runs whose main waits to be evicted, and 4 beside them that just run.
	var list []*v1alpha1.StepRun
	evicted := map[string]bool{}
	for i := range runs {
		if i%3 == 2 && i < 12 {
			name := fmt.Sprintf("ok-%02d", i)
			list = append(list, step(ns, name, fmt.Sprintf("sleep 2; printf %s > %s/v", name, outputs)).Obj())
			continue
		}
		name := fmt.Sprintf("evict-%02d", i)
		evicted[name] = true
		list = append(list, step(ns, name, "sleep 600").Obj())
	}
	// A WorkflowRun: "work" items wait to be evicted on their first attempt (main ran: only the
	// step's retries may retry them); "gated" mounts a ConfigMap that does not exist yet, so its
	// first Pod cannot start any container, and is evicted in that state (infrastructureRetries
	// retry it; the test creates the ConfigMap once that attempt has ended).
	work := wstep("work", `case "$(hostname)" in *-r[0-9]*-pod) ;; *) sleep 600 ;; esac
printf "{{item}}" > `+outputs+`/item`).Output("item", outputs+"/item").Sequence(items).Retries(1, 0)
	gated := wstep("gated", "cat /gate/v > "+outputs+"/v").Output("v", outputs+"/v")
	gated.Template.Volumes = []corev1.Volume{{Name: "gate", VolumeSource: corev1.VolumeSource{
		ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "gate"}}}}}
	gated.Template.VolumeMounts = []corev1.VolumeMount{{Name: "gate", MountPath: "/gate"}}
	wf := MakeWorkflowRun("ev", ns).Steps(work, gated).Obj()

	t.whenRunning(func(sr *v1alpha1.StepRun) {
		firstWork := sr.Labels[v1alpha1.LabelStep] == "work" && sr.Labels[v1alpha1.LabelAttempt] == "0"
		if evicted[sr.Name] || firstWork {
			faults.done(sr.Name, evict(ns, sr.Name))
		}
	})
	Expect(createRetrying(wf)).To(Succeed())
	b := t.start(list, inFlightRuns)

	By("evicting the gated step's Pod, scheduled but unable to start a container")
	Expect(t.waitUntil(2*time.Minute, "the gated Pod scheduled", func() bool {
		p := t.pods["ev-gated"]
		return p != nil && p.Spec.NodeName != ""
	})).To(Succeed())
	faults.done("ev-gated", evict(ns, "ev-gated"))
	Expect(t.waitUntil(2*time.Minute, "ev-gated terminal", func() bool {
		return t.srs["ev-gated"] != nil && isTerminal(t.srs["ev-gated"])
	})).To(Succeed())
	Expect(createRetrying(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gate"},
		Data: map[string]string{"v": "gated"}})).To(Succeed())

	Expect(t.finish(b, 5*time.Minute)).To(Succeed())
	Expect(t.workflowEnded("ev", 5*time.Minute)).To(Succeed())
	Expect(faults.errors()).To(BeEmpty())

	srs := verifyRuns(t, b.names)
	got, attempts := verifyWorkflow(t, "ev")
	children := flatten(attempts)
	all := append(values(srs), children...)
	names := t.stepRunNames()
	lat := sinceFault(t, names, faults.get)
	first := faults.first()
	record(row{
		fault: "Pods evicted (Eviction API)",
		runs: fmt.Sprintf("%d StepRuns (%d at a time; %d evicted while main runs) + a WorkflowRun: %d items evicted while main runs (retries 1), 1 step evicted before any container started",
			runs, inFlightRuns, len(evicted), items),
		outcomes:    describeTally(tally(all...)),
		p50:         percentile(lat, 0.5),
		max:         percentile(lat, 1),
		allTerminal: t.lastEnded(names).Sub(first),
		notes:       fmt.Sprintf("each eviction → its run terminal; WorkflowRun %s with %d StepRuns", got.Status.Phase, len(children)),
	})

	By("checking every outcome")
	Expect(faults.count()).To(Equal(len(evicted)+items+1), "every target was evicted once")
	for name, sr := range srs {
		if !evicted[name] {
			v, _ := output(sr, "v")
			Expect(sr.Status.Phase == v1alpha1.StepRunSucceeded && v == name).To(BeTrue(), describeStatus(sr))
			continue
		}
		Expect(mainStarted(sr)).To(Equal(metav1.ConditionTrue), describeStatus(sr))
	}
	Expect(got.Status.Phase).To(Equal(v1alpha1.WorkflowRunSucceeded), "%+v", got.Status)
	Expect(children).To(HaveLen(2*items+2), "each work item and the gated step: the evicted attempt and one retry")
	for i := range items {
		a := attempts[itemKey{"work", fmt.Sprint(i)}]
		Expect(a).To(HaveLen(2), "item %d", i)
		Expect(mainStarted(a[0])).To(Equal(metav1.ConditionTrue), "main ran, so only retries.limit retried it: %s", describeStatus(a[0]))
		v, _ := output(a[1], "item")
		Expect(a[1].Status.Phase == v1alpha1.StepRunSucceeded && v == fmt.Sprint(i)).To(BeTrue(), describeStatus(a[1]))
	}
	g := attempts[itemKey{"gated", ""}]
	Expect(g).To(HaveLen(2))
	Expect(g[0].Status.NeverStartedInfrastructureFailure()).To(BeTrue(),
		"evicted before main started: an infrastructure retry: %s", describeStatus(g[0]))
	v, _ := output(g[1], "v")
	Expect(g[1].Status.Phase == v1alpha1.StepRunSucceeded && v == "gated").To(BeTrue(), describeStatus(g[1]))

	By("checking the reason: an evicted Pod's run ends Error/PodEvicted")
	var wrong []string
	for _, sr := range append(values(srs), a0s(attempts)...) {
		if (evicted[sr.Name] || attemptOf(sr) == 0 && sr.Labels[v1alpha1.LabelWorkflowRun] != "") &&
			(sr.Status.Phase != v1alpha1.StepRunError || sr.Status.Reason != v1alpha1.ReasonPodEvicted) {
			wrong = append(wrong, describeStatus(sr))
		}
	}
	Expect(wrong).To(BeEmpty(), "runs whose Pod the Eviction API evicted must end Error/%s", v1alpha1.ReasonPodEvicted)
}

// a0s lists the first attempts of a WorkflowRun's items.
func a0s(items map[itemKey][]*v1alpha1.StepRun) []*v1alpha1.StepRun {
	var out []*v1alpha1.StepRun
	for _, a := range items {
		out = append(out, a[0])
	}
	return out
}

func mainOOMKilled() {
	ns := newNamespace("oom")
	t := track(ns)
	const runs, inFlightRuns = 20, 10
	faults := newFaultTimes()
	limit := corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("16Mi")}}
	var list []*v1alpha1.StepRun
	oom := map[string]bool{}
	for i := range runs {
		if i%4 == 3 {
			name := fmt.Sprintf("ok-%02d", i)
			list = append(list, step(ns, name, awaitTrigger+"\nprintf "+name+" > "+outputs+"/v").Resources(limit).Obj())
			continue
		}
		// dd's 64 MiB buffer, filled by read(2), is resident: four times main's limit. dd is
		// main's own process (exec), so the OOM kill ends main with 137 (128 + SIGKILL).
		name := fmt.Sprintf("oom-%02d", i)
		oom[name] = true
		sr := step(ns, name, awaitTrigger+"\nexec dd if=/dev/zero of=/dev/null bs=64M count=1").Resources(limit).Obj()
		sr.Spec.Outputs = nil
		list = append(list, sr)
	}
	t.whenRunning(func(sr *v1alpha1.StepRun) { faults.done(sr.Name, pull(sr)) })
	b := t.start(list, inFlightRuns)

	Expect(t.finish(b, 5*time.Minute)).To(Succeed())
	Expect(faults.errors()).To(BeEmpty())
	Expect(faults.count()).To(Equal(runs), "every run's main was triggered once it was seen Running")

	srs := verifyRuns(t, b.names)
	// What the run must say follows kubelet's word on main, as the executor and the controller
	// read it: terminated reason OOMKilled → Error/OOMKilled. The container runtime may miss the
	// OOM event and report reason Error with the same exit code; such a run is then
	// Failed/NonZeroExitCode, and is counted apart.
	var wrong []string
	missed := 0
	for name, sr := range srs {
		if !oom[name] {
			if v, _ := output(sr, "v"); sr.Status.Phase != v1alpha1.StepRunSucceeded || v != name {
				wrong = append(wrong, describeStatus(sr))
			}
			continue
		}
		main := mainTermination(t, name)
		switch {
		case sr.Status.ExitCode == nil || *sr.Status.ExitCode != 137 || main == nil || main.ExitCode != 137:
			wrong = append(wrong, fmt.Sprintf("%s; kubelet: %+v", describeStatus(sr), main))
		case main.Reason == "OOMKilled":
			if sr.Status.Phase != v1alpha1.StepRunError || sr.Status.Reason != v1alpha1.ReasonOOMKilled {
				wrong = append(wrong, describeStatus(sr))
			}
		default:
			missed++
			if sr.Status.Phase != v1alpha1.StepRunFailed || sr.Status.Reason != v1alpha1.ReasonExitCode {
				wrong = append(wrong, fmt.Sprintf("%s; kubelet: %+v", describeStatus(sr), main))
			}
		}
	}
	lat := sinceFault(t, b.names, faults.get)
	first := faults.first()
	note := "each run's trigger → its terminal status"
	if missed > 0 {
		note += fmt.Sprintf("; %d OOM kill(s) reported by the runtime as reason Error, exit 137", missed)
	}
	record(row{
		fault:       "main OOM-killed (limit 16Mi, 64 MiB held)",
		runs:        fmt.Sprintf("%d StepRuns (%d at a time; %d exceed the limit)", runs, inFlightRuns, len(oom)),
		outcomes:    describeTally(tally(values(srs)...)),
		p50:         percentile(lat, 0.5),
		max:         percentile(lat, 1),
		allTerminal: t.lastEnded(b.names).Sub(first),
		notes:       note,
	})
	Expect(wrong).To(BeEmpty(), "OOM runs end as kubelet's word on main says (OOMKilled → Error/OOMKilled, exit code 137), the others Succeeded with their value:\n%s",
		strings.Join(wrong, "\n"))
	Expect(missed).To(BeNumerically("<", len(oom)), "the runtime reported at least one OOM kill as OOMKilled")
}

// mainTermination is kubelet's terminated state of main in the StepRun's Pod (nil if none).
func mainTermination(t *tracker, name string) *corev1.ContainerStateTerminated {
	p := &corev1.Pod{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: t.ns, Name: podspec.PodName(name)}, p); err != nil {
		return nil
	}
	for _, s := range p.Status.ContainerStatuses {
		if s.Name == "main" {
			return s.State.Terminated
		}
	}
	return nil
}
