package cmd

import (
	"bufio"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// interrupts delivers Ctrl-C and SIGTERM until stop is called.
func (a *app) interrupts() (<-chan os.Signal, func()) {
	if a.Interrupts != nil {
		return a.Interrupts, func() {}
	}
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	return ch, func() { signal.Stop(ch) }
}

// confirm asks a yes/no question; without a terminal to ask on, the answer is no.
func (a *app) confirm(question string) (bool, error) {
	if a.Confirm != nil {
		return a.Confirm(question)
	}
	// The terminal itself, not stdin: with -i, stdin was the run's input.
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return false, fmt.Errorf("no terminal to ask on: %w", err)
	}
	defer tty.Close()
	fmt.Fprint(tty, question+" [y/N] ")
	answer, err := bufio.NewReader(tty).ReadString('\n')
	if err != nil {
		return false, fmt.Errorf("reading the answer: %w", err)
	}
	return IsYes(answer), nil
}

// IsYes reads an answer to a [y/N] question: only yes means yes.
func IsYes(answer string) bool {
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return true
	}
	return false
}

// OnInterrupt is what `run` does when interrupted.
type OnInterrupt int

const (
	// Leave the run going, and say how to delete it.
	Leave OnInterrupt = iota
	// Ask whether to delete it.
	Ask
	// Delete it (--rm).
	Delete
)

// DecideInterrupt picks what Ctrl-C does to a run: --rm deletes it (the user asked for that
// already), SIGTERM (no one to ask: a CI runner stopping) and the lack of a terminal leave it,
// and otherwise the user is asked.
func DecideInterrupt(rm bool, sig os.Signal, canAsk bool) OnInterrupt {
	switch {
	case rm:
		return Delete
	case sig == syscall.SIGTERM || !canAsk:
		return Leave
	}
	return Ask
}
