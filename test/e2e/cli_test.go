//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	. "github.com/pnsflow/pnsflow/internal/testutil"
)

// The kubectl plugin on a real cluster, run as a user runs it: built from source into a
// directory put first on PATH, and called as `kubectl pnsflow` through the real kubectl, which
// finds kubectl-pnsflow there and passes its exit code on.

// buildPlugin builds cmd/kubectl-pnsflow into a directory of the running spec (removed with
// it); Go's build cache makes every build after the first a link.
func buildPlugin() string {
	dir := GinkgoT().TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "kubectl-pnsflow"), "./cmd/kubectl-pnsflow")
	build.Dir = filepath.Join("..", "..")
	out, err := build.CombinedOutput()
	ExpectWithOffset(2, err).NotTo(HaveOccurred(), "building the plugin: %s", out)
	return dir
}

// pnsflowCLI runs `kubectl pnsflow args...` and returns stdout, stderr and the exit code.
func pnsflowCLI(timeout time.Duration, args ...string) (stdout, stderr string, code int) {
	dir := buildPlugin()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := exec.CommandContext(cctx, kubectlBin, append([]string{"pnsflow"}, args...)...)
	c.Env = append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"), "NO_COLOR=1")
	var out, errOut strings.Builder
	c.Stdout, c.Stderr = &out, &errOut
	err := c.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		Fail(fmt.Sprintf("running kubectl pnsflow %v: %v; stderr: %s", args, err, errOut.String()))
	}
	GinkgoWriter.Printf("$ kubectl pnsflow %s  (exit %d)\n%s%s", strings.Join(args, " "), code, out.String(), errOut.String())
	return out.String(), errOut.String(), code
}

var _ = Describe("kubectl pnsflow", func() {
	It("runs a command, prints its output and exits with its exit code", func() {
		ns := newNamespace("cli-run", nil)
		stdout, stderr, code := pnsflowCLI(runTimeout, "-n", ns, "run", "hi", "--image", busyboxImage, "--", "sh", "-c", "echo hi; exit 3")
		Expect(code).To(Equal(3), "stderr: %s", stderr)
		Expect(stdout).To(Equal("hi\n"))
		Expect(terminal(stepRun(ns, "hi"), runTimeout).Status.ExitCode).To(HaveValue(BeEquivalentTo(3)))
	})

	It("submits the sample WorkflowRun, watches it to the end and exits 0", func() {
		ns := newNamespace("cli-submit", nil)
		sample := filepath.Join("..", "..", "config", "samples", "workflows_v1alpha1_workflowrun.yaml")
		stdout, stderr, code := pnsflowCLI(5*time.Minute, "-n", ns, "submit", "-f", sample, "--watch")
		Expect(code).To(Equal(0), "stdout: %s\nstderr: %s", stdout, stderr)
		Expect(stdout).To(ContainSubstring("workflowrun.workflows.pnsflow.dev/hello-dag created"))
		Expect(stdout).To(ContainSubstring("WorkflowRun " + ns + "/hello-dag  Succeeded"))
		wfr := &v1alpha1.WorkflowRun{}
		Expect(k8s.Get(ctx, key(MakeWorkflowRun("hello-dag", ns).Obj()), wfr)).To(Succeed())
		Expect(wfr.Status.Phase).To(Equal(v1alpha1.WorkflowRunSucceeded))
	})

	It("prints the log line of every item of a fan-out", func() {
		ns := newNamespace("cli-logs", nil)
		items := []string{"alpha", "beta", "gamma", "delta", "epsilon"}
		wf := MakeWorkflowRun("fan", ns).Steps(wstep("each", `echo "item {{item}}"`).Items(items...)).Obj()
		Expect(k8s.Create(ctx, wf)).To(Succeed())
		Expect(workflowTerminal(wf, 3*time.Minute).Status.Phase).To(Equal(v1alpha1.WorkflowRunSucceeded))

		stdout, stderr, code := pnsflowCLI(runTimeout, "-n", ns, "logs", "fan")
		Expect(code).To(Equal(0), "stderr: %s", stderr)
		for i, item := range items {
			Expect(stdout).To(ContainSubstring(fmt.Sprintf("each[%d] │ item %s\n", i, item)))
		}
		Expect(stdout).NotTo(ContainSubstring("\x1b["), "no colour when piped")
	})
})

var _ = Describe("kubectl pnsflow logs of a Pod that is gone", func() {
	It("reads main's log from the artifact repository, through a port-forward to the in-cluster SeaweedFS", func() {
		ns := newNamespace("cli-archived", nil)
		withArtifactCredentials(ns)
		got, logs := archivingRun(ns, "gone", `for i in 1 2 3; do echo "line $i"; done`)
		archived := archivedAfterPod(got, logs)
		Expect(archived).To(HavePrefix("line 1\n"))

		// The default repository's endpoint is the Service's cluster IP (quickstart sets it so),
		// which the test machine cannot route to: the plugin must find the Service and forward.
		stdout, stderr, code := pnsflowCLI(runTimeout, "-n", ns, "logs", got.Name)
		Expect(code).To(Equal(0), "stderr: %s", stderr)
		Expect(stdout).To(Equal(archived))
		Expect(stderr).To(ContainSubstring("main's log follows from the artifact repository (" + logs.Key))
	})
})
