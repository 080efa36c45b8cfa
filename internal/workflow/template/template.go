// Package template owns the {{...}} references of WorkflowRun steps: it parses them, checks them
// against what a step may see, and substitutes them into a StepRunSpec. Substitution works on
// the spec's JSON string values only, so a value can never change the spec's structure.
package template

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

// Kind says what a reference names.
type Kind int

const (
	// WorkflowParameter is {{workflow.parameters.<Name>}}.
	WorkflowParameter Kind = iota
	// WorkflowName is {{workflow.name}}.
	WorkflowName
	// WorkflowNamespace is {{workflow.namespace}}.
	WorkflowNamespace
	// WorkflowPhase is {{workflow.phase}}, the run's outcome, in onExit only.
	WorkflowPhase
	// StepOutputParameter is {{steps.<Step>.outputs.parameters.<Name>}}.
	StepOutputParameter
	// StepOutputResult is {{steps.<Step>.outputs.result}}.
	StepOutputResult
	// StepOutputArtifact is {{steps.<Step>.outputs.artifacts.<Name>}}: the artifact's key.
	StepOutputArtifact
	// StepExitCode is {{steps.<Step>.exitCode}}.
	StepExitCode
	// StepPhase is {{steps.<Step>.phase}}.
	StepPhase
	// Item is {{item}} or {{item.<Path>}}.
	Item
)

// Ref is one parsed reference.
type Ref struct {
	Kind Kind
	// Step is the referenced step, for the Step* kinds.
	Step string
	// Name is the parameter's or artifact's name, for WorkflowParameter, StepOutputParameter and
	// StepOutputArtifact.
	Name string
	// Path is the field path into the item, for Item.
	Path []string
	// Text is the reference as written between the braces, trimmed.
	Text string
}

func (r Ref) String() string { return "{{" + r.Text + "}}" }

// Parse parses the text between "{{" and "}}".
func Parse(expr string) (Ref, error) {
	text := strings.TrimSpace(expr)
	r := Ref{Text: text}
	parts := strings.Split(text, ".")
	for _, p := range parts {
		if p == "" {
			return r, fmt.Errorf("invalid reference %s", r)
		}
	}
	switch {
	case parts[0] == "item":
		r.Kind, r.Path = Item, parts[1:]
		return r, nil
	case parts[0] == "workflow" && len(parts) == 3 && parts[1] == "parameters":
		r.Kind, r.Name = WorkflowParameter, parts[2]
		return r, nil
	case parts[0] == "workflow" && len(parts) == 2:
		switch parts[1] {
		case "name":
			r.Kind = WorkflowName
			return r, nil
		case "namespace":
			r.Kind = WorkflowNamespace
			return r, nil
		case "phase":
			r.Kind = WorkflowPhase
			return r, nil
		}
	case parts[0] == "steps" && len(parts) >= 3:
		r.Step = parts[1]
		switch rest := strings.Join(parts[2:], "."); {
		case rest == "outputs.result":
			r.Kind = StepOutputResult
			return r, nil
		case rest == "exitCode":
			r.Kind = StepExitCode
			return r, nil
		case rest == "phase":
			r.Kind = StepPhase
			return r, nil
		case len(parts) == 5 && parts[2] == "outputs" && parts[3] == "parameters":
			r.Kind, r.Name = StepOutputParameter, parts[4]
			return r, nil
		case len(parts) == 5 && parts[2] == "outputs" && parts[3] == "artifacts":
			r.Kind, r.Name = StepOutputArtifact, parts[4]
			return r, nil
		}
	}
	return r, fmt.Errorf("unknown reference %s", r)
}

// span is one reference's place in a string.
type span struct {
	start, end int // of "{{" and just past "}}"
	ref        Ref
}

// scan finds the references in s. An unclosed "{{" is literal text.
func scan(s string) ([]span, error) {
	var out []span
	for i := 0; ; {
		open := strings.Index(s[i:], "{{")
		if open < 0 {
			return out, nil
		}
		open += i
		end := strings.Index(s[open+2:], "}}")
		if end < 0 {
			return out, nil
		}
		end += open + 2
		ref, err := Parse(s[open+2 : end])
		if err != nil {
			return nil, err
		}
		out = append(out, span{start: open, end: end + 2, ref: ref})
		i = end + 2
	}
}

// Refs returns the references in s.
func Refs(s string) ([]Ref, error) {
	spans, err := scan(s)
	if err != nil {
		return nil, err
	}
	out := make([]Ref, len(spans))
	for i, sp := range spans {
		out[i] = sp.ref
	}
	return out, nil
}

// Template is a StepRunSpec prepared for repeated substitution (once per item).
type Template struct {
	spec *v1alpha1.StepRunSpec
	// tree is the spec as generic JSON; nil when the spec holds no reference.
	tree any
	refs []Ref
}

// Compile prepares spec for substitution and reports a malformed or unknown reference.
func Compile(spec *v1alpha1.StepRunSpec) (*Template, error) {
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("encoding template: %w", err)
	}
	t := &Template{spec: spec.DeepCopy()}
	if !bytes.Contains(raw, []byte("{{")) {
		return t, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&t.tree); err != nil {
		return nil, fmt.Errorf("decoding template: %w", err)
	}
	var walkErr error
	walkStrings(t.tree, func(s string) string {
		refs, err := Refs(s)
		if err != nil && walkErr == nil {
			walkErr = err
		}
		t.refs = append(t.refs, refs...)
		return s
	})
	if walkErr != nil {
		return nil, walkErr
	}
	return t, nil
}

// Refs returns every reference in the template, in document order.
func (t *Template) Refs() []Ref { return slices.Clone(t.refs) }

// Execute substitutes every reference and returns the resulting spec.
func (t *Template) Execute(scope *Scope) (*v1alpha1.StepRunSpec, error) {
	if t.tree == nil {
		return t.spec.DeepCopy(), nil
	}
	var firstErr error
	out := walkStrings(deepCopyJSON(t.tree), func(s string) string {
		if firstErr != nil {
			return s
		}
		r, err := Resolve(s, scope)
		if err != nil {
			firstErr = err
		}
		return r
	})
	if firstErr != nil {
		return nil, firstErr
	}
	raw, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encoding substituted template: %w", err)
	}
	spec := &v1alpha1.StepRunSpec{}
	if err := json.Unmarshal(raw, spec); err != nil {
		return nil, fmt.Errorf("decoding substituted template: %w", err)
	}
	return spec, nil
}

// walkStrings replaces every string value (not map keys) of a generic JSON tree in place.
func walkStrings(v any, f func(string) string) any {
	switch t := v.(type) {
	case string:
		return f(t)
	case map[string]any:
		for k, e := range t {
			t[k] = walkStrings(e, f)
		}
	case []any:
		for i, e := range t {
			t[i] = walkStrings(e, f)
		}
	}
	return v
}

func deepCopyJSON(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[k] = deepCopyJSON(e)
		}
		return m
	case []any:
		l := make([]any, len(t))
		for i, e := range t {
			l[i] = deepCopyJSON(e)
		}
		return l
	}
	return v
}

// Scope is what references resolve against.
type Scope struct {
	Workflow Workflow
	// Steps holds the steps that may be referenced, by name.
	Steps map[string]*StepValues
	// Item is the current item as JSON; nil outside a fan-out.
	Item json.RawMessage
}

// Workflow holds the run-level values.
type Workflow struct {
	Name, Namespace string
	// Phase is the run's outcome; empty outside onExit.
	Phase      string
	Parameters map[string]string
}

// StepValues are what one finished step exposes.
type StepValues struct {
	Phase string
	// Skipped steps expose their phase only.
	Skipped bool
	// ExitCode, Parameters and Result are a single-item step's. Parameters and Result are
	// substituted as given: whoever fills them trims the one trailing newline (the executor for
	// parameters, the WorkflowRun controller for the result).
	ExitCode   *int32
	Parameters map[string]string
	Result     *string
	// Artifacts are the stored output artifacts' keys, by name.
	Artifacts map[string]string
	// Items holds a fan-out's items in order; its outputs then resolve to JSON lists.
	Items  []StepValues
	FanOut bool
}

// ErrUnresolved marks a reference that is well-formed and allowed but has no value at run time
// (a skipped step's outputs, an item without the field).
var ErrUnresolved = errors.New("unresolved reference")

func unresolved(r Ref, format string, args ...any) error {
	return fmt.Errorf("%w %s: %s", ErrUnresolved, r, fmt.Sprintf(format, args...))
}

// Resolve substitutes every reference in s.
func Resolve(s string, scope *Scope) (string, error) {
	spans, err := scan(s)
	if err != nil || len(spans) == 0 {
		return s, err
	}
	var b strings.Builder
	last := 0
	for _, sp := range spans {
		v, err := Value(sp.ref, scope)
		if err != nil {
			return "", err
		}
		b.WriteString(s[last:sp.start])
		b.WriteString(v)
		last = sp.end
	}
	b.WriteString(s[last:])
	return b.String(), nil
}

// Value is the text a reference resolves to. Non-string JSON values (items, a fan-out's outputs)
// resolve to compact JSON.
func Value(r Ref, scope *Scope) (string, error) {
	switch r.Kind {
	case WorkflowParameter:
		v, ok := scope.Workflow.Parameters[r.Name]
		if !ok {
			return "", unresolved(r, "no parameter %q", r.Name)
		}
		return v, nil
	case WorkflowName:
		return scope.Workflow.Name, nil
	case WorkflowNamespace:
		return scope.Workflow.Namespace, nil
	case WorkflowPhase:
		if scope.Workflow.Phase == "" {
			return "", unresolved(r, "the run's phase is known in onExit only")
		}
		return scope.Workflow.Phase, nil
	case Item:
		if scope.Item == nil {
			return "", unresolved(r, "the step has no items")
		}
		return itemValue(r, scope.Item)
	}
	st, ok := scope.Steps[r.Step]
	if !ok {
		return "", unresolved(r, "step %q has no values here", r.Step)
	}
	if r.Kind == StepPhase {
		return st.Phase, nil
	}
	if st.Skipped {
		return "", unresolved(r, "step %q was skipped", r.Step)
	}
	if !st.FanOut {
		return single(r, st)
	}
	list := make([]any, len(st.Items))
	for i := range st.Items {
		v, err := single(r, &st.Items[i])
		if err != nil {
			return "", err
		}
		if r.Kind == StepExitCode {
			n, _ := strconv.Atoi(v)
			list[i] = n
		} else {
			list[i] = v
		}
	}
	raw, err := json.Marshal(list)
	if err != nil {
		return "", fmt.Errorf("encoding %s: %w", r, err)
	}
	return string(raw), nil
}

func single(r Ref, st *StepValues) (string, error) {
	switch r.Kind {
	case StepOutputParameter:
		v, ok := st.Parameters[r.Name]
		if !ok {
			return "", unresolved(r, "step %q reported no output parameter %q", r.Step, r.Name)
		}
		return v, nil
	case StepOutputArtifact:
		v, ok := st.Artifacts[r.Name]
		if !ok {
			return "", unresolved(r, "step %q stored no output artifact %q", r.Step, r.Name)
		}
		return v, nil
	case StepOutputResult:
		if st.Result == nil {
			return "", unresolved(r, "step %q reported no result", r.Step)
		}
		return *st.Result, nil
	case StepExitCode:
		if st.ExitCode == nil {
			return "", unresolved(r, "step %q has no exit code", r.Step)
		}
		return strconv.Itoa(int(*st.ExitCode)), nil
	}
	return "", fmt.Errorf("unknown reference %s", r)
}

// itemValue renders an item, or a field of it: strings as themselves, anything else as JSON.
func itemValue(r Ref, item json.RawMessage) (string, error) {
	raw := item
	for _, f := range r.Path {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
			return "", unresolved(r, "the item is not an object with field %q", f)
		}
		v, ok := obj[f]
		if !ok {
			return "", unresolved(r, "the item has no field %q", f)
		}
		raw = v
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return "", unresolved(r, "the item is not valid JSON")
	}
	return buf.String(), nil
}
