package tree

import (
	"fmt"
	"strings"
)

// Changes lists what differs between two moments of a run, one line per change, for output
// that is not a terminal (a pipe, a CI log): the run's phase or progress, a step's phase, exit
// code or counts, a newly failed item. Durations ticking by are not changes.
func Changes(prev, next Model) []string {
	var out []string
	if prev.Phase != next.Phase || prev.Done != next.Done || prev.Total != next.Total ||
		prev.Suspended != next.Suspended || prev.Cancelling != next.Cancelling || prev.ExitCode == nil && next.ExitCode != nil {
		out = append(out, runLine(next))
	}
	before := make(map[string]*Step, len(prev.Steps))
	for i := range prev.Steps {
		before[prev.Steps[i].Name] = &prev.Steps[i]
	}
	for _, s := range next.Steps {
		p := before[s.Name]
		if p == nil || stepChanged(*p, s) {
			out = append(out, stepLine(s))
		}
		known := map[string]bool{}
		if p != nil {
			for _, it := range p.Failed {
				known[it.StepRun] = true
			}
		}
		for _, it := range s.Failed {
			if !known[it.StepRun] {
				out = append(out, itemLine(s.Name, it))
			}
		}
	}
	return out
}

func runLine(m Model) string {
	icon, _ := phaseStyle(m.Phase)
	l := fmt.Sprintf("%s  %s %s", m.Name, icon, m.Phase)
	if m.Total > 0 {
		l += fmt.Sprintf("  %d/%d (%d%%)", m.Done, m.Total, m.Done*100/m.Total)
	}
	if m.ExitCode != nil {
		l += fmt.Sprintf("  exit %d", *m.ExitCode)
	}
	if m.Finished && m.HasElapsed {
		l += "  took " + Duration(m.Elapsed)
	}
	if m.Suspended {
		l += "  suspended"
	}
	if m.Cancelling {
		l += "  cancelling"
	}
	if m.Phase == Failed || m.Phase == Error || m.Phase == Cancelled {
		if why := reasonText(m); why != "" {
			l += "  " + why
		}
	}
	return l
}

func stepChanged(a, b Step) bool {
	if a.Phase != b.Phase || a.Attempts != b.Attempts || !sameCode(a.ExitCode, b.ExitCode) {
		return true
	}
	if (a.Items == nil) != (b.Items == nil) {
		return true
	}
	return a.Items != nil && *a.Items != *b.Items
}

func sameCode(a, b *int32) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

func stepLine(s Step) string {
	icon, _ := phaseStyle(s.Phase)
	parts := []string{"  " + s.Name, icon + " " + s.Phase}
	if s.Phase != Pending && s.Phase != Running && s.HasDuration {
		parts = append(parts, Duration(s.Duration))
	}
	var result line
	if s.Items != nil {
		result = counts(*s.Items, false)
	} else {
		result = exitText(s.ExitCode, s.Attempts)
	}
	if r := result.paint(false); r != "" {
		parts = append(parts, r)
	}
	if s.Message != "" && s.Phase != Succeeded && s.Phase != Running {
		parts = append(parts, "↳ "+s.Message)
	}
	return strings.Join(parts, "  ")
}

func itemLine(step string, it Item) string {
	icon, _ := phaseStyle(it.Phase)
	what := it.Reason
	if it.ExitCode != nil && (it.Reason == "" || it.Reason == "NonZeroExitCode") {
		what = fmt.Sprintf("exit %d", *it.ExitCode)
	}
	return fmt.Sprintf("    %s[%d]  %s %s  %s · %s", step, it.Index, icon, it.Phase, what, it.StepRun)
}
