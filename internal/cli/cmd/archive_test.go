package cmd_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/artifact"
	"github.com/pnsflow/pnsflow/internal/cli/cmd"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
	. "github.com/pnsflow/pnsflow/internal/testutil"
	"github.com/pnsflow/pnsflow/internal/testutil/seaweedfs"
)

// archiveRepository describes the test's real SeaweedFS as an artifact repository ConfigMap
// and credentials Secret in ns, as a user sets one up, and returns the ConfigMap's name.
func archiveRepository(t *testing.T, ns string) string {
	t.Helper()
	weed := seaweedfs.Shared(t)
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "repo", Namespace: ns}, Data: map[string]string{
		executorconfig.RepoEndpoint: "http://" + weed.Endpoint, executorconfig.RepoBucket: seaweedfs.Bucket,
		executorconfig.RepoSecretName: "repo-credentials",
	}}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "repo-credentials", Namespace: ns}, StringData: map[string]string{
		executorconfig.SecretAccessKeyKey: seaweedfs.AccessKey, executorconfig.SecretSecretKeyKey: seaweedfs.SecretKey,
	}}
	if err := k8s.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	return cm.Name
}

// archiveLog stores log under key in the test's SeaweedFS, as the executor archives main's log.
func archiveLog(t *testing.T, key, log string) v1alpha1.ArtifactStatus {
	t.Helper()
	weed := seaweedfs.Shared(t)
	c, err := artifact.NewClient(context.Background(), artifact.Repository{
		Endpoint: weed.Endpoint, Bucket: seaweedfs.Bucket, Insecure: true, PathStyle: true,
		Credentials: artifact.Credentials{AccessKeyID: seaweedfs.AccessKey, SecretAccessKey: seaweedfs.SecretKey},
	})
	if err != nil {
		t.Fatal(err)
	}
	size, sum, err := c.UploadFile(context.Background(), key, strings.NewReader(log))
	if err != nil {
		t.Fatalf("archiving %s: %v", key, err)
	}
	return v1alpha1.ArtifactStatus{Name: v1alpha1.MainLogsArtifact, Key: key, Size: size, SHA256: sum, Archive: "none"}
}

// goneRun is a Succeeded StepRun whose Pod is gone (the fake log source has none) and whose
// executor recorded archived as main's log and kept tail.
func goneRun(t *testing.T, ns, name, repo string, archived v1alpha1.ArtifactStatus, tail string) {
	t.Helper()
	sr := MakeStepRun(name, ns).Obj()
	if repo != "" {
		sr.Spec.ArtifactRepositoryRef = &corev1.LocalObjectReference{Name: repo}
	}
	if err := k8s.Create(context.Background(), sr); err != nil {
		t.Fatal(err)
	}
	report(t, ns, name, v1alpha1.StepRunSucceeded, code(0), nil, func(st *v1alpha1.StepRunStatus) {
		st.Outputs = &v1alpha1.StepRunOutputs{Result: &tail, Artifacts: []v1alpha1.ArtifactStatus{archived}}
	})
}

func TestLogsOfAGonePodAreReadFromTheArtifactRepository(t *testing.T) {
	ns := newNamespace(t)
	repo := archiveRepository(t, ns)
	var log strings.Builder
	for i := 1; i <= 20000; i++ {
		fmt.Fprintf(&log, "line %d\n", i)
	}
	archived := archiveLog(t, ns+"/logs/main-logs", log.String())
	goneRun(t, ns, "archived", repo, archived, "line 20000\n")

	res := pnsflow(t, cmd.Options{Logs: newFakeLogs()}, "-n", ns, "logs", "archived")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	if res.stdout != log.String() {
		t.Errorf("printed %d bytes, not the %d archived (ends %q)", len(res.stdout), log.Len(), res.stdout[max(0, len(res.stdout)-40):])
	}
	want := fmt.Sprintf("pod archived-pod is gone; main's log follows from the artifact repository (%s, %d bytes)", archived.Key, archived.Size)
	if !strings.Contains(res.stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, res.stderr)
	}

	last := pnsflow(t, cmd.Options{Logs: newFakeLogs()}, "-n", ns, "logs", "archived", "--tail", "2")
	if last.code != 0 || last.stdout != "line 19999\nline 20000\n" {
		t.Errorf("--tail 2: exit %d, printed %q; stderr %s", last.code, last.stdout, last.stderr)
	}
}

func TestLogsOfAGonePodFindTheDefaultRepositoryWhenTheRunNamesNone(t *testing.T) {
	ns := newNamespace(t)
	repo := archiveRepository(t, ns)
	archived := archiveLog(t, ns+"/default/main-logs", "from the default repository\n")
	goneRun(t, ns, "defaulted", "", archived, "kept\n")

	res := pnsflow(t, cmd.Options{Logs: newFakeLogs()}, "-n", ns, "logs", "defaulted", "--artifact-repository", ns+"/"+repo)
	if res.code != 0 || res.stdout != "from the default repository\n" {
		t.Errorf("exit %d, printed %q; stderr %s", res.code, res.stdout, res.stderr)
	}
	bad := pnsflow(t, cmd.Options{Logs: newFakeLogs()}, "-n", ns, "logs", "defaulted", "--artifact-repository", "no-slash")
	if bad.code == 0 || !strings.Contains(bad.stderr, "want NAMESPACE/NAME") {
		t.Errorf("--artifact-repository no-slash: exit %d, %q", bad.code, bad.stderr)
	}
}

func TestLogsOfAGonePodFallBackToTheKeptTailWhenTheArchiveCannotBeRead(t *testing.T) {
	ns := newNamespace(t)
	repo := archiveRepository(t, ns)
	sum := sha256.Sum256([]byte("never stored\n"))
	missing := v1alpha1.ArtifactStatus{Name: v1alpha1.MainLogsArtifact, Key: ns + "/missing/main-logs", Size: 13, SHA256: hex.EncodeToString(sum[:])}
	goneRun(t, ns, "missing", repo, missing, "the kept tail\n")
	nowhere := v1alpha1.ArtifactStatus{Name: v1alpha1.MainLogsArtifact, Key: ns + "/x/main-logs", Size: 1}
	goneRun(t, ns, "no-repo", "absent", nowhere, "kept without a repository\n")

	for name, want := range map[string]struct{ out, note string }{
		"missing": {"the kept tail\n", "cannot read the archived log"},
		"no-repo": {"kept without a repository\n", `artifact repository ConfigMap ` + ns + `/absent`},
	} {
		res := pnsflow(t, cmd.Options{Logs: newFakeLogs()}, "-n", ns, "logs", name)
		if res.code != 0 || res.stdout != want.out {
			t.Errorf("%s: exit %d, printed %q; stderr %s", name, res.code, res.stdout, res.stderr)
		}
		for _, note := range []string{want.note, "is gone, and main's log with it"} {
			if !strings.Contains(res.stderr, note) {
				t.Errorf("%s: stderr lacks %q:\n%s", name, note, res.stderr)
			}
		}
	}
}

func TestLogsOfAGonePodRefuseAnArchiveThatIsNotWhatTheRunRecorded(t *testing.T) {
	ns := newNamespace(t)
	repo := archiveRepository(t, ns)
	archived := archiveLog(t, ns+"/changed/main-logs", "what was archived\n")
	archived.SHA256 = strings.Repeat("0", 64) // as if the object was replaced since
	goneRun(t, ns, "changed", repo, archived, "kept\n")

	res := pnsflow(t, cmd.Options{Logs: newFakeLogs()}, "-n", ns, "logs", "changed")
	if res.code == 0 || !strings.Contains(res.stderr, "the run recorded") {
		t.Errorf("exit %d, stdout %q, stderr %s", res.code, res.stdout, res.stderr)
	}
}
