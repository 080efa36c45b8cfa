//go:build e2e

package e2e

// A regression guard for a bug this suite found: on kind (and any runtime whose OCI
// createContainer hook inherits the container's environment), runc init runs kind's hook
// /kind/bin/mount-product-files.sh inside main's PID namespace with main's environment before it
// execs main. The executor took that hook for main and held its root — the node's root
// filesystem — so with an executor running as root an output path such as
// /etc/kubernetes/admin.conf returned the node's file into the StepRun's status, and durations
// were the hook's (~30 ms). Fixed in internal/executor (main's parent must be outside the Pod:
// PPid 0); unit-tested there with a fake /proc, guarded here on a real runtime.

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

var _ = Describe("Outputs come from main's filesystem, never the node's", func() {
	It("never reads the node's files through a runtime hook's root", func() {
		ns := newNamespace("hook", nil)
		// No runAsUser: the executor runs as root with main's capabilities, as the hook does, and
		// so can read the hook's /proc/<pid>/environ and root. The busybox test image has no /etc/os-release; a kind
		// node (Debian) has one.
		absent := "absent from main's image"
		sr := create(shell(step("hook", ns), "sleep 1.5").
			Output("osrelease", "/etc/os-release", &absent).Obj())
		got := terminal(sr, runTimeout)
		Expect(got.Status.Phase).To(Equal(v1alpha1.StepRunSucceeded), describeStatus(got))
		Expect(outputs(got)).To(HaveKeyWithValue("osrelease", absent),
			"the value came from a filesystem other than main's (the node's, through a createContainer hook)")
		d, err := time.ParseDuration(got.Status.Duration)
		Expect(err).NotTo(HaveOccurred())
		Expect(d).To(BeNumerically(">=", time.Second), "main slept 1.5 s; a duration measured on the hook is ~30 ms")
	})
})
