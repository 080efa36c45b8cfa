package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

const (
	// failCreateOnceAnnotation names the containers whose create fails once.
	failCreateOnceAnnotation = "fault.pnsflow.dev/fail-create-once"
	// CRI annotations containerd puts in every container's spec.
	containerNameAnnotation = "io.kubernetes.cri.container-name"
	sandboxIDAnnotation     = "io.kubernetes.cri.sandbox-id"
)

// faultDir remembers the faults already injected; /run is a tmpfs, so a node reboot forgets them
// along with the containers they were for.
var faultDir = "/run/pnsflow-runc-faults"

// injectedFault returns the error message to fail with when args is a `create` of a container
// its Pod asked to fail once, and this is its first create. Any problem reading the spec
// injects nothing: the wrapper must never break a container that did not ask for a fault.
func injectedFault(args []string, dir string) (string, error) {
	sub, rest := subcommand(args)
	if sub != "create" {
		return "", nil
	}
	bundle := flagValue(rest, "--bundle", "-b")
	if bundle == "" {
		bundle = "."
	}
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return "", nil
	}
	var spec struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		return "", nil
	}
	want, name, sandbox := spec.Annotations[failCreateOnceAnnotation], spec.Annotations[containerNameAnnotation], spec.Annotations[sandboxIDAnnotation]
	if want == "" || name == "" || sandbox == "" {
		return "", nil
	}
	if !slices.Contains(strings.Split(want, ","), name) {
		return "", nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("creating %s: %w", dir, err)
	}
	// O_EXCL makes "once" hold even when the kubelet retries at once.
	f, err := os.OpenFile(filepath.Join(dir, sandbox+"-"+name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if errors.Is(err, os.ErrExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("recording the fault: %w", err)
	}
	_ = f.Close()
	return fmt.Sprintf("injected fault (%s=%s): failing create of container %q once", failCreateOnceAnnotation, want, name), nil
}
