package term

import (
	"bytes"
	"testing"
	"time"
)

func TestDecideGivesColoursAndRedrawsOnlyToATerminal(t *testing.T) {
	cases := []struct {
		name       string
		tty        bool
		noColorSet bool
		termName   string
		want       Mode
	}{
		{"a terminal gets both", true, false, "xterm-256color", Mode{Redraw: true, Color: true}},
		{"a pipe gets neither", false, false, "xterm", Mode{}},
		{"NO_COLOR keeps redraws but drops colour", true, true, "xterm", Mode{Redraw: true}},
		{"a dumb terminal gets neither", true, false, "dumb", Mode{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Decide(tc.tty, tc.termName, tc.noColorSet); got != tc.want {
				t.Errorf("Decide = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestDueDrawsAtMostTenTimesASecond(t *testing.T) {
	cases := []struct {
		name      string
		changed   bool
		redraw    bool
		sinceLast time.Duration
		want      bool
	}{
		{"a change right after a frame waits", true, true, 50 * time.Millisecond, false},
		{"a change after 100ms draws", true, true, 100 * time.Millisecond, true},
		{"no change on a terminal waits for the clock", false, true, 500 * time.Millisecond, false},
		{"no change on a terminal redraws each second", false, true, time.Second, true},
		{"no change on a pipe never prints", false, false, time.Minute, false},
		{"a change on a pipe prints", true, false, 200 * time.Millisecond, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Due(tc.changed, tc.redraw, tc.sinceLast); got != tc.want {
				t.Errorf("Due = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestScreenReplacesThePreviousFrame(t *testing.T) {
	var b bytes.Buffer
	s := NewScreen(&b)
	if err := s.Draw("a\nb\n"); err != nil {
		t.Fatal(err)
	}
	if err := s.Draw("c\n"); err != nil {
		t.Fatal(err)
	}
	if err := s.Draw("d\n"); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "a\nb\n\x1b[2A\r\x1b[Jc\n\x1b[1A\r\x1b[Jd\n"; got != want {
		t.Errorf("wrote %q, want %q", got, want)
	}
}

func TestIsTerminalIsFalseForABuffer(t *testing.T) {
	if IsTerminal(&bytes.Buffer{}) {
		t.Error("a buffer is not a terminal")
	}
	if w, h := Size(&bytes.Buffer{}); w != 0 || h != 0 {
		t.Errorf("Size of a buffer = %d×%d", w, h)
	}
}
