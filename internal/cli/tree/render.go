package tree

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Options say where the text goes.
type Options struct {
	// Width is the terminal's width in columns; 0 means no limit (a pipe, a file).
	Width int
	// Height is the terminal's height in lines; 0 means no limit. A redrawn frame must fit on
	// the screen (the cursor cannot move above it), so a taller one is shortened.
	Height int
	// Color paints phases and counts with ANSI colours.
	Color bool
}

const (
	// minNameChars of a step's name stay visible however narrow the terminal.
	minNameChars = 8
	gap          = "  "
)

// Render draws m. Every line ends in "\n".
func Render(m Model, o Options) string {
	var lines []line
	if m.Kind == "StepRun" {
		lines = stepRunLines(m, o)
	} else {
		lines = workflowLines(m, o, false)
		if o.Height > 0 && len(lines) > o.Height-1 {
			lines = workflowLines(m, o, true)
		}
	}
	if o.Height > 0 && len(lines) > o.Height-1 {
		keep := max(o.Height-2, 1)
		hidden := len(lines) - keep
		lines = append(lines[:keep], line{{fmt.Sprintf("… %d more lines: enlarge the terminal, or see them with get", hidden), dim}})
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.cut(o.Width).paint(o.Color))
		b.WriteByte('\n')
	}
	return b.String()
}

// header is the run's first line: phase, progress, time. On a narrow terminal the kind and
// namespace go first, then the line is cut.
func header(m Model, o Options) []line {
	icon, st := phaseStyle(m.Phase)
	tail := line{{gap, plain}, {m.Phase, st}}
	if m.Kind != "StepRun" && m.Total > 0 {
		tail = append(tail, seg{gap + fmt.Sprintf("%d/%d (%d%%)", m.Done, m.Total, m.Done*100/m.Total), plain})
	}
	if m.Kind == "StepRun" && m.ExitCode != nil {
		tail = append(tail, seg{gap + fmt.Sprintf("exit %d", *m.ExitCode), plain})
	}
	if m.HasElapsed {
		word := "elapsed "
		if m.Finished {
			word = "took "
		}
		tail = append(tail, seg{gap + word + Duration(m.Elapsed), plain})
	}
	if m.Suspended {
		tail = append(tail, seg{gap + "suspended", magenta})
	}
	if m.Cancelling {
		tail = append(tail, seg{gap + "cancelling", magenta})
	}
	full := append(line{{icon + " ", st}, {m.Kind + " ", dim}, {m.Namespace + "/", dim}, {m.Name, bold}}, tail...)
	if o.Width > 0 && full.width() > o.Width {
		full = append(line{{icon + " ", st}, {m.Name, bold}}, tail...)
	}
	if o.Width > 0 && full.width() > o.Width {
		// Keep the phase, progress and time in view: shorten the name's middle instead.
		tail := compactTail(m, st)
		name := middle(m.Name, max(o.Width-2-tail.width(), minNameChars))
		full = append(line{{icon + " ", st}, {name, bold}}, tail...)
	}
	out := []line{full}
	if why := reasonText(m); why != "" {
		wst := dim
		if m.Phase == Failed || m.Phase == Error {
			wst = red
		}
		out = append(out, line{{"  " + why, wst}})
	}
	return out
}

// compactTail is the header's tail for a narrow terminal: no words, no percentage.
func compactTail(m Model, st style) line {
	tail := line{{" ", plain}, {m.Phase, st}}
	if m.Kind != "StepRun" && m.Total > 0 {
		tail = append(tail, seg{fmt.Sprintf(" %d/%d", m.Done, m.Total), plain})
	}
	if m.ExitCode != nil {
		tail = append(tail, seg{fmt.Sprintf(" exit %d", *m.ExitCode), plain})
	}
	if m.HasElapsed {
		tail = append(tail, seg{" " + Duration(m.Elapsed), plain})
	}
	return tail
}

// reasonText says why the run is where it is, when the phase alone does not.
func reasonText(m Model) string {
	reason := m.Reason
	if reason == m.Phase || reason == "Running" || reason == "Pending" {
		reason = ""
	}
	switch {
	case reason != "" && m.Message != "":
		return reason + ": " + m.Message
	case m.Message != "":
		return m.Message
	}
	return reason
}

// row is one line of the step table: a step, a failed item, or a note under a step.
type row struct {
	indent            int
	icon, name, phase string
	st                style
	dur, after        string
	result            line
	// items is a fan-out's counts: its result is drawn from them, compact when space is short.
	items *Counts
	// item rows are a fan-out's failed items: their result (with the StepRun's name) may run
	// past the column instead of widening it for every row.
	item    bool
	stepRun string
	// note rows span the columns: a message, a count of hidden items.
	note line
	// step is the index of the step the row belongs to, for hiding finished steps.
	step int
}

func workflowLines(m Model, o Options, hideFinished bool) []line {
	out := header(m, o)
	if len(m.Steps) == 0 {
		return out
	}
	var rows []row
	hidden := 0
	for i, s := range m.Steps {
		if hideFinished && finished(s) {
			hidden++
			continue
		}
		rows = append(rows, stepRows(s, i)...)
	}
	out = append(out, line{})
	t := table(rows, o)
	out = append(out, t[0])
	if hidden > 0 {
		out = append(out, line{{fmt.Sprintf("✔ %d finished steps not shown", hidden), dim}})
	}
	out = append(out, t[1:]...)
	return append(out, outputsSection(m.Steps)...)
}

// outputsSection lists single steps' outputs below the tree, so that they are never taken for
// steps of the tree.
func outputsSection(steps []Step) []line {
	w := 0
	for _, s := range steps {
		if len(s.Outputs) > 0 {
			w = max(w, len([]rune(s.Name)))
		}
	}
	if w == 0 {
		return nil
	}
	out := []line{{}, {{"OUTPUTS", dim}}}
	for _, s := range steps {
		for _, o := range s.Outputs {
			out = append(out, append(line{{pad(s.Name, w) + gap, plain}}, outputLine(o)...))
		}
	}
	return out
}

// finished steps are the ones a short screen can hide: done, and nothing to look at.
func finished(s Step) bool {
	return (s.Phase == Succeeded || s.Phase == Skipped) && len(s.Failed) == 0 && s.MoreFailed == 0
}

func stepRows(s Step, idx int) []row {
	icon, st := phaseStyle(s.Phase)
	r := row{indent: s.Level, icon: icon, name: s.Name, phase: s.Phase, st: st, step: idx}
	if s.HasDuration {
		r.dur = Duration(s.Duration)
	}
	switch {
	case s.OnExit:
		r.after = "(onExit)"
	default:
		r.after = strings.Join(s.After, ", ")
	}
	if s.Items != nil {
		r.items = s.Items
		r.result = counts(*s.Items, false)
	} else {
		r.result = exitText(s.ExitCode, s.Attempts)
	}
	rows := []row{r}
	noteIndent := s.Level + 1
	for _, it := range s.Failed {
		iicon, ist := phaseStyle(it.Phase)
		ir := row{indent: s.Level + 1, icon: iicon, name: fmt.Sprintf("[%d]", it.Index), phase: it.Phase, st: ist, step: idx, item: true}
		if it.HasDuration {
			ir.dur = Duration(it.Duration)
		}
		what := it.Reason
		if it.ExitCode != nil && (it.Reason == "" || it.Reason == "NonZeroExitCode") {
			what = fmt.Sprintf("exit %d", *it.ExitCode)
		}
		ir.result = line{{what, plain}, {" · " + it.StepRun, dim}}
		ir.stepRun = it.StepRun
		rows = append(rows, ir)
	}
	if s.MoreFailed > 0 {
		rows = append(rows, row{indent: noteIndent, step: idx, note: line{{fmt.Sprintf("… %d more failed items", s.MoreFailed), red}}})
	}
	if s.Message != "" && s.Phase != Succeeded && s.Phase != Running {
		mst := dim
		if s.Phase == Failed || s.Phase == Error {
			mst = red
		}
		rows = append(rows, row{indent: noteIndent, step: idx, note: line{{"↳ " + s.Message, mst}}})
	}
	return rows
}

func exitText(code *int32, attempts int32) line {
	var l line
	if code != nil {
		l = append(l, seg{fmt.Sprintf("exit %d", *code), plain})
	}
	if attempts > 1 {
		l = append(l, seg{fmt.Sprintf(" (%d attempts)", attempts), dim})
	}
	return l
}

// counts collapses a fan-out: `✔ 4312  ▶ 64  ✖ 2  / 5000`. Pending items are what the total
// leaves over; they are shown only while nothing else is.
func counts(c Counts, compact bool) line {
	var l line
	format, sep := "%s %d", gap
	if compact {
		format, sep = "%s%d", " "
	}
	add := func(icon string, n int32, st style) {
		if n > 0 {
			l = append(l, seg{fmt.Sprintf(format, icon, n), st}, seg{sep, plain})
		}
	}
	add("✔", c.Succeeded, green)
	add("▶", c.Running, yellow)
	add("✖", c.Failed+c.Error, red)
	add("↷", c.Skipped, dim)
	add("–", c.Omitted, dim)
	if len(l) == 0 {
		add("○", c.Pending, dim)
	}
	if !compact {
		add("↻", c.Retries, dim)
		return append(l, seg{fmt.Sprintf("/ %d", c.Total), plain})
	}
	return append(l, seg{fmt.Sprintf("/%d", c.Total), plain})
}

func outputLine(o Output) line {
	if o.Artifact {
		return line{{o.Name, bold}, {" ⇒ " + o.Value, plain}}
	}
	return line{{o.Name, bold}, {" = " + end(firstLine(o.Value), 80), plain}}
}

// table lays rows out in columns, giving up columns in order of least use when the terminal
// is too narrow: dependencies, durations, the step name's middle, the phase word (the icon
// still says it); then each line is cut at the edge.
func table(rows []row, o Options) []line {
	showAfter, showDur, showPhase := false, false, true
	wName, wPhase, wDur, wResult, wAfter := len("STEP"), len("PHASE"), len("DURATION"), len("RESULT"), len("AFTER")
	minName := 0
	for _, r := range rows {
		if r.note != nil {
			continue
		}
		wName = max(wName, 2*r.indent+2+len([]rune(r.name)))
		minName = max(minName, 2*r.indent+2+minNameChars)
		wPhase = max(wPhase, len(r.phase))
		wDur = max(wDur, len(r.dur))
		if !r.item {
			wResult = max(wResult, r.result.width())
		}
		wAfter = max(wAfter, len([]rune(r.after)))
		showAfter = showAfter || r.after != ""
		showDur = showDur || r.dur != ""
	}
	total := func() int {
		n := wName + len(gap) + wResult
		if showPhase {
			n += wPhase + len(gap)
		}
		if showDur {
			n += wDur + len(gap)
		}
		if showAfter {
			n += len(gap) + wAfter
		}
		return n
	}
	if o.Width > 0 {
		if total() > o.Width {
			showAfter = false
		}
		if total() > o.Width {
			showDur = false
		}
		if over := total() - o.Width; over > 0 {
			wName = max(wName-over, minName)
		}
		if total() > o.Width {
			showPhase = false
		}
		if total() > o.Width {
			// Counts without spaces or retries: `✔4312 ▶64 ✖2 /5000`, the total kept.
			wResult = len("RESULT")
			for i := range rows {
				if rows[i].items != nil {
					rows[i].result = counts(*rows[i].items, true)
				}
				if rows[i].note == nil && !rows[i].item {
					wResult = max(wResult, rows[i].result.width())
				}
			}
		}
	}
	cells := func(name line, phase, dur string, st style, result line, after string) line {
		l := append(line{}, name...)
		l = append(l, seg{strings.Repeat(" ", max(wName-name.width(), 0)) + gap, plain})
		if showPhase {
			l = append(l, seg{pad(phase, wPhase), st}, seg{gap, plain})
		}
		if showDur {
			l = append(l, seg{pad(dur, wDur), plain}, seg{gap, plain})
		}
		l = append(l, result...)
		if showAfter && after != "" {
			l = append(l, seg{strings.Repeat(" ", max(wResult-result.width(), 0)) + gap, plain}, seg{after, dim})
		}
		return l
	}
	head := cells(line{{"STEP", dim}}, "PHASE", "DURATION", dim, line{{"RESULT", dim}}, "AFTER")
	for i := range head {
		head[i].st = dim
	}
	out := []line{head}
	for _, r := range rows {
		prefix := strings.Repeat("  ", r.indent)
		if r.note != nil {
			out = append(out, append(line{{prefix, plain}}, r.note...))
			continue
		}
		// The icon carries the phase's colour; the name stays plain to be read.
		name := line{{prefix, plain}, {r.icon + " ", r.st}, {middle(r.name, max(wName-len(prefix)-2, 1)), plain}}
		l := cells(name, r.phase, r.dur, r.st, r.result, r.after)
		if r.stepRun != "" && o.Width > 0 && l.width() > o.Width {
			// A StepRun's name differs from its siblings' at the end (item, attempt, hash).
			last := &l[len(l)-1]
			keep := len([]rune(last.text)) - (l.width() - o.Width)
			last.text = " · " + middle(r.stepRun, max(keep-3, 1))
		}
		out = append(out, l)
	}
	return out
}

// stepRunLines draws a StepRun: its header, Pod, and outputs.
func stepRunLines(m Model, o Options) []line {
	out := header(m, o)
	if m.PodName != "" {
		out = append(out, line{{"  pod ", dim}, {m.PodName, plain}})
	}
	var params, artifacts []Output
	for _, o := range m.Outputs {
		if o.Artifact {
			artifacts = append(artifacts, o)
		} else {
			params = append(params, o)
		}
	}
	if len(params) > 0 {
		out = append(out, line{{"  outputs", dim}})
		for _, p := range params {
			out = append(out, append(line{{"    ", plain}}, outputLine(p)...))
		}
	}
	if len(artifacts) > 0 {
		out = append(out, line{{"  artifacts", dim}})
		for _, a := range artifacts {
			out = append(out, append(line{{"    ", plain}}, outputLine(a)...))
		}
	}
	return append(out, stageLines(m.Stages, o.Width)...)
}

// stageBarWidth is the longest stage's bar.
const stageBarWidth = 24

// stageLines draws each stage's duration with a bar scaled to the longest, so the slow stage
// stands out; the bars shrink (or go) to fit a narrow terminal.
func stageLines(stages []Stage, width int) []line {
	if len(stages) == 0 {
		return nil
	}
	labelW, durW, longest := 0, 0, time.Duration(0)
	for _, s := range stages {
		labelW = max(labelW, utf8.RuneCountInString(s.Label))
		durW = max(durW, len(StageDuration(s.Duration)))
		longest = max(longest, s.Duration)
	}
	barW := stageBarWidth
	if width > 0 {
		barW = max(0, min(barW, width-(4+labelW+2+durW+2)))
	}
	out := []line{{{"  stages", dim}}}
	for _, s := range stages {
		d := StageDuration(s.Duration)
		bar := 0
		if longest > 0 {
			bar = int((s.Duration*time.Duration(barW) + longest/2) / longest)
		}
		if bar == 0 && s.Duration > 0 && barW > 0 {
			bar = 1 // every stage that took time shows some
		}
		l := line{{"    " + pad(s.Label, labelW) + "  ", plain}, {strings.Repeat(" ", durW-len(d)) + d, plain}}
		if bar > 0 {
			l = append(l, seg{"  " + strings.Repeat("▇", bar), dim})
		}
		out = append(out, l)
	}
	return out
}
