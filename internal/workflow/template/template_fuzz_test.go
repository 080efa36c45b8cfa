package template

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

// fuzzScope is a scope in which every reference kind resolves; param and item are fuzzed.
func fuzzScope(param string, item []byte) *Scope {
	s := scope()
	s.Workflow.Parameters["x"] = param
	s.Workflow.Phase = "Failed"
	s.Item = json.RawMessage(item)
	return s
}

// FuzzResolve: Resolve and Refs never panic; a string without "{{" resolves to itself; and a
// substituted value is inserted verbatim and never expanded again, whatever it holds.
func FuzzResolve(f *testing.F) {
	for _, seed := range []struct{ s, param, item string }{
		{"plain {text} {{ unclosed", "42", `"abc"`},
		{"x={{workflow.parameters.x}}!", "{{workflow.name}}", `{"a":1}`},
		{"{{item.a.b}}-{{ item }}", "", `{"a":{"b":[1,2]}}`},
		{"{{steps.fan.outputs.parameters.p}} {{steps.a.exitCode}} {{steps.skip.phase}}", "", `null`},
		{"{{{workflow.name}}}", "}}", `[`},
		{"{{item..a}} {{}}", "{{", `"\u00e9"`},
		{"{{workflow.phase}}{{steps.a.outputs.result}}", "v", `7`},
	} {
		f.Add(seed.s, seed.param, []byte(seed.item))
	}
	f.Fuzz(func(t *testing.T, s, param string, item []byte) {
		scope := fuzzScope(param, item)
		got, err := Resolve(s, scope)
		refs, refsErr := Refs(s)
		if !strings.Contains(s, "{{") {
			if err != nil || got != s || refsErr != nil || len(refs) != 0 {
				t.Fatalf("Resolve(%q) = %q, %v; Refs = %v, %v: want the string itself, no reference", s, got, err, refs, refsErr)
			}
		}
		if (refsErr == nil) != (err == nil || errors.Is(err, ErrUnresolved)) {
			t.Fatalf("Refs(%q) error %v disagrees with Resolve's %v", s, refsErr, err)
		}
		if strings.Contains(s, "{{") || strings.HasSuffix(s, "{") {
			return
		}
		// s is plain text: a reference placed after it, with plain text after that, gives the
		// parameter's value exactly once, unexpanded.
		const ref = "{{workflow.parameters.x}}"
		for _, suffix := range []string{"", s, "}}"} {
			in := s + ref + suffix
			got, err := Resolve(in, scope)
			if want := s + param + suffix; err != nil || got != want {
				t.Fatalf("Resolve(%q) = %q, %v; want %q", in, got, err, want)
			}
		}
	})
}

// FuzzExecute: compiling and executing a StepRunSpec never panics; a spec whose string values
// hold no "{{" comes back equal (map keys with "{{" included: keys are never templated); and
// every string value of the result is its template's value resolved on its own, so a value
// cannot change the spec's structure.
func FuzzExecute(f *testing.F) {
	f.Add("busybox:{{workflow.parameters.x}}", `echo "{{item.name}}"`, "{{item}}", "{{item.name}}", "1.37", []byte(`{"name":"n\"},{\"x"}`))
	f.Add("busybox", "plain", "", "plain-key", "v", []byte(`"s"`))
	f.Add("busybox", "a", "b", "{{key}}", "}}{{", []byte(`{}`))
	f.Add("{{bogus}}", "", "", "", "", []byte(`1`))
	f.Fuzz(func(t *testing.T, image, arg, env, key, param string, item []byte) {
		for _, s := range []string{image, arg, env, key, param} {
			// Specs and values reach the controller through JSON, which holds valid UTF-8 only.
			if !utf8.ValidString(s) {
				t.Skip("not UTF-8")
			}
		}
		spec := &v1alpha1.StepRunSpec{
			Image:                 image,
			Args:                  []string{arg, "fixed"},
			Env:                   []corev1.EnvVar{{Name: "E", Value: env}},
			NodeSelector:          map[string]string{key: arg},
			ActiveDeadlineSeconds: new(int64(30)),
		}
		orig := spec.DeepCopy()
		tmpl, err := Compile(spec)
		values := []string{image, arg, env}
		plain := true
		for _, v := range values {
			plain = plain && !strings.Contains(v, "{{")
		}
		if err != nil {
			if plain {
				t.Fatalf("Compile refused a spec without references: %v", err)
			}
			return
		}
		scope := fuzzScope(param, item)
		got, err := tmpl.Execute(scope)
		if !equality.Semantic.DeepEqual(orig, spec) {
			t.Fatal("Compile or Execute changed the template")
		}
		if plain {
			if err != nil || !equality.Semantic.DeepEqual(orig, got) {
				t.Fatalf("a spec without references changed (err %v): %+v", err, got)
			}
			return
		}
		want := make([]string, len(values))
		var wantErr error
		for i, v := range values {
			if want[i], wantErr = Resolve(v, scope); wantErr != nil {
				break
			}
			// The spec is JSON, whose strings are UTF-8: an invalid byte (only a fuzzed item has
			// one; the API server's are valid) becomes U+FFFD, as encoding/json writes it.
			want[i] = asJSONString(want[i])
		}
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("Execute error %v, but resolving each value gives %v", err, wantErr)
		}
		if err != nil {
			return
		}
		if got.Image != want[0] || len(got.Args) != 2 || got.Args[0] != want[1] || got.Args[1] != "fixed" ||
			len(got.Env) != 1 || got.Env[0].Name != "E" || got.Env[0].Value != want[2] ||
			len(got.NodeSelector) != 1 || got.NodeSelector[key] != want[1] || *got.ActiveDeadlineSeconds != 30 {
			t.Fatalf("Execute gave %+v; want image %q, args[0] and nodeSelector[%q] %q, env %q", got, want[0], key, want[1], want[2])
		}
	})
}

// asJSONString is s as encoding/json writes it: each byte of an invalid UTF-8 sequence replaced
// by U+FFFD.
func asJSONString(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r) // ranging over a string yields U+FFFD for each invalid byte
	}
	return b.String()
}
