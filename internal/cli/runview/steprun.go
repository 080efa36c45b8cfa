package runview

import (
	"fmt"
	"time"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/cli/tree"
)

// StepRun is a StepRun as the tree shows it at now.
func StepRun(sr *v1alpha1.StepRun, now time.Time) tree.Model {
	st := &sr.Status
	m := tree.Model{Kind: "StepRun", Namespace: sr.Namespace, Name: sr.Name, Phase: string(st.Phase),
		Reason: st.Reason, Message: st.Message, ExitCode: st.ExitCode, PodName: st.PodName, Outputs: Outputs(st.Outputs)}
	if m.Phase == "" {
		m.Phase = tree.Pending
	}
	for _, s := range st.Timings.Stages(sr.CreationTimestamp.Time) {
		m.Stages = append(m.Stages, tree.Stage{Label: stageLabels[s.Name], Duration: s.Duration})
	}
	switch {
	case st.StartedAt != nil && st.FinishedAt != nil:
		m.Elapsed, m.HasElapsed, m.Finished = st.FinishedAt.Sub(st.StartedAt.Time), true, true
	case st.StartedAt != nil && !st.Phase.IsTerminal():
		m.Elapsed, m.HasElapsed = now.Sub(st.StartedAt.Time), true
	}
	return m
}

// stageLabels name the stages as a user thinks of them.
var stageLabels = map[string]string{
	v1alpha1.StagePodCreate:     "create Pod",
	v1alpha1.StageSchedule:      "schedule",
	v1alpha1.StageExecutorStart: "start executor",
	v1alpha1.StageMainStart:     "start main",
	v1alpha1.StageMain:          "main",
	v1alpha1.StageReport:        "report",
}

// Outputs lists collected parameters, then stored artifacts with where they are.
func Outputs(o *v1alpha1.StepRunOutputs) []tree.Output {
	if o == nil {
		return nil
	}
	var out []tree.Output
	for _, p := range o.Parameters {
		out = append(out, tree.Output{Name: p.Name, Value: p.Value})
	}
	for _, a := range o.Artifacts {
		v := a.Key + " (" + Bytes(a.Size)
		if len(a.SHA256) >= 12 {
			v += ", sha256 " + a.SHA256[:12] + "…"
		}
		out = append(out, tree.Output{Name: a.Name, Value: v + ")", Artifact: true})
	}
	return out
}

// Bytes is a size for people, in powers of 1024 as ls -h prints them.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
