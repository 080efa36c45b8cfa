// Command pnsflow-runc stands in for runc on hosts whose capability bounding set lacks
// CAP_SYS_RESOURCE (seen on Firecracker VMs). There, `docker run --privileged` asks runc for every
// capability, runc fails with "unable to apply caps: operation not permitted", and inside a kind
// node runc's nsexec cannot raise oom_score_adj. The wrapper removes CAP_SYS_RESOURCE from the
// container's process spec (the bundle's config.json for create/run, the --process file for
// exec) and then execs the real runc with the same arguments.
//
// When the bounding set does hold CAP_SYS_RESOURCE the wrapper changes nothing: it only execs
// runc, so installing it on a host that does not need it is harmless.
//
// Fault injection, for tests: a Pod annotated fault.pnsflow.dev/fail-create-once=<names> (a
// comma-separated list of container names; containerd passes fault.pnsflow.dev/* Pod annotations
// into every container's spec, see hack/kind/kind-up.sh) has `create` of each named container fail
// once, as runc does when it cannot join the Pod's namespaces. The kubelet then sees the same
// error as from that real runtime fault.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

const capSysResource = 24 // linux/capability.h

// realRunc may be set at build time (-ldflags "-X main.realRunc=/usr/sbin/runc").
var realRunc = ""

// runc's global flags that take a value; needed to find the subcommand in argv.
var globalValueFlags = map[string]bool{"--root": true, "--log": true, "--log-format": true, "--criu": true, "--rootless": true}

func main() {
	runc, err := findRunc()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pnsflow-runc: %v\n", err)
		os.Exit(127)
	}
	if msg, err := injectedFault(os.Args[1:], faultDir); err != nil {
		fmt.Fprintf(os.Stderr, "pnsflow-runc: fault injection: %v\n", err)
	} else if msg != "" {
		fmt.Fprintf(os.Stderr, "pnsflow-runc: %s\n", msg)
		os.Exit(1)
	}
	if lacksCap(capSysResource) {
		if file := specFile(os.Args[1:]); file != "" {
			if err := stripCap(file, "CAP_SYS_RESOURCE"); err != nil {
				fmt.Fprintf(os.Stderr, "pnsflow-runc: %s: %v\n", file, err)
				os.Exit(1)
			}
		}
	}
	argv := append([]string{"runc"}, os.Args[1:]...)
	err = syscall.Exec(runc, argv, os.Environ())
	fmt.Fprintf(os.Stderr, "pnsflow-runc: exec %s: %v\n", runc, err)
	os.Exit(127)
}

// findRunc returns the real runc: the build-time path, else the usual places, never ourselves.
func findRunc() (string, error) {
	candidates := []string{"/usr/local/sbin/runc", "/usr/sbin/runc", "/usr/bin/runc", "/usr/local/bin/runc", "/sbin/runc", "/bin/runc"}
	if realRunc != "" {
		candidates = append([]string{realRunc}, candidates...)
	}
	self, _ := os.Executable()
	selfInfo, _ := os.Stat(self)
	for _, c := range candidates {
		info, err := os.Stat(c)
		if err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
			continue
		}
		if selfInfo != nil && os.SameFile(info, selfInfo) {
			continue
		}
		return c, nil
	}
	return "", fmt.Errorf("no runc found in %s", strings.Join(candidates, ", "))
}

// lacksCap reports whether this process's capability bounding set lacks capability n.
func lacksCap(n uint) bool {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "CapBnd:"); ok {
			bnd, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && bnd&(1<<n) == 0
		}
	}
	return false
}

// specFile returns the file that holds the process spec runc is about to use: the bundle's
// config.json for create and run, the --process file for exec; "" for anything else.
func specFile(args []string) string {
	sub, rest := subcommand(args)
	switch sub {
	case "create", "run":
		bundle := flagValue(rest, "--bundle", "-b")
		if bundle == "" {
			bundle = "."
		}
		return filepath.Join(bundle, "config.json")
	case "exec":
		return flagValue(rest, "--process", "-p")
	}
	return ""
}

// subcommand splits runc's argv (without the program name) into its subcommand and what follows.
func subcommand(args []string) (string, []string) {
	i := 0
	for i < len(args) && strings.HasPrefix(args[i], "-") {
		if globalValueFlags[args[i]] {
			i++
		}
		i++
	}
	if i >= len(args) {
		return "", nil
	}
	return args[i], args[i+1:]
}

func flagValue(args []string, long, short string) string {
	for i, a := range args {
		if a == "--" {
			break
		}
		if (a == long || a == short) && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, long+"="); ok {
			return v
		}
		if v, ok := strings.CutPrefix(a, short+"="); ok {
			return v
		}
	}
	return ""
}

// stripCap removes capability name from every set of the process spec in file, in place. The file
// is either a runtime config (capabilities under "process") or a bare process spec (exec).
func stripCap(file, name string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // keep large integers (memory limits) exact
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return err
	}
	proc := doc
	if p, ok := doc["process"].(map[string]any); ok {
		proc = p
	}
	caps, ok := proc["capabilities"].(map[string]any)
	if !ok {
		return nil
	}
	changed := false
	for set, v := range caps {
		list, ok := v.([]any)
		if !ok {
			continue
		}
		kept := list[:0:0]
		for _, c := range list {
			if c == name {
				changed = true
				continue
			}
			kept = append(kept, c)
		}
		caps[set] = kept
	}
	if !changed {
		return nil
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	info, err := os.Stat(file)
	if err != nil {
		return err
	}
	tmp := file + ".pnsflow-runc"
	if err := os.WriteFile(tmp, out, info.Mode().Perm()); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}
