// Package dag owns the dependency graph of a WorkflowRun's steps: it rejects unknown
// dependencies and cycles, orders steps so every step comes after its dependencies, and says
// whether a step may start given the outcomes of the steps it depends on. It knows nothing of
// Kubernetes.
package dag

import (
	"fmt"
	"slices"
	"strings"
)

// Node is one step and the steps it depends on.
type Node struct {
	Name      string
	DependsOn []string
}

// Graph is a validated, acyclic dependency graph.
type Graph struct {
	names []string
	index map[string]int
	deps  [][]int
	order []int
}

// CycleError names the steps of one dependency cycle, in dependency order, first step repeated.
type CycleError struct{ Path []string }

func (e *CycleError) Error() string {
	return "dependency cycle: " + strings.Join(e.Path, " → ")
}

// New validates nodes and builds their graph: names must be unique, dependencies must name a
// node, and there must be no cycle (a *CycleError).
func New(nodes []Node) (*Graph, error) {
	g := &Graph{index: make(map[string]int, len(nodes)), deps: make([][]int, len(nodes))}
	for i, n := range nodes {
		if _, dup := g.index[n.Name]; dup {
			return nil, fmt.Errorf("duplicate step name %q", n.Name)
		}
		g.index[n.Name] = i
		g.names = append(g.names, n.Name)
	}
	for i, n := range nodes {
		for _, d := range n.DependsOn {
			j, ok := g.index[d]
			if !ok {
				return nil, fmt.Errorf("step %q depends on %q, which is not a step", n.Name, d)
			}
			if !slices.Contains(g.deps[i], j) {
				g.deps[i] = append(g.deps[i], j)
			}
		}
	}
	if err := g.sort(); err != nil {
		return nil, err
	}
	return g, nil
}

// sort computes a topological order by a depth-first search in declaration order, so the
// order depends on the definition alone and is the same on every reconcile.
func (g *Graph) sort() error {
	const (
		unvisited = iota
		visiting
		done
	)
	state := make([]int, len(g.names))
	var stack []int
	var visit func(i int) error
	visit = func(i int) error {
		switch state[i] {
		case done:
			return nil
		case visiting:
			start := slices.Index(stack, i)
			path := make([]string, 0, len(stack)-start+1)
			for _, j := range stack[start:] {
				path = append(path, g.names[j])
			}
			return &CycleError{Path: append(path, g.names[i])}
		}
		state[i] = visiting
		stack = append(stack, i)
		for _, d := range g.deps[i] {
			if err := visit(d); err != nil {
				return err
			}
		}
		stack = stack[:len(stack)-1]
		state[i] = done
		g.order = append(g.order, i)
		return nil
	}
	for i := range g.names {
		if err := visit(i); err != nil {
			return err
		}
	}
	return nil
}

// Order returns the step names so that every step comes after the steps it depends on.
func (g *Graph) Order() []string {
	out := make([]string, len(g.order))
	for k, i := range g.order {
		out[k] = g.names[i]
	}
	return out
}

// Has reports whether name is a step of the graph.
func (g *Graph) Has(name string) bool {
	_, ok := g.index[name]
	return ok
}

// DependsOn returns the direct dependencies of name.
func (g *Graph) DependsOn(name string) []string {
	i, ok := g.index[name]
	if !ok {
		return nil
	}
	out := make([]string, len(g.deps[i]))
	for k, d := range g.deps[i] {
		out[k] = g.names[d]
	}
	return out
}

// Ancestors returns every step name depends on, directly or not.
func (g *Graph) Ancestors(name string) map[string]bool {
	out := map[string]bool{}
	i, ok := g.index[name]
	if !ok {
		return out
	}
	var walk func(int)
	walk = func(i int) {
		for _, d := range g.deps[i] {
			if !out[g.names[d]] {
				out[g.names[d]] = true
				walk(d)
			}
		}
	}
	walk(i)
	return out
}

// Outcome is what a dependency's result means for the steps after it.
type Outcome int

const (
	// Unfinished: the dependency may still succeed.
	Unfinished Outcome = iota
	// Satisfied: the dependency succeeded or was skipped.
	Satisfied
	// Unsatisfied: the dependency failed or will never run.
	Unsatisfied
)

// Readiness says whether a step may start.
type Readiness int

const (
	// Waiting: a dependency has not finished.
	Waiting Readiness = iota
	// Ready: every dependency is satisfied.
	Ready
	// Blocked: a dependency ended without success, so the step will never run.
	Blocked
)

func (r Readiness) String() string {
	return [...]string{"Waiting", "Ready", "Blocked"}[r]
}

// Readiness decides whether name may start, given each dependency's outcome. One unsatisfied
// dependency blocks it even while others are unfinished, so a failure propagates at once.
func (g *Graph) Readiness(name string, outcome func(dep string) Outcome) Readiness {
	i, ok := g.index[name]
	if !ok {
		return Blocked
	}
	r := Ready
	for _, d := range g.deps[i] {
		switch outcome(g.names[d]) {
		case Unsatisfied:
			return Blocked
		case Unfinished:
			r = Waiting
		}
	}
	return r
}
