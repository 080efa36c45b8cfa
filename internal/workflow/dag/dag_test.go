package dag

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func nodes(spec ...[]string) []Node {
	out := make([]Node, len(spec))
	for i, s := range spec {
		out[i] = Node{Name: s[0], DependsOn: s[1:]}
	}
	return out
}

func TestNewAndOrder(t *testing.T) {
	cases := []struct {
		name      string
		nodes     []Node
		wantOrder []string
		wantErr   string
		wantCycle []string
	}{
		{name: "single", nodes: nodes([]string{"a"}), wantOrder: []string{"a"}},
		{name: "independent keep declaration order", nodes: nodes([]string{"b"}, []string{"a"}, []string{"c"}),
			wantOrder: []string{"b", "a", "c"}},
		{name: "diamond", nodes: nodes([]string{"d", "b", "c"}, []string{"a"}, []string{"b", "a"}, []string{"c", "a"}),
			wantOrder: []string{"a", "b", "c", "d"}},
		{name: "chain declared backwards", nodes: nodes([]string{"c", "b"}, []string{"b", "a"}, []string{"a"}),
			wantOrder: []string{"a", "b", "c"}},
		{name: "duplicate dependency is harmless", nodes: nodes([]string{"a"}, []string{"b", "a", "a"}),
			wantOrder: []string{"a", "b"}},
		{name: "unknown dependency", nodes: nodes([]string{"a", "zz"}),
			wantErr: `step "a" depends on "zz", which is not a step`},
		{name: "duplicate name", nodes: nodes([]string{"a"}, []string{"a"}), wantErr: `duplicate step name "a"`},
		{name: "self loop", nodes: nodes([]string{"a", "a"}), wantCycle: []string{"a", "a"}},
		{name: "three-cycle", nodes: nodes([]string{"x"}, []string{"a", "c"}, []string{"b", "a"}, []string{"c", "b"}),
			wantCycle: []string{"a", "c", "b", "a"}},
		{name: "cycle behind a valid prefix", nodes: nodes([]string{"a"}, []string{"b", "a", "c"}, []string{"c", "b"}),
			wantCycle: []string{"b", "c", "b"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g, err := New(tc.nodes)
			var cycle *CycleError
			switch {
			case tc.wantCycle != nil:
				if !errors.As(err, &cycle) {
					t.Fatalf("want a cycle error, got %v", err)
				}
				if d := cmp.Diff(tc.wantCycle, cycle.Path); d != "" {
					t.Errorf("cycle path (-want +got):\n%s", d)
				}
			case tc.wantErr != "":
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("want error %q, got %v", tc.wantErr, err)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if d := cmp.Diff(tc.wantOrder, g.Order()); d != "" {
					t.Errorf("order (-want +got):\n%s", d)
				}
			}
		})
	}
}

func TestCycleMessage(t *testing.T) {
	_, err := New(nodes([]string{"a", "b"}, []string{"b", "a"}))
	if err == nil || err.Error() != "dependency cycle: a → b → a" {
		t.Fatalf("got %v", err)
	}
}

func TestAncestorsAndDependsOn(t *testing.T) {
	g, err := New(nodes([]string{"a"}, []string{"b", "a"}, []string{"c", "a"}, []string{"d", "b", "c"}, []string{"e"}))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]bool{"a": true, "b": true, "c": true}, g.Ancestors("d")); d != "" {
		t.Errorf("ancestors of d (-want +got):\n%s", d)
	}
	if d := cmp.Diff(map[string]bool{}, g.Ancestors("e")); d != "" {
		t.Errorf("ancestors of e (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"b", "c"}, g.DependsOn("d")); d != "" {
		t.Errorf("dependsOn (-want +got):\n%s", d)
	}
	if !g.Has("e") || g.Has("zz") {
		t.Error("Has is wrong")
	}
}

func TestReadiness(t *testing.T) {
	g, err := New(nodes([]string{"a"}, []string{"b"}, []string{"c", "a", "b"}))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		a, b Outcome
		want Readiness
	}{
		{"both unfinished", Unfinished, Unfinished, Waiting},
		{"one satisfied", Satisfied, Unfinished, Waiting},
		{"both satisfied", Satisfied, Satisfied, Ready},
		{"one failed blocks at once", Unsatisfied, Unfinished, Blocked},
		{"failed after satisfied", Satisfied, Unsatisfied, Blocked},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := map[string]Outcome{"a": tc.a, "b": tc.b}
			if got := g.Readiness("c", func(d string) Outcome { return out[d] }); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	if got := g.Readiness("a", nil); got != Ready {
		t.Errorf("a root is ready, got %v", got)
	}
}
