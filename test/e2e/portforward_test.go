//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// portForward runs `kubectl port-forward` to target's port in ns for the rest of the spec and
// returns the local port it listens on.
func portForward(ns, target string, port int) string {
	pfCtx, stop := context.WithCancel(context.Background())
	cmd := exec.CommandContext(pfCtx, kubectlBin, "-n", ns, "port-forward", target, fmt.Sprintf(":%d", port))
	cmd.Env = os.Environ()
	out, err := cmd.StdoutPipe()
	Expect(err).NotTo(HaveOccurred())
	Expect(cmd.Start()).To(Succeed())
	// One cleanup, stop before wait: cleanups run last-in first-out, so two separate ones would
	// wait for a port-forward nobody has stopped yet.
	DeferCleanup(func() { stop(); _ = cmd.Wait() })
	// Bounded: a port-forward that never says where it listens must fail the spec, not hang it.
	lines := make(chan string, 1)
	go func() { l, _ := bufio.NewReader(out).ReadString('\n'); lines <- l }()
	var line string
	Eventually(lines, "60s").Should(Receive(&line), "kubectl port-forward never said where it listens")
	m := regexp.MustCompile(`127\.0\.0\.1:(\d+)`).FindStringSubmatch(line)
	Expect(m).NotTo(BeNil(), "port-forward said %q", line)
	return m[1]
}
