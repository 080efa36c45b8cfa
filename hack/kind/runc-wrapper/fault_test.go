package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeBundle(t *testing.T, annotations map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	data, err := json.Marshal(map[string]any{"annotations": annotations})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestInjectedFaultFailsTheNamedContainersCreateOnce(t *testing.T) {
	state := t.TempDir()
	pod := func(name string) map[string]string {
		return map[string]string{failCreateOnceAnnotation: "pns-executor,other",
			containerNameAnnotation: name, sandboxIDAnnotation: "sandbox-1"}
	}
	executor := writeBundle(t, pod("pns-executor"))
	create := []string{"--root", "/run/runc", "create", "--bundle", executor, "id-1"}

	msg, err := injectedFault(create, state)
	if err != nil || !strings.Contains(msg, `failing create of container "pns-executor" once`) {
		t.Fatalf("first create: msg %q, err %v; want an injected failure", msg, err)
	}
	if msg, err := injectedFault(create, state); msg != "" || err != nil {
		t.Errorf("second create: msg %q, err %v; want no fault (once only)", msg, err)
	}
	// Another Pod's container of the same name fails once too.
	other := writeBundle(t, map[string]string{failCreateOnceAnnotation: "pns-executor",
		containerNameAnnotation: "pns-executor", sandboxIDAnnotation: "sandbox-2"})
	if msg, _ := injectedFault([]string{"create", "-b", other, "id-2"}, state); msg == "" {
		t.Error("a second Pod's first create was not failed")
	}
}

func TestInjectedFaultLeavesEverythingElseAlone(t *testing.T) {
	state := t.TempDir()
	for _, tc := range []struct {
		name string
		args func(t *testing.T) []string
	}{
		{"a container the annotation does not name", func(t *testing.T) []string {
			return []string{"create", "--bundle", writeBundle(t, map[string]string{failCreateOnceAnnotation: "pns-executor",
				containerNameAnnotation: "main", sandboxIDAnnotation: "s"}), "id"}
		}},
		{"no annotation", func(t *testing.T) []string {
			return []string{"create", "--bundle", writeBundle(t, map[string]string{containerNameAnnotation: "main", sandboxIDAnnotation: "s"}), "id"}
		}},
		{"the sandbox itself (no container name)", func(t *testing.T) []string {
			return []string{"create", "--bundle", writeBundle(t, map[string]string{failCreateOnceAnnotation: "pns-executor", sandboxIDAnnotation: "s"}), "id"}
		}},
		{"not a create", func(t *testing.T) []string {
			return []string{"start", "id"}
		}},
		{"no bundle to read", func(t *testing.T) []string {
			return []string{"create", "--bundle", filepath.Join(t.TempDir(), "missing"), "id"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if msg, err := injectedFault(tc.args(t), state); msg != "" || err != nil {
				t.Errorf("msg %q, err %v; want no fault", msg, err)
			}
		})
	}
}
