package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSpecFile(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--root", "/run/runc", "--log-format", "json", "create", "--bundle", "/b", "id"}, "/b/config.json"},
		{[]string{"--systemd-cgroup", "run", "-b", "/b", "id"}, "/b/config.json"},
		{[]string{"create", "--bundle=/b", "id"}, "/b/config.json"},
		{[]string{"create", "id"}, "config.json"},
		{[]string{"--root", "/r", "exec", "--process", "/tmp/p.json", "--detach", "id"}, "/tmp/p.json"},
		{[]string{"exec", "-p", "/tmp/p.json", "id"}, "/tmp/p.json"},
		{[]string{"exec", "id", "ls"}, ""},
		{[]string{"start", "id"}, ""},
		{[]string{"--version"}, ""},
	} {
		if got := specFile(tc.args); got != tc.want {
			t.Errorf("specFile(%q) = %q, want %q", tc.args, got, tc.want)
		}
	}
}

func TestStripCap(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "config.json")
	// A memory limit above 2^53 must survive the rewrite exactly.
	in := `{"process":{"capabilities":{"bounding":["CAP_CHOWN","CAP_SYS_RESOURCE"],"effective":["CAP_SYS_RESOURCE"]}},"linux":{"resources":{"memory":{"limit":9223372036854771712}}}}`
	if err := os.WriteFile(config, []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := stripCap(config, "CAP_SYS_RESOURCE"); err != nil {
		t.Fatal(err)
	}
	out, _ := os.ReadFile(config)
	if strings.Contains(string(out), "CAP_SYS_RESOURCE") || !strings.Contains(string(out), "CAP_CHOWN") ||
		!strings.Contains(string(out), "9223372036854771712") || !strings.Contains(string(out), `"effective":[]`) {
		t.Fatalf("unexpected rewrite: %s", out)
	}

	process := filepath.Join(dir, "process.json")
	if err := os.WriteFile(process, []byte(`{"args":["sh"],"capabilities":{"bounding":["CAP_SYS_RESOURCE","CAP_KILL"]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := stripCap(process, "CAP_SYS_RESOURCE"); err != nil {
		t.Fatal(err)
	}
	out, _ = os.ReadFile(process)
	if strings.Contains(string(out), "CAP_SYS_RESOURCE") || !strings.Contains(string(out), "CAP_KILL") {
		t.Fatalf("unexpected rewrite: %s", out)
	}
}
