package cmd_test

// The commands run against a real kube-apiserver and etcd (envtest), through a kubeconfig
// file as kubectl would give them. No kubelet runs: the tests play the executor (they write
// StepRun status as pns-executor does) and serve Pod logs from a fake log source (archived logs
// from a real SeaweedFS, as the executor stores them); tests that
// need the DAG to advance run the real manager, the others write a WorkflowRun's status as its
// controller would.

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/cli/cmd"
	"github.com/pnsflow/pnsflow/internal/cli/exitcode"
	"github.com/pnsflow/pnsflow/internal/cli/podlogs"
	"github.com/pnsflow/pnsflow/internal/cli/term"
	"github.com/pnsflow/pnsflow/internal/manager"
	"github.com/pnsflow/pnsflow/internal/podspec"
	"github.com/pnsflow/pnsflow/internal/testutil/seaweedfs"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

var (
	cfg        *rest.Config
	k8s        client.Client
	kubeconfig string
	// t0 is when the played executors say their mains ran, so durations in goldens are fixed.
	t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	root := filepath.Join("..", "..", "..")
	assets, err := exec.Command(filepath.Join(root, "hack", "envtest-assets.sh")).Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "providing envtest assets:", err)
		return 1
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: strings.TrimSpace(string(assets)),
	}
	if cfg, err = env.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "starting envtest:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	scheme, err := cmd.Scheme()
	if err == nil {
		k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	}
	if err == nil {
		err = installExecutorRole(root)
	}
	if err == nil {
		kubeconfig, err = writeKubeconfig(env)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.Remove(kubeconfig)
	defer seaweedfs.StopShared() // started by the first test that reads an archived log
	return m.Run()
}

// installExecutorRole installs the ClusterRole the StepRun controller binds, as a user would.
func installExecutorRole(root string) error {
	raw, err := os.ReadFile(filepath.Join(root, "config", "rbac", "executor_role.yaml"))
	if err != nil {
		return err
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.Unmarshal(raw, role); err != nil {
		return err
	}
	return k8s.Create(context.Background(), role)
}

// writeKubeconfig gives the plugin a kubeconfig of an admin, as --kubeconfig takes it.
func writeKubeconfig(env *envtest.Environment) (string, error) {
	user, err := env.AddUser(envtest.User{Name: "cli-user", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", fmt.Errorf("adding the CLI's user: %w", err)
	}
	raw, err := user.KubeConfig()
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp("", "pnsflow-cli-kubeconfig-")
	if err != nil {
		return "", err
	}
	defer f.Close()
	_, err = f.Write(raw)
	return f.Name(), err
}

// startManager runs the real manager until the test ends.
func startManager(t *testing.T) {
	t.Helper()
	mgr, err := manager.New(cfg, manager.Options{MetricsAddr: "0", ProbeAddr: "0", StepRunWorkers: 4,
		Pod: podspec.Config{ExecutorImage: "pns-executor:test"}, SkipNameValidation: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
}

// newNamespace makes a namespace for one test.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "cli-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), ns) })
	return ns.Name
}

// syncBuffer is a buffer written by the command while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// result is what one command did.
type result struct {
	stdout, stderr string
	code           int
}

// running is a command started in the background.
type running struct {
	stdout, stderr *syncBuffer
	done           chan result
}

// start runs kubectl-pnsflow args in the background, as main does (the error on stderr, the
// exit code from it).
func start(o cmd.Options, args ...string) *running {
	r := &running{stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan result, 1)}
	o.Out, o.ErrOut = r.stdout, r.stderr
	if o.In == nil {
		o.In = strings.NewReader("")
	}
	if o.OutMode == nil {
		o.OutMode = &term.Mode{}
	}
	if o.ErrMode == nil {
		o.ErrMode = &term.Mode{}
	}
	if o.Now == nil {
		o.Now = func() time.Time { return t0.Add(time.Minute) }
	}
	c := cmd.NewCommand(o)
	c.SetArgs(append([]string{"--kubeconfig", kubeconfig}, args...))
	go func() {
		err := c.ExecuteContext(context.Background())
		if err != nil && !exitcode.IsSilent(err) {
			fmt.Fprintln(r.stderr, "error:", err)
		}
		r.done <- result{stdout: r.stdout.String(), stderr: r.stderr.String(), code: exitcode.Of(err)}
	}()
	return r
}

// wait waits for the command to end.
func (r *running) wait(t *testing.T) result {
	t.Helper()
	select {
	case res := <-r.done:
		return res
	case <-time.After(60 * time.Second):
		t.Fatalf("the command did not end; stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
	return result{}
}

// pnsflow runs a command to its end.
func pnsflow(t *testing.T, o cmd.Options, args ...string) result {
	t.Helper()
	return start(o, args...).wait(t)
}

// fakeLogs serves Pod logs: a fixed text, a stream the test writes, or a Pod that is gone.
type fakeLogs struct {
	mu      sync.Mutex
	tries   int
	texts   map[string]string
	streams map[string]*io.PipeReader
	opened  map[string]chan struct{}
}

func newFakeLogs() *fakeLogs {
	return &fakeLogs{texts: map[string]string{}, streams: map[string]*io.PipeReader{}, opened: map[string]chan struct{}{}}
}

// text serves pod's log as s.
func (f *fakeLogs) text(pod, s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.texts[pod] = s
}

// stream serves pod's log from what the test writes; the channel closes once it is opened.
func (f *fakeLogs) stream(pod string) (*io.PipeWriter, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, w := io.Pipe()
	f.streams[pod] = r
	f.opened[pod] = make(chan struct{})
	return w, f.opened[pod]
}

// opens is how many logs were asked for.
func (f *fakeLogs) opens() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tries
}

func (f *fakeLogs) Open(_ context.Context, _, pod string, o podlogs.Options) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tries++
	if r, ok := f.streams[pod]; ok {
		close(f.opened[pod])
		delete(f.streams, pod)
		return r, nil
	}
	text, ok := f.texts[pod]
	if !ok {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, pod)
	}
	lines := strings.SplitAfter(strings.TrimSuffix(text, "\n"), "\n")
	first := 0
	if o.TailLines != nil {
		first = max(0, len(lines)-int(*o.TailLines))
	}
	var b strings.Builder
	for i := first; i < len(lines); i++ {
		// Line i was written at t0 + i ms; sinceTime selects from its second on, as the kubelet.
		at := t0.Add(time.Duration(i) * time.Millisecond)
		if o.SinceTime != nil && at.Before(o.SinceTime.Truncate(time.Second)) {
			continue
		}
		if o.Timestamps {
			b.WriteString(at.Format(time.RFC3339Nano) + " ")
		}
		b.WriteString(strings.TrimSuffix(lines[i], "\n") + "\n")
	}
	return io.NopCloser(strings.NewReader(b.String())), nil
}

// MainEnded: always, as far as a follow can tell: the tests close a stream they write only once
// its main is done, and a fixed text is the whole log.
func (f *fakeLogs) MainEnded(context.Context, string, string) (bool, error) { return true, nil }

// report ends (or starts) a StepRun as its executor would.
func report(t *testing.T, ns, name string, phase v1alpha1.StepRunPhase, exit *int32, outputs map[string]string, mutate ...func(*v1alpha1.StepRunStatus)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		sr := &v1alpha1.StepRun{}
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, sr); err != nil {
			return err
		}
		st := &sr.Status
		st.PodName = name + "-pod"
		st.StartedAt = &metav1.Time{Time: t0}
		reason := map[v1alpha1.StepRunPhase]string{v1alpha1.StepRunRunning: v1alpha1.ReasonRunning,
			v1alpha1.StepRunSucceeded: v1alpha1.ReasonSucceeded, v1alpha1.StepRunFailed: v1alpha1.ReasonExitCode}[phase]
		if phase.IsTerminal() {
			st.ExitCode = exit
			end := t0.Add(2 * time.Second)
			st.SetTimes(nil, &end)
		}
		st.SetPhase(phase, reason, "", sr.Generation, time.Now())
		for k, v := range outputs {
			if st.Outputs == nil {
				st.Outputs = &v1alpha1.StepRunOutputs{}
			}
			st.Outputs.Parameters = append(st.Outputs.Parameters, v1alpha1.OutputParameterValue{Name: k, Value: v})
		}
		for _, m := range mutate {
			m(st)
		}
		return k8s.Status().Update(context.Background(), sr)
	})
	if err != nil {
		t.Fatalf("reporting %s %s: %v", name, phase, err)
	}
}

func code(n int32) *int32 { return &n }

// eventually is gomega's Eventually for a plain test: bounded by what is waited for.
func eventually(t *testing.T) Gomega {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	g.SetDefaultEventuallyPollingInterval(20 * time.Millisecond)
	return g
}

var (
	generatedSuffix = regexp.MustCompile(`\b(diamond|hello-dag|cli)-[a-z0-9]{5}\b`)
	runTimes        = regexp.MustCompile(`(took|elapsed) [0-9hms.µ]+`)
)

// normalize takes out what differs between runs of a test: generated names (runs and the
// test's namespaces) and the run's own times (written by the controller from the real clock).
func normalize(s string) string {
	s = generatedSuffix.ReplaceAllString(s, "$1-xxxxx")
	return runTimes.ReplaceAllString(s, "$1 <time>")
}

// golden compares got with testdata/<name>.golden, or rewrites it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		got = normalize(got)
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./internal/cli/cmd -update creates it)", err)
	}
	got = normalize(got)
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-want +got); if intended, rerun with -update:\n%s", path, diff)
	}
}

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }
