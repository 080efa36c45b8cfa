// Package term decides how output looks where it goes: a terminal gets colours and a frame
// redrawn in place, anything else (a pipe, a file, CI) plain lines, one per change.
package term

import (
	"fmt"
	"io"
	"os"
	"time"

	xterm "golang.org/x/term"
)

// Mode is how to write to one stream.
type Mode struct {
	// Redraw: the stream is a terminal that can redraw a frame in place.
	Redraw bool
	// Color: ANSI colours are welcome.
	Color bool
}

// Decide picks the mode: only a terminal gets redraws and colours; NO_COLOR (any value, as
// https://no-color.org says) takes the colours away, and TERM=dumb both.
func Decide(isTerminal bool, termName string, noColorSet bool) Mode {
	if !isTerminal || termName == "dumb" {
		return Mode{}
	}
	return Mode{Redraw: true, Color: !noColorSet}
}

// Detect decides the mode of w from the process's environment.
func Detect(w io.Writer) Mode {
	_, set := os.LookupEnv("NO_COLOR")
	return Decide(IsTerminal(w), os.Getenv("TERM"), set)
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w any) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && xterm.IsTerminal(int(f.Fd()))
}

// Size is w's size in columns and lines; 0, 0 when it is not a terminal.
func Size(w io.Writer) (width, height int) {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok {
		return 0, 0
	}
	width, height, err := xterm.GetSize(int(f.Fd()))
	if err != nil {
		return 0, 0
	}
	return width, height
}

// Screen redraws a frame in place: each frame replaces the one before it.
type Screen struct {
	w     io.Writer
	lines int
}

// NewScreen draws on w, which must be a terminal.
func NewScreen(w io.Writer) *Screen { return &Screen{w: w} }

// Draw replaces the last frame with frame, which ends in a newline. Lines must not wrap (the
// tree cuts them at the terminal's width), or the cursor would not get back to the top.
func (s *Screen) Draw(frame string) error {
	_, err := io.WriteString(s.w, Redraw(s.lines, frame))
	s.lines = countLines(frame)
	return err
}

// Redraw is what replaces a frame of prevLines lines with frame: cursor up to the first line,
// clear to the end of the screen, the new frame.
func Redraw(prevLines int, frame string) string {
	if prevLines == 0 {
		return frame
	}
	return fmt.Sprintf("\x1b[%dA\r\x1b[J%s", prevLines, frame)
}

func countLines(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			n++
		}
	}
	return n
}

// Frame timing: at most MaxRate frames a second however fast events come (a 5000-item
// fan-out sends thousands), and one a second without events so elapsed times keep moving.
const (
	MinInterval = 100 * time.Millisecond
	Refresh     = time.Second
)

// Due says whether to draw a frame now: something changed and MinInterval has passed since the
// last frame, or (on a terminal) Refresh has passed and the clock in the frame would be stale.
func Due(changed, redraw bool, sinceLast time.Duration) bool {
	if sinceLast < MinInterval {
		return false
	}
	return changed || (redraw && sinceLast >= Refresh)
}
