//go:build chaos

package chaos

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/podspec"
)

// verifyRuns reads the named StepRuns from the API and checks that each is terminal and that
// exactly one Pod was ever made for it (every Pod UID the tracker saw under its label), and that
// no StepRun has two Pods now. It returns them by name.
func verifyRuns(t *tracker, names []string) map[string]*v1alpha1.StepRun {
	list := &v1alpha1.StepRunList{}
	ExpectWithOffset(1, k8s.List(ctx, list, client.InNamespace(t.ns))).To(Succeed())
	all := map[string]*v1alpha1.StepRun{}
	for i := range list.Items {
		all[list.Items[i].Name] = &list.Items[i]
	}
	got := map[string]*v1alpha1.StepRun{}
	for _, n := range names {
		sr := all[n]
		ExpectWithOffset(1, sr).NotTo(BeNil(), "StepRun %s exists", n)
		ExpectWithOffset(1, sr.Status.Phase.IsTerminal()).To(BeTrue(), describeStatus(sr))
		ExpectWithOffset(1, t.podsSeen(n)).To(Equal(1), "exactly one Pod ever made for %s", n)
		got[n] = sr
	}
	pods := &corev1.PodList{}
	ExpectWithOffset(1, k8s.List(ctx, pods, client.InNamespace(t.ns), client.HasLabels{v1alpha1.LabelStepRun})).To(Succeed())
	perRun := map[string]int{}
	for _, p := range pods.Items {
		owner := p.Labels[v1alpha1.LabelStepRun]
		perRun[owner]++
		ExpectWithOffset(1, all).To(HaveKey(owner), "Pod %s belongs to an existing StepRun", p.Name)
		ExpectWithOffset(1, metav1.IsControlledBy(&p, all[owner])).To(BeTrue(), "Pod %s is controlled by StepRun %s", p.Name, owner)
	}
	for owner, n := range perRun {
		ExpectWithOffset(1, n).To(Equal(1), "Pods of StepRun %s now", owner)
	}
	return got
}

// itemKey is one item of one step of a WorkflowRun.
type itemKey struct{ step, item string }

// verifyWorkflow reads the WorkflowRun and every StepRun it owns, and checks: the run is
// terminal; its StepRuns have unique names and unique (step, item, attempt) labels, each is
// terminal and controlled by the run, and each had exactly one Pod; an item's attempts are
// numbered 0..n without a gap, only its last may have Succeeded, and every earlier one failed.
// It returns the run and its StepRuns grouped by item, attempts in order.
func verifyWorkflow(t *tracker, name string) (*v1alpha1.WorkflowRun, map[itemKey][]*v1alpha1.StepRun) {
	wf := &v1alpha1.WorkflowRun{}
	ExpectWithOffset(1, k8s.Get(ctx, client.ObjectKey{Namespace: t.ns, Name: name}, wf)).To(Succeed())
	ExpectWithOffset(1, wf.Status.Phase.IsTerminal()).To(BeTrue(), "WorkflowRun %s: %+v", name, wf.Status)
	list := &v1alpha1.StepRunList{}
	ExpectWithOffset(1, k8s.List(ctx, list, client.InNamespace(t.ns),
		client.MatchingLabels{v1alpha1.LabelWorkflowRun: podspec.LabelValue(name)})).To(Succeed())
	names, keys := map[string]bool{}, map[string]bool{}
	items := map[itemKey][]*v1alpha1.StepRun{}
	for i := range list.Items {
		sr := &list.Items[i]
		k := itemKey{sr.Labels[v1alpha1.LabelStep], sr.Labels[v1alpha1.LabelItem]}
		attempt := sr.Labels[v1alpha1.LabelAttempt]
		ExpectWithOffset(1, names).NotTo(HaveKey(sr.Name), "duplicate StepRun name")
		ExpectWithOffset(1, keys).NotTo(HaveKey(k.step+"/"+k.item+"/"+attempt), "two StepRuns for step %q item %q attempt %s", k.step, k.item, attempt)
		names[sr.Name], keys[k.step+"/"+k.item+"/"+attempt] = true, true
		ExpectWithOffset(1, metav1.IsControlledBy(sr, wf)).To(BeTrue(), "%s is controlled by %s", sr.Name, name)
		ExpectWithOffset(1, sr.Status.Phase.IsTerminal()).To(BeTrue(), describeStatus(sr))
		ExpectWithOffset(1, t.podsSeen(sr.Name)).To(Equal(1), "exactly one Pod ever made for %s", sr.Name)
		items[k] = append(items[k], sr)
	}
	for k, attempts := range items {
		sort.Slice(attempts, func(i, j int) bool { return attemptOf(attempts[i]) < attemptOf(attempts[j]) })
		for i, sr := range attempts {
			ExpectWithOffset(1, attemptOf(sr)).To(Equal(i), "attempts of %v are numbered without a gap", k)
			if i < len(attempts)-1 {
				ExpectWithOffset(1, sr.Status.Phase).NotTo(Equal(v1alpha1.StepRunSucceeded),
					"only the last attempt of %v may succeed: %s", k, describeStatus(sr))
			}
		}
	}
	return wf, items
}

func attemptOf(sr *v1alpha1.StepRun) int {
	var n int
	_, _ = fmt.Sscan(sr.Labels[v1alpha1.LabelAttempt], &n)
	return n
}

// mainStarted is the StepRun's MainStarted condition: "True", "False" or "" when absent.
func mainStarted(sr *v1alpha1.StepRun) metav1.ConditionStatus {
	if c := meta.FindStatusCondition(sr.Status.Conditions, v1alpha1.ConditionMainStarted); c != nil {
		return c.Status
	}
	return ""
}

// outcome is a StepRun's "Phase/Reason", "Succeeded" alone when it succeeded.
func outcome(sr *v1alpha1.StepRun) string {
	if sr.Status.Phase == v1alpha1.StepRunSucceeded {
		return string(sr.Status.Phase)
	}
	return string(sr.Status.Phase) + "/" + sr.Status.Reason
}

// tally counts outcomes: {"Succeeded": 20, "Error/OOMKilled": 15}.
func tally(srs ...*v1alpha1.StepRun) map[string]int {
	m := map[string]int{}
	for _, sr := range srs {
		m[outcome(sr)]++
	}
	return m
}

func describeTally(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%d %s", m[k], k))
	}
	return strings.Join(parts, ", ")
}

// flatten lists a WorkflowRun's StepRuns.
func flatten(items map[itemKey][]*v1alpha1.StepRun) []*v1alpha1.StepRun {
	var all []*v1alpha1.StepRun
	for _, k := range slices.SortedFunc(maps.Keys(items), func(a, b itemKey) int {
		return strings.Compare(a.step+"/"+a.item, b.step+"/"+b.item)
	}) {
		all = append(all, items[k]...)
	}
	return all
}

func values[K comparable, V any](m map[K]V) []V { return slices.Collect(maps.Values(m)) }

// sinceFault measures, for each named run, the time from its fault to when it was first seen
// terminal; a run that had ended before its fault is left out.
func sinceFault(t *tracker, names []string, faultAt func(name string) (time.Time, bool)) []time.Duration {
	var ds []time.Duration
	for _, n := range names {
		at, ok := faultAt(n)
		if !ok {
			continue
		}
		if end := t.endedAt(n); !end.IsZero() && end.After(at) {
			ds = append(ds, end.Sub(at))
		}
	}
	return ds
}

// percentile is the nearest-rank percentile of ds (zero when empty).
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(i, 0)]
}

// row is one fault's line of the table.
type row struct {
	fault, runs, outcomes string
	p50, max              time.Duration
	allTerminal           time.Duration // from the fault to the last run terminal
	notes                 string
}

var rows []row

func secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

// record adds the fault's row to the table and to the spec's report.
func record(r row) {
	rows = append(rows, r)
	line := fmt.Sprintf("%s | %s | %s | %s / %s | %s | %s", r.fault, r.runs, r.outcomes,
		secs(r.p50), secs(r.max), secs(r.allTerminal), r.notes)
	GinkgoWriter.Println("RESULT " + line)
	AddReportEntry("fault: "+r.fault, line)
}

// table renders the rows as a Markdown table.
func table() string {
	var b strings.Builder
	b.WriteString("| fault | runs | outcome | fault → terminal, p50 / max | fault → all terminal | notes |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s / %s | %s | %s |\n", r.fault, r.runs, r.outcomes,
			secs(r.p50), secs(r.max), secs(r.allTerminal), r.notes)
	}
	return b.String()
}
