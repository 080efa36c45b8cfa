package tree

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// style is how a piece of text is painted on a colour terminal.
type style int

const (
	plain style = iota
	bold
	dim
	green
	red
	yellow
	magenta
)

var ansi = map[style]string{bold: "1", dim: "2", green: "32", red: "31", yellow: "33", magenta: "35"}

// seg is a run of text in one style; a line is a list of them, measured without escapes.
type seg struct {
	text string
	st   style
}

type line []seg

func (l line) width() int {
	n := 0
	for _, s := range l {
		n += utf8.RuneCountInString(s.text)
	}
	return n
}

func (l line) paint(color bool) string {
	var b strings.Builder
	for _, s := range l {
		if color && s.st != plain && s.text != "" {
			fmt.Fprintf(&b, "\x1b[%sm%s\x1b[0m", ansi[s.st], s.text)
			continue
		}
		b.WriteString(s.text)
	}
	return strings.TrimRight(b.String(), " ")
}

// cut shortens l to at most w columns, ending it with "…" when something was dropped.
func (l line) cut(w int) line {
	if w <= 0 || l.width() <= w {
		return l
	}
	var out line
	left := w - 1
	for _, s := range l {
		n := utf8.RuneCountInString(s.text)
		if n <= left {
			out = append(out, s)
			left -= n
			continue
		}
		out = append(out, seg{string([]rune(s.text)[:left]), s.st})
		break
	}
	return append(out, seg{"…", dim})
}

// icon and colour of a phase: the icon carries the phase where colour cannot (NO_COLOR, pipes).
func phaseStyle(phase string) (string, style) {
	switch phase {
	case Succeeded:
		return "✔", green
	case Running:
		return "▶", yellow
	case Failed, Error:
		return "✖", red
	case Skipped:
		return "↷", dim
	case Omitted:
		return "–", dim
	case Cancelled:
		return "⊘", magenta
	}
	return "○", dim
}

// middle shortens s to w runes by cutting its middle: long step and StepRun names differ at
// their ends (an item index, a hash), which must stay visible.
func middle(s string, w int) string {
	r := []rune(s)
	if w <= 0 || len(r) <= w {
		return s
	}
	if w == 1 {
		return "…"
	}
	head := w / 2
	tail := w - 1 - head
	return string(r[:head]) + "…" + string(r[len(r)-tail:])
}

// end shortens s to w runes, ending it with "…".
func end(s string, w int) string {
	r := []rune(s)
	if w <= 0 || len(r) <= w {
		return s
	}
	return string(r[:max(w-1, 0)]) + "…"
}

func pad(s string, w int) string {
	if n := utf8.RuneCountInString(s); n < w {
		return s + strings.Repeat(" ", w-n)
	}
	return s
}

// Duration is how long something took, for people: milliseconds under a second, then whole
// seconds ("1m12s"), like the API's own duration fields.
func Duration(d time.Duration) string {
	switch {
	case d < 0:
		return ""
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// StageDuration is a stage's length, finer than Duration where stages differ: hundredths of a
// second between a second and a minute.
func StageDuration(d time.Duration) string {
	if d >= time.Second && d < time.Minute {
		return d.Round(10 * time.Millisecond).String()
	}
	return Duration(d)
}

// firstLine is the first line of a value, marked when more follows.
func firstLine(v string) string {
	if i := strings.IndexByte(v, '\n'); i >= 0 && i < len(v)-1 {
		return v[:i] + " ⏎…"
	}
	return strings.TrimSuffix(v, "\n")
}
