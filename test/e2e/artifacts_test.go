//go:build e2e

package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/artifact"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
	"github.com/pnsflow/pnsflow/internal/testutil"
)

// The default repository make quickstart deploys (config/seaweedfs) and its dev credentials.
const (
	artifactSecret    = "pnsflow-artifacts"
	artifactAccessKey = "pnsflow"
	artifactSecretKey = "pnsflow-local-dev-only"
	artifactBucket    = "pnsflow"
)

// withArtifactCredentials puts the repository's credentials Secret in ns, as a user would.
func withArtifactCredentials(ns string) {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: artifactSecret, Namespace: ns},
		StringData: map[string]string{"accessKey": artifactAccessKey, "secretKey": artifactSecretKey},
	}
	ExpectWithOffset(1, k8s.Create(ctx, s)).To(Succeed())
}

// repositoryClient reaches the in-cluster SeaweedFS through `kubectl port-forward`, stopped when
// the spec ends.
func repositoryClient() *artifact.Client {
	port := portForward("pnsflow-system", "svc/seaweedfs", 8333)
	c, err := artifact.NewClient(ctx, artifact.Repository{
		Endpoint: "127.0.0.1:" + port, Bucket: artifactBucket, Region: artifact.DefaultRegion, Insecure: true, PathStyle: true,
		Credentials: artifact.Credentials{AccessKeyID: artifactAccessKey, SecretAccessKey: artifactSecretKey},
	})
	Expect(err).NotTo(HaveOccurred())
	return c
}

func artifactStatus(sr *v1alpha1.StepRun, name string) *v1alpha1.ArtifactStatus {
	if sr.Status.Outputs == nil {
		return nil
	}
	for i := range sr.Status.Outputs.Artifacts {
		if sr.Status.Outputs.Artifacts[i].Name == name {
			return &sr.Status.Outputs.Artifacts[i]
		}
	}
	return nil
}

func withArtifact(w *testutil.StepRunWrapper, name, path string) *testutil.StepRunWrapper {
	if w.Spec.Outputs == nil {
		w.Spec.Outputs = &v1alpha1.Outputs{}
	}
	w.Spec.Outputs.Artifacts = append(w.Spec.Outputs.Artifacts, v1alpha1.OutputArtifact{Name: name, Path: path})
	return w
}

var _ = Describe("Output artifacts in the default repository (SeaweedFS)", func() {
	It("stores a file and a directory tree, byte-equal and checksummed, under the run's own keys", func() {
		ns := newNamespace("artifacts", nil)
		withArtifactCredentials(ns)
		const file = "hello artifact\n"
		script := `printf 'hello artifact\n' > /tmp/hello.txt
mkdir -p /work/tree/sub && printf a > /work/tree/a.txt && printf 'b b' > "/work/tree/sub/b é.txt" && ln -s a.txt /work/tree/link
sleep 1`
		sr := create(withArtifact(withArtifact(shell(step("store", ns), script), "file", "/tmp/hello.txt"), "tree", "/work/tree").Obj())
		got := terminal(sr, runTimeout)
		Expect(got.Status.Phase).To(Equal(v1alpha1.StepRunSucceeded), describeStatus(got))

		sum := sha256.Sum256([]byte(file))
		f := artifactStatus(got, "file")
		Expect(f).NotTo(BeNil(), describeStatus(got))
		Expect(*f).To(Equal(v1alpha1.ArtifactStatus{Name: "file", Key: ns + "/store/file", Size: int64(len(file)), SHA256: hex.EncodeToString(sum[:]), Archive: "none"}))
		tree := artifactStatus(got, "tree")
		Expect(tree).NotTo(BeNil(), describeStatus(got))
		Expect(tree.Key).To(Equal(ns + "/store/tree"))

		repo := repositoryClient()
		var buf bytes.Buffer
		size, sha, err := repo.Download(ctx, f.Key, &buf)
		Expect(err).NotTo(HaveOccurred())
		Expect(buf.String()).To(Equal(file))
		Expect(size).To(Equal(f.Size))
		Expect(sha).To(Equal(f.SHA256))

		dir := GinkgoT().TempDir()
		size, sha, err = repo.DownloadAndExtract(ctx, tree.Key, dir)
		Expect(err).NotTo(HaveOccurred())
		Expect(size).To(Equal(tree.Size))
		Expect(sha).To(Equal(tree.SHA256))
		Expect(os.ReadFile(filepath.Join(dir, "a.txt"))).To(BeEquivalentTo("a"))
		Expect(os.ReadFile(filepath.Join(dir, "sub", "b é.txt"))).To(BeEquivalentTo("b b"))
		Expect(os.Readlink(filepath.Join(dir, "link"))).To(Equal("a.txt"))
	})

	It("ends Error/ArtifactRepositoryUnavailable with the kubelet's message within seconds when the credentials Secret is missing", func() {
		ns := newNamespace("artifacts-nosecret", nil)
		sr := create(withArtifact(shell(step("nosecret", ns), "printf x > /tmp/x"), "x", "/tmp/x").Obj())
		got := terminal(sr, time.Minute)
		Expect(got.Status.Phase).To(Equal(v1alpha1.StepRunError), describeStatus(got))
		Expect(got.Status.Reason).To(Equal(v1alpha1.ReasonArtifactRepositoryUnavailable))
		Expect(got.Status.Message).To(ContainSubstring(artifactSecret))
		took := got.Status.FinishedAt.Sub(got.CreationTimestamp.Time)
		Expect(took).To(BeNumerically("<=", 30*time.Second))
		AddReportEntry("missing artifact Secret → Error after", took.String())
	})

	It("20 fan-out items each store their own artifact", func() {
		ns := newNamespace("artifacts-fanout", nil)
		withArtifactCredentials(ns)
		st := wstep("gen", `printf "item-{{item}}" > /tmp/out`).Sequence(20)
		st.Template.Outputs = &v1alpha1.Outputs{Artifacts: []v1alpha1.OutputArtifact{{Name: "out", Path: "/tmp/out"}}}
		wf := testutil.MakeWorkflowRun("fan", ns).Steps(st).Parallelism(5).Obj()
		Expect(k8s.Create(ctx, wf)).To(Succeed())
		got := workflowTerminal(wf, 10*time.Minute)
		Expect(got.Status.Phase).To(Equal(v1alpha1.WorkflowRunSucceeded), fmt.Sprintf("%+v", got.Status))
		keys := map[string]bool{}
		for i := range 20 {
			sr := stepRun(ns, fmt.Sprintf("fan-gen-%d", i))
			a := artifactStatus(sr, "out")
			Expect(a).NotTo(BeNil(), describeStatus(sr))
			want := sha256.Sum256(fmt.Appendf(nil, "item-%d", i))
			Expect(a.SHA256).To(Equal(hex.EncodeToString(want[:])), describeStatus(sr))
			keys[a.Key] = true
		}
		Expect(keys).To(HaveLen(20))
	})

	It("hands a directory and a file from one step to the next, byte-equal", func() {
		ns := newNamespace("artifacts-pass", nil)
		withArtifactCredentials(ns)
		build := wstep("build", `mkdir -p /tmp/tree/sub && printf a > /tmp/tree/a.txt && printf 'b b' > "/tmp/tree/sub/b é.txt"
printf 'one file\n' > /tmp/file`).OutputArtifact("tree", "/tmp/tree").OutputArtifact("file", "/tmp/file")
		// check gets the tree extracted, the same object as is (to hash the archive as stored),
		// and the file; it hashes what it got and proves the tree's content.
		check := wstep("check", `set -e
test "$(cat /in/tree/a.txt)" = a && test "$(cat "/in/tree/sub/b é.txt")" = "b b"
sha256sum /in/tree.tgz | cut -d' ' -f1 > /pnsflow/outputs/tree
sha256sum /in/file | cut -d' ' -f1 > /pnsflow/outputs/file`).DependsOn("build").
			InputArtifact("tree", "/in/tree", "{{steps.build.outputs.artifacts.tree}}", "").
			InputArtifact("tree-raw", "/in/tree.tgz", "{{steps.build.outputs.artifacts.tree}}", "none").
			InputArtifact("file", "/in/file", "{{steps.build.outputs.artifacts.file}}", "").
			Output("tree", "/pnsflow/outputs/tree").Output("file", "/pnsflow/outputs/file")
		wf := testutil.MakeWorkflowRun("pass", ns).Steps(build, check).Obj()
		Expect(k8s.Create(ctx, wf)).To(Succeed())
		got := workflowTerminal(wf, 5*time.Minute)
		b, c := stepRun(ns, "pass-build"), stepRun(ns, "pass-check")
		Expect(got.Status.Phase).To(Equal(v1alpha1.WorkflowRunSucceeded), "%+v\nbuild: %s\ncheck: %s", got.Status, describeStatus(b), describeStatus(c))

		tree, file := artifactStatus(b, "tree"), artifactStatus(b, "file")
		Expect(tree).NotTo(BeNil(), describeStatus(b))
		Expect(file).NotTo(BeNil(), describeStatus(b))
		Expect(tree.Archive).To(Equal("tgz"))
		Expect(file.Archive).To(Equal("none"))
		Expect(outputs(c)).To(Equal(map[string]string{"tree": tree.SHA256, "file": file.SHA256}))
		// The loader ran before main, as an init container, and the key reached it substituted.
		pod := &corev1.Pod{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: c.Status.PodName}, pod)).To(Succeed())
		Expect(pod.Spec.InitContainers[0].Name).To(Equal("load-artifacts"))
		Expect(c.Spec.Inputs.Artifacts[0].Key).To(Equal(tree.Key))
	})

	It("runs the sample WorkflowRun that passes artifacts (config/samples)", func() {
		ns := newNamespace("artifacts-sample", nil)
		withArtifactCredentials(ns)
		raw, err := os.ReadFile(filepath.Join("..", "..", "config", "samples", "workflows_v1alpha1_workflowrun_artifacts.yaml"))
		Expect(err).NotTo(HaveOccurred())
		wf := &v1alpha1.WorkflowRun{}
		Expect(yaml.Unmarshal(raw, wf)).To(Succeed())
		wf.Namespace = ns
		Expect(k8s.Create(ctx, wf)).To(Succeed())
		got := workflowTerminal(wf, 5*time.Minute)
		check := stepRun(ns, wf.Name+"-check")
		Expect(got.Status.Phase).To(Equal(v1alpha1.WorkflowRunSucceeded), "%+v\ncheck: %s", got.Status, describeStatus(check))
		Expect(outputs(check)).To(Equal(map[string]string{"files": "2"}))
	})

	It("archives main's log whole, as the kubelet kept it, readable after the Pod is gone", func() {
		ns := newNamespace("artifacts-logs", nil)
		withArtifactCredentials(ns)
		// 200 000 lines: about 9 MB in the kubelet's log format, under its 10 MiB rotation size.
		got, logs := archivingRun(ns, "logs", `seq 1 200000; echo 'the end'`)
		var want strings.Builder
		for i := 1; i <= 200000; i++ {
			fmt.Fprintf(&want, "%d\n", i)
		}
		want.WriteString("the end\n")

		// The runtime, not pnsflow, decides what main's log holds: containerd's shim stops
		// copying a finished container's output after a bounded drain (2 s in the 1.6 series the
		// local nodes run), so on a loaded node the last bytes main wrote can miss the log file.
		// The archive is compared with the log the kubelet kept, which must be main's output in
		// order, whole or cut only at its end.
		kept := mainLog(got)
		Expect(strings.HasPrefix(want.String(), kept)).To(BeTrue(), "the kubelet's log of main is not a prefix of main's output (%d bytes, ends %q)", len(kept), tail(kept, 40))
		Expect(len(kept)).To(BeNumerically(">", 1<<20), "the runtime kept too little of main's output to test archiving")
		if lost := want.Len() - len(kept); lost > 0 {
			AddReportEntry("main's output lost by the runtime at main's exit", fmt.Sprintf("%d of %d bytes", lost, want.Len()))
		}
		sum := sha256.Sum256([]byte(kept))
		Expect(*logs).To(Equal(v1alpha1.ArtifactStatus{Name: v1alpha1.MainLogsArtifact, Key: ns + "/logs/main-logs",
			Size: int64(len(kept)), SHA256: hex.EncodeToString(sum[:]), Archive: "none"}))
		Expect(got.Status.Outputs.Result).To(HaveValue(Equal(tail(kept, v1alpha1.MaxResultBytes))))

		Expect(archivedAfterPod(got, logs) == kept).To(BeTrue(), "the archived log differs from the kubelet's")
	})

	It("keeps archiving in order while the kubelet rotates a log of 5 million lines", func() {
		ns := newNamespace("artifacts-rotate", nil)
		withArtifactCredentials(ns)
		// 10 MB of output is ~200 MB in the kubelet's log format: rotated many times while main
		// runs. Before the result came from the followed stream, such a run reported result "".
		got, logs := archivingRun(ns, "chatty", `yes | head -n 5000000; echo 'the end'`)
		Expect(got.Status.Outputs.Result).To(HaveValue(HaveLen(v1alpha1.MaxResultBytes)), "the result is the stream's tail, not empty")
		AddReportEntry("log archived under rotation", fmt.Sprintf("%d of %d bytes", logs.Size, 2*5000000+8))
		if logs.Incomplete != "" {
			// Reading stopped at the executor's grace: main's phase stands, and the status says why.
			AddReportEntry("the archive is incomplete", logs.Incomplete)
		}

		// What the kubelet kept, in order: whole "y" lines (and the last line, if kept), never
		// a torn or repeated one.
		body := strings.TrimSuffix(archivedAfterPod(got, logs), "the end\n")
		Expect(body).To(MatchRegexp(`\A(y\n)+\z`))
	})
})

// archivingRun runs script with archiveLogs in ns, expects it Succeeded with main's log stored,
// and returns the run and that artifact. A long log may be read until the executor's grace
// (90 s) nearly ends.
func archivingRun(ns, name, script string) (*v1alpha1.StepRun, *v1alpha1.ArtifactStatus) {
	w := shell(step(name, ns), script)
	w.Spec.ArchiveLogs = new(true)
	got := terminal(create(w.Obj()), runTimeout+2*time.Minute)
	ExpectWithOffset(1, got.Status.Phase).To(Equal(v1alpha1.StepRunSucceeded), describeStatus(got))
	logs := artifactStatus(got, v1alpha1.MainLogsArtifact)
	ExpectWithOffset(1, logs).NotTo(BeNil(), describeStatus(got))
	return got, logs
}

// mainLog is main's log as the kubelet keeps it, read once main has ended.
func mainLog(sr *v1alpha1.StepRun) string {
	cs, err := kubernetes.NewForConfig(cfg)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	raw, err := cs.CoreV1().Pods(sr.Namespace).GetLogs(sr.Status.PodName,
		&corev1.PodLogOptions{Container: executorconfig.MainContainer}).DoRaw(ctx)
	ExpectWithOffset(1, err).NotTo(HaveOccurred(), "main's log of %s", sr.Status.PodName)
	return string(raw)
}

// tail is s's last n bytes, or s when shorter.
func tail(s string, n int) string {
	return s[len(s)-min(n, len(s)):]
}

// archivedAfterPod deletes the run's Pod, then reads the archived log from the repository,
// checking it is what the status recorded.
func archivedAfterPod(sr *v1alpha1.StepRun, logs *v1alpha1.ArtifactStatus) string {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: sr.Namespace, Name: sr.Status.PodName}}
	ExpectWithOffset(1, k8s.Delete(ctx, pod)).To(Succeed())
	EventuallyWithOffset(1, func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{}))
	}).WithTimeout(time.Minute).Should(BeTrue())
	var buf bytes.Buffer
	size, sha, err := repositoryClient().Download(ctx, logs.Key, &buf)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	ExpectWithOffset(1, []any{size, sha}).To(Equal([]any{logs.Size, logs.SHA256}))
	return buf.String()
}
